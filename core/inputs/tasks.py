"""Tasks: the prompt a clip is asked with, the candidate answers, and how a reply is parsed.

Each candidate is scored by the log-probability of its first token at the answer position, so the
candidates of a task must start with different tokens (checked when a backend loads).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from core.base.errors import ConfigError, unknown_name
from core.inputs.video import VideoClip

ANOMALY_PROMPT = (
    "You are watching a traffic video. Is the traffic Normal, or is there an Anomaly "
    "(for example a pedestrian or an object on the road, a wrong-way vehicle, or a collision)? "
    "Answer with exactly one word: Normal or Anomaly."
)


class Task(ABC):
    """A question asked about a clip, with a closed set of candidate answers."""

    name: ClassVar[str]
    default_dataset: ClassVar[str] = "fixtures"
    """The built-in clip set the task runs on when no --videos is given."""

    @abstractmethod
    def candidates(self, clip: VideoClip) -> list[str]:
        """The answers scored at the answer position, in a fixed order."""

    @abstractmethod
    def prompt(self, clip: VideoClip) -> str:
        """The text that follows the video in the user turn."""

    @abstractmethod
    def parse(self, text: str, clip: VideoClip) -> str | None:
        """The candidate a free-form reply names, or None if it names none."""

    def messages(self, clip: VideoClip) -> list[dict[str, Any]]:
        """Chat messages: one user turn with the video first, then the prompt."""
        return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": self.prompt(clip)}]}]

    def truth(self, clip: VideoClip) -> str | None:
        """The ground-truth candidate for ``clip``, if the dataset has one."""
        return clip.label


_NORMAL = re.compile(r"\bnormal\b", re.IGNORECASE)
_ANOMALY = re.compile(r"\b(anomal\w*|abnormal\w*)\b", re.IGNORECASE)


class AnomalyTask(Task):
    """Classify a driving video as Normal or Anomaly (the seeds' task)."""

    name = "anomaly"
    labels = ("Normal", "Anomaly")

    def __init__(self, prompt: str = ANOMALY_PROMPT) -> None:
        self._prompt = prompt

    def candidates(self, clip: VideoClip) -> list[str]:
        return list(self.labels)

    def prompt(self, clip: VideoClip) -> str:
        return self._prompt

    def parse(self, text: str, clip: VideoClip) -> str | None:
        # "abnormal" contains "normal" only inside a word, so \bnormal\b does not match it.
        n, a = _NORMAL.search(text), _ANOMALY.search(text)
        if n and a:
            return "Normal" if n.start() < a.start() else "Anomaly"
        return "Normal" if n else "Anomaly" if a else None

    def truth(self, clip: VideoClip) -> str | None:
        return normalize_anomaly_label(clip.label) if clip.label is not None else None


def normalize_anomaly_label(label: str) -> str:
    """Map the label spellings datasets use (normal/abnormal/anomaly/0/1) to Normal or Anomaly."""
    key = label.strip().lower()
    if key in {"normal", "0", "false", "no"}:
        return "Normal"
    if key in {"anomaly", "anomalous", "abnormal", "1", "true", "yes"}:
        return "Anomaly"
    raise ConfigError(f"label '{label}' is neither Normal nor Anomaly (accepted: normal/anomaly/abnormal/0/1)")


LETTERS = "ABCDEFGH"
_LETTER_PATTERNS = [
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-H])\b", re.IGNORECASE),
    re.compile(r"(?:đáp\s*án|câu\s*trả\s*lời|lựa\s*chọn)\s*(?:là|:)?\s*\(?([A-H])\b", re.IGNORECASE),
    re.compile(r"(?:答案|选项|选择)\s*(?:是|为|:|：)?\s*\(?([A-H])"),
    re.compile(r"^\s*\(?([A-H])(?:[\.\):：]|\s|$)"),
    re.compile(r"\b([A-H])[\.\)]"),
]


class MultipleChoiceTask(Task):
    """Multiple-choice video QA (RoadBuddy style): a question and lettered options."""

    name = "mcq"
    default_dataset = "roadbuddy"

    def candidates(self, clip: VideoClip) -> list[str]:
        if not clip.options:
            raise ConfigError(f"clip '{clip.id}' has no options; the mcq task needs them")
        return list(LETTERS[: len(clip.options)])

    def prompt(self, clip: VideoClip) -> str:
        if not clip.question:
            raise ConfigError(f"clip '{clip.id}' has no question; the mcq task needs one")
        lines = [clip.question.strip()]
        for letter, option in zip(LETTERS, clip.options or ()):
            lines.append(f"{letter}. {strip_option_letter(option)}")
        lines.append("Answer with the letter of the correct option.")
        return "\n".join(lines)

    def parse(self, text: str, clip: VideoClip) -> str | None:
        valid = set(self.candidates(clip))
        for pattern in _LETTER_PATTERNS:
            for m in pattern.finditer(text.strip()):
                letter = m.group(1).upper()
                if letter in valid:
                    return letter
        # No letter: an option's text quoted verbatim names it.
        lowered = text.strip().lower()
        for letter, option in zip(LETTERS, clip.options or ()):
            body = strip_option_letter(option).lower()
            if body and body in lowered:
                return letter
        return None

    def truth(self, clip: VideoClip) -> str | None:
        if clip.label is None:
            return None
        m = re.match(r"\s*\(?([A-Ha-h])(?:[\.\):]|\s|$)", clip.label)
        if m:
            return m.group(1).upper()
        for letter, option in zip(LETTERS, clip.options or ()):
            if strip_option_letter(option).strip().lower() == clip.label.strip().lower():
                return letter
        raise ConfigError(f"clip '{clip.id}': answer '{clip.label}' matches no option letter or text")


def strip_option_letter(option: str) -> str:
    """'B. turn left' -> 'turn left' (RoadBuddy options carry their letter)."""
    return re.sub(r"^\s*\(?[A-Ha-h][\.\):]\s*", "", option)


TASKS: dict[str, Task] = {t.name: t for t in (AnomalyTask(), MultipleChoiceTask())}


def get_task(name: str) -> Task:
    """A task by name (one shared instance, so cells compare equal), with "did you mean" on typos."""
    if name not in TASKS:
        raise unknown_name("task", name, TASKS)
    return TASKS[name]
