"""The benchmark matrix: every (model, backend, format, task, clip) cell, timed and recorded.

CPU cells (``-m cpu``) run the embedded tiny models; GPU cells (``-m gpu``) add the shape-only
3B/7B models. Cells that cannot run here are skipped with the capability table's reason; cells that
can never run on their device kind (TensorRT-LLM on a CPU, a format with no route on a backend) are
deselected, one summary line per reason.
"""

from __future__ import annotations

import warnings

import pytest

from core.base.records import extra_info
from core.suite.timing import benchmark_timer


def test_cell(vqbench_cell, vqbench_state, benchmark):
    s = vqbench_state.settings
    benchmark.group = f"{vqbench_cell.plan.engine.model}-{vqbench_cell.task.name}-{vqbench_cell.clip.id}"
    rec = vqbench_state.run(vqbench_cell, timer=benchmark_timer(benchmark, rounds=s.rounds,
                                                                 warmup_rounds=s.warmup_rounds))
    benchmark.extra_info.update(extra_info(rec))
    # What every cell must deliver, whatever the backend: an answer scored over every candidate,
    # the timing split, and token counts.
    cands = rec["candidate_logprobs"]
    assert set(cands) == set(vqbench_cell.task.candidates(vqbench_cell.clip)), cands
    assert rec["predicted"] in cands
    assert all(v <= 0.0 for v in cands.values()), cands
    t = rec["timings"]
    assert 0 < t["prefill_s"] <= t["generate_s"] <= t["total_s"], t
    assert rec["tokens"]["video"] > 0 and rec["tokens"]["prompt"] > rec["tokens"]["video"]
    assert 1 <= rec["tokens"]["new"] <= s.max_new_tokens
    assert rec["kind"] == "timed" and len(rec["rounds_s"]) == s.rounds
    # --history: the cell against earlier runs on this GPU class (warn 5%, fail 10% beyond the noise)
    history = rec.get("history") or {}
    if history.get("status") == "fail":
        pytest.fail(f"latency regression against the history: {history['message']}", pytrace=False)
    if history.get("status") in ("warn", "clock change"):
        warnings.warn(f"{vqbench_cell.id}: latency {history['status']}: {history['message']}", stacklevel=1)
