"""Label parsing and prompts: the answers real VLMs give, in English, Vietnamese and Chinese."""

from __future__ import annotations

import pytest

from core.base.errors import ConfigError
from core.inputs.tasks import AnomalyTask, MultipleChoiceTask, get_task, normalize_anomaly_label
from core.inputs.video import VideoClip

pytestmark = pytest.mark.cpu

CLIP = VideoClip(path="x.mp4", id="x")


@pytest.mark.parametrize("text,label", [
    ("Normal", "Normal"), ("normal.", "Normal"), ("Anomaly", "Anomaly"), ("ANOMALY!", "Anomaly"),
    ("The video shows an anomaly: a dog crosses.", "Anomaly"), ("Abnormal driving", "Anomaly"),
    ("This is anomalous behaviour", "Anomaly"), ("The traffic is normal.", "Normal"),
    ("Normal, no anomaly seen", "Normal"), ("Anomaly - not normal", "Anomaly"),
    ("The dog", None), ("", None), ("abnormality", "Anomaly"), ("paranormal", None),
])
def test_anomaly_parse(text, label):
    assert AnomalyTask().parse(text, CLIP) == label


@pytest.mark.parametrize("raw,norm", [("normal", "Normal"), (" Abnormal ", "Anomaly"), ("1", "Anomaly"),
                                      ("0", "Normal"), ("ANOMALY", "Anomaly")])
def test_label_normalization(raw, norm):
    assert normalize_anomaly_label(raw) == norm


def test_unknown_label_is_a_clear_error():
    with pytest.raises(ConfigError, match="neither Normal nor Anomaly"):
        normalize_anomaly_label("maybe")


MC = VideoClip(path="x.mp4", id="q1", question="What does the car ahead do?",
               options=("A. Turns left", "B. Goes straight", "C. Stops", "D. Reverses"), label="B")


@pytest.mark.parametrize("text,letter", [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("The answer is D.", "D"), ("Answer: A", "A"),
    ("Đáp án: B", "B"), ("Đáp án là C", "C"), ("答案是B", "B"), ("答案：D", "D"), ("选项 A", "A"),
    ("I think it stops", "C"), ("It goes straight ahead", "B"), ("none of these", None),
    ("E", None),
])
def test_multiple_choice_parse(text, letter):
    assert MultipleChoiceTask().parse(text, MC) == letter


def test_multiple_choice_prompt_and_truth():
    task = MultipleChoiceTask()
    prompt = task.prompt(MC)
    assert "A. Turns left" in prompt and "D. Reverses" in prompt and prompt.count("A. ") == 1
    assert task.candidates(MC) == ["A", "B", "C", "D"]
    assert task.truth(MC) == "B"
    full = VideoClip(path="x", id="y", question="q", options=MC.options, label="C. Stops")
    assert task.truth(full) == "C"
    text = VideoClip(path="x", id="z", question="q", options=MC.options, label="Reverses")
    assert task.truth(text) == "D"


def test_multiple_choice_needs_question_and_options():
    with pytest.raises(ConfigError, match="no options"):
        MultipleChoiceTask().candidates(CLIP)
    with pytest.raises(ConfigError, match="no question"):
        MultipleChoiceTask().prompt(CLIP)


def test_messages_put_the_video_first():
    msgs = AnomalyTask().messages(CLIP)
    assert msgs[0]["role"] == "user"
    assert [c["type"] for c in msgs[0]["content"]] == ["video", "text"]


def test_unknown_task_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'anomaly'"):
        get_task("anomoly")
