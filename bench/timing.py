"""How a cell is timed: pytest-benchmark when it is active, the same rounds by hand when it is not
(pytest-benchmark switches itself off under xdist), so every cell reports the same statistics."""

from __future__ import annotations

import time
from typing import Any, Callable


def benchmark_timer(benchmark, *, rounds: int, warmup_rounds: int) -> Callable:
    """A ``timer(fn) -> (last result, per-round seconds)`` for ``core.runner.run_cell``."""

    def timer(fn: Callable[[], Any]):
        box: dict[str, Any] = {}

        def target() -> None:
            box["result"] = fn()

        if getattr(benchmark, "disabled", False):
            for _ in range(warmup_rounds):
                target()
            samples = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                target()
                samples.append(time.perf_counter() - t0)
            return box["result"], samples
        benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        return box["result"], list(benchmark.stats.stats.data)

    return timer


from core.results import BENCHMARK_EXTRA_KEYS as EXTRA_KEYS  # noqa: E402


def extra_info(record: dict[str, Any]) -> dict[str, Any]:
    """The record fields that go into pytest-benchmark's ``extra_info``."""
    return {k: record.get(k) for k in EXTRA_KEYS}
