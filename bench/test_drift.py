"""Drift of every format against the reference format (bf16 by default), per engine.

Fails when a format exceeds its thresholds (core.metrics.verdict; override them with
``--threshold FORMAT.METRIC=VALUE`` or ``[tool.vqbench.thresholds]``) or the paired McNemar gate finds
it significantly less accurate, printing the statistics behind the decision and the offending videos
side by side; a verdict from a clip set too small to see its limits is INCONCLUSIVE (passes unless
``--drift-inconclusive fail``), with the clips needed. The judge is ``core.metrics.judge.judge_drift``,
the one ``vqbench run`` uses too. The reference itself is checked for
run-to-run noise instead: on CPU two runs must agree exactly; on a GPU a label flip, a log-prob
difference beyond the golden tolerance or a video lost on one run fails, and smaller differences
are reported as RunToRunNoise warnings (core.metrics.drift.judge_run_to_run). A pre-quantized
checkpoint is compared with the model it was quantized from (``--reference-model``), in the reference
format. Engines whose drift cannot be judged here (a reference that cannot run here, no
``--reference-model``) are skipped by the plan, with the reason; those never judged anywhere (random
weights) are deselected, counted in the summary.
"""

from __future__ import annotations

import warnings

import pytest

from core.metrics.drift import RunToRunNoise, judge_run_to_run, usable_inputs
from core.metrics.judge import judge_drift
from core.plan.matrix import Cell


@pytest.mark.vqbench(judge="drift")
def test_drift(vqbench_engine, vqbench_state, record_property):
    plan, task = vqbench_engine
    st = vqbench_state
    ref_fmt = st.settings.reference_format
    cells = [Cell(plan, task, clip) for clip in st.clips_for(task.name)]
    if plan.reference is None:
        first = [st.answer(c) for c in cells]
        second = [st.rerun(c) for c in cells]  # a fresh generation of every clip, compared with the first
        first, second = usable_inputs(first, second)
        # What may differ is fixed before comparing (exact on CPU; on a GPU log-probs within the golden
        # tolerance and tokens that keep the label), never an imperative xfail that xfail_strict cannot see.
        noise, failures, notes = judge_run_to_run(first, second, exact=plan.engine.device == "cpu",
                                                  tolerance=st.settings.golden_tolerance_for(ref_fmt))
        record_property("run_to_run", noise)
        for note in notes:
            warnings.warn(RunToRunNoise(f"{plan.engine.id} {task.name}: {note}"), stacklevel=1)
        if failures:
            pytest.fail(f"{ref_fmt} run to run on {plan.engine.device}: " + "; ".join(failures), pytrace=False)
        return
    # The same model in the reference format, or (a pre-quantized checkpoint) the --reference-model's engine.
    ref_plan = next(p for p in st.plans if p.engine == plan.reference)
    judged = judge_drift(plan, ref_plan, task.name, [st.answer(Cell(ref_plan, task, c.clip)) for c in cells],
                         [st.answer(c) for c in cells], st.settings)
    if plan.spec.is_prequantized:
        record_property("reference_model", ref_plan.engine.model)
    record_property("drift", judged.record["report"])
    record_property("drift_verdict", judged.record["verdict"])
    st.save_drift(judged.record)
    print(judged.verdict.render())
    if not judged.verdict.passed:
        pytest.fail(judged.verdict.render(), pytrace=False)
