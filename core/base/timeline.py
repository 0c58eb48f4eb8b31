"""Where a session's wall time goes: every stretch of work runs inside a named phase, and a phase's
own time excludes the phases nested in it, so the phases add up to the session's wall time and
whatever no phase covers is reported as unattributed (and should be small).

    with timeline.phase("engine start"):
        llm = vllm.LLM(...)

The suite (``core.suite``) opens phases for collection and for each test; engines, quantizers and
the runner open the finer ones (model build, quantizer import, calibration, export, engine start,
warm-up, timed rounds, scoring, video decode, roofline peaks, engine close).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

PHASES = (
    "collection", "imports", "video decode", "model build", "weights load", "quantizer import",
    "calibration + quantize", "export", "engine start", "warm-up", "timed rounds", "scoring", "roofline peaks",
    "engine close", "goldens", "drift", "cells (bookkeeping)", "other tests",
)
"""The phase names a session reports, in the order shown."""


class Ledger:
    """Self time per phase since ``start``; nested phases are subtracted from their parent."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.self_s: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        frame: list[Any] = [name, 0.0]
        with self._lock:
            self._stack.append(frame)
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            with self._lock:
                if frame in self._stack:
                    self._stack.remove(frame)
                self.self_s[name] += spent - frame[1]
                self.count[name] += 1
                if self._stack:
                    self._stack[-1][1] += spent

    def summary(self) -> dict[str, Any]:
        """Wall time so far, self time per phase (known phases first) and what no phase covers."""
        wall = time.perf_counter() - self.started
        order = {p: i for i, p in enumerate(PHASES)}
        phases = {k: round(v, 3) for k, v in sorted(self.self_s.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))}
        attributed = sum(self.self_s.values())
        return {"wall_s": round(wall, 3), "phases": phases, "counts": dict(self.count),
                "unattributed_s": round(max(0.0, wall - attributed), 3)}


LEDGER = Ledger()


def phase(name: str):
    """A phase of the session's ledger (a context manager)."""
    return LEDGER.phase(name)


def render(summary: Mapping[str, Any]) -> list[str]:
    """The summary as aligned text lines (the session's terminal summary)."""
    wall = summary["wall_s"] or 1e-9
    lines = [f"{'phase':<24} {'seconds':>9} {'share':>6}"]
    for name, s in summary["phases"].items():
        lines.append(f"{name:<24} {s:>9.2f} {100 * s / wall:>5.1f}%")
    unattributed = summary["unattributed_s"]
    lines.append(f"{'unattributed':<24} {unattributed:>9.2f} {100 * unattributed / wall:>5.1f}%")
    lines.append(f"{'wall':<24} {summary['wall_s']:>9.2f}")
    return lines
