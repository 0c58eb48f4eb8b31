"""Resuming ``vqbench run`` from its results file (``--resume``).

Every run writes a header with its identity: the engine (model, backend, format, device), the
task, the videos, the decoder that actually ran, and every ``vqbench run`` option that can change
an answer. A resumed run must have the same identity as every run already in the file, or it is
refused with the settings that differ; then only the videos without an answer in the file are
answered (earlier errors are tried again), and the summary, CSV and report cover all of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.base import results
from core.base.errors import ConfigError
from core.base.records import CellRecord
from core.plan import settings as settings_mod

FREE = frozenset({"results", "max_videos", "resume", "decode_workers", "decode_memory", "gpu_memory_utilization",
                  "videos"})
"""``vqbench run`` options that change no answer (where results go, how many videos, how decoding
is scheduled, how much GPU memory vLLM reserves): they may differ between a run and its resumption."""

ENGINE_KEYS = {"model": "--model", "backend": "--backend", "format": "--format", "task": "--task",
               "device": "--device", "videos": "--videos", "decoder_used": "the decoder that ran"}


def identity(settings: settings_mod.Settings, *, model: str, backend: str, fmt: str, task: str, device: str,
             videos: str, decoder_used: str) -> dict[str, Any]:
    """What must match for a run's answers to be reused: the engine, task, videos, the decoder that
    ran, and the answer-changing options (JSON values, as the header stores them)."""
    ident: dict[str, Any] = {"model": model, "backend": backend, "format": fmt, "task": task, "device": device,
                             "videos": videos, "decoder_used": decoder_used}
    for f in settings_mod.options("run"):
        if f.name not in FREE:
            ident[f.name] = getattr(settings, f.name)
    return json.loads(json.dumps(ident, default=str))


def _label(key: str) -> str:
    if key in ENGINE_KEYS:
        return ENGINE_KEYS[key]
    for f in settings_mod.options():
        if f.name == key:
            flags = f.metadata["option"].flags
            return flags[0] if flags else key
    return key


def differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'--fps 4.0 (now 2.0)' for every key whose value differs."""
    out = []
    for key in sorted(set(before) | set(now), key=lambda k: (k not in ENGINE_KEYS, k)):
        if before.get(key) != now.get(key):
            out.append(f"{_label(key)} {json.dumps(before.get(key))} (now {json.dumps(now.get(key))})")
    return out


def answered(path: Path, ident: dict[str, Any], *, engine: str) -> dict[str, CellRecord]:
    """The answered cell records of ``engine`` in ``path``, by video id (none when the file does not
    exist yet). Raises ConfigError when the file was written by runs with other settings."""
    path = Path(path)
    if not path.exists():
        return {}
    records = list(results.read(path))
    headers = [r for r in records if r.get("type") == "header"]
    cells = [r for r in records if r.get("type", "cell") == "cell"]
    if not headers and not cells:
        return {}
    runs = [h for h in headers if h.get("command") == "run"]
    if len(runs) != len(headers) or not runs:
        raise ConfigError(f"--resume: {path} was not written by `vqbench run` (it holds pytest suite results); "
                          "give the results file of the run to resume")
    for h in runs:
        before = h.get("run")
        if not isinstance(before, dict):
            raise ConfigError(f"--resume: {path} was written by a vqbench without resumable headers; "
                              "start a new results file")
        diff = differences(before, ident)
        if diff:
            raise ConfigError(f"--resume: {path} was written with other settings: {'; '.join(diff)}. Resume with "
                              "the earlier settings, or write to another results file (--results) without --resume")
    done = results.from_records(r for r in cells if r.get("engine") == engine)
    return {str(r["video"]): r for r in done.answers() if r.get("status", "ok") == "ok"}
