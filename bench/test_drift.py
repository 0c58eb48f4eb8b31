"""Drift of every format against the reference format (bf16 by default), per engine.

Fails when a format exceeds its thresholds (core.metrics.verdict; override them with
``--threshold FORMAT.METRIC=VALUE`` or ``[tool.vqbench.thresholds]``), printing the statistics
behind the decision and the offending videos side by side. The reference itself is checked for
run-to-run noise instead: on CPU two runs must agree exactly.
"""

from __future__ import annotations

import pytest

from core.matrix import Cell
from core.metrics.drift import compare_formats, run_to_run
from core.metrics.verdict import evaluate, thresholds_for


def _records(st, plan, task):
    out = []
    for clip in st.clips_for(task):
        try:
            out.append(st.run(Cell(plan, task, clip)))
        except Exception:  # noqa: BLE001 - recorded as an error record by st.run
            out.append(st.records[Cell(plan, task, clip).id])
    return out


def _usable_inputs(*sides):
    """Drop videos that failed to decode on every side: a broken input, not drift."""
    broken = set.intersection(*({r["video"] for r in s if r.get("error_type") == "VideoError"} for s in sides))
    return [[r for r in s if r["video"] not in broken] for s in sides]


def test_drift(vqbench_engine, vqbench_state, record_property):
    plan, task = vqbench_engine
    st = vqbench_state
    ref_fmt = st.settings.reference_format
    if plan.spec.random_weights and plan.engine.format != ref_fmt:
        pytest.skip(f"{plan.spec.name} has random weights (near-tied labels): its answers carry no meaning, so "
                    "drift against bf16 is not judged; tiny-trained and real checkpoints are")
    if plan.engine.format == ref_fmt:
        first = _records(st, plan, task)
        second = []
        for clip in st.clips_for(task):  # a fresh generation of every clip, compared with the first
            cell = Cell(plan, task, clip)
            try:
                second.append(st.run(cell, timer=lambda fn: (fn(), None)))
            except Exception:  # noqa: BLE001
                second.append(st.records[cell.id])
        first, second = _usable_inputs(first, second)
        noise = run_to_run(first, second)
        record_property("run_to_run", noise)
        if plan.engine.device == "cpu":
            assert noise["identical"], f"{ref_fmt} is not deterministic on CPU: {noise}"
        elif not noise["identical"]:
            # GPU kernels may be non-deterministic: report it, never hide it.
            pytest.xfail(f"run-to-run differences on GPU (reported, not hidden): {noise['differing_videos']}")
        return
    ref_plan = next((p for p in st.plans if p.engine == plan.engine.with_format(ref_fmt)), None)
    if ref_plan is None or not ref_plan.verdict.runnable:
        why = "not in the matrix" if ref_plan is None else ref_plan.verdict.reason
        pytest.skip(f"reference {plan.engine.with_format(ref_fmt).id} cannot run: {why}")
    reference, candidate = _usable_inputs(_records(st, ref_plan, task), _records(st, plan, task))
    report = compare_formats(reference, candidate, reference_format=ref_fmt, candidate_format=plan.engine.format)
    verdict = evaluate(report, thresholds_for(plan.engine.format, st.settings.thresholds))
    record_property("drift", report.to_dict())
    st.save_drift(plan.engine.id, task, report.to_dict(), verdict.passed)
    print(verdict.render())
    if not verdict.passed:
        pytest.fail(verdict.render(), pytrace=False)
