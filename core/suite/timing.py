"""How a cell is timed: pytest-benchmark when it is active, the same rounds by hand when it is not
(pytest-benchmark switches itself off under xdist), so every cell reports the same statistics.

``before_round`` runs before every round, outside the clock (pytest-benchmark's ``setup``): the
vLLM backend resets its prefix and multimodal caches there, so each timed round answers a video the
engine has not seen, as a first request does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from core.base import timeline

T = TypeVar("T")
Timer = Callable[..., tuple[Any, list[float]]]


def rounds(fn: Callable[[], T], *, rounds: int, warmup_rounds: int,
           before_round: Callable[[], None] | None = None) -> tuple[T, list[float]]:
    """Warm-up rounds, then timed rounds; returns the last result and each timed round's seconds."""
    prepare = before_round or (lambda: None)
    result: Any = None
    with timeline.phase("warm-up"):
        for _ in range(warmup_rounds):
            prepare()
            result = fn()
    samples = []
    with timeline.phase("timed rounds"):
        for _ in range(rounds):
            prepare()
            t0 = time.perf_counter()
            result = fn()
            samples.append(time.perf_counter() - t0)
    return result, samples


def benchmark_timer(benchmark, *, rounds: int, warmup_rounds: int) -> Timer:
    """A ``timer(fn, before_round=None) -> (last result, per-round seconds)`` for ``run_cell``."""

    def timer(fn: Callable[[], T], *, before_round: Callable[[], None] | None = None) -> tuple[T, list[float]]:
        if benchmark is None or getattr(benchmark, "disabled", False):
            return globals()["rounds"](fn, rounds=rounds, warmup_rounds=warmup_rounds, before_round=before_round)
        box: dict[str, Any] = {}

        def target() -> None:
            box["result"] = fn()

        setup = None if before_round is None else (lambda: before_round() and None)
        with timeline.phase("timed rounds"):
            benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        return box["result"], list(benchmark.stats.stats.data)

    return timer
