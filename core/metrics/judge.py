"""The drift judges: ``judge_drift``, one function that both front doors call (``bench/test_drift.py`` and
``vqbench run`` for a pre-quantized checkpoint with ``--reference-model``), so a format is judged by the
same steps and written as the same record wherever it ran; and ``judge_batch_drift``, the same clips
answered alone and batched (the load scenarios, ``vqbench run --batch``).

The steps: keep the clips both sides answered (``usable_inputs``), compare the candidate's answers with
the reference's (``compare_formats``), judge the comparison against the candidate format's thresholds
and the paired gates at the configured confidence (``evaluate``), and build the ``DriftRecord``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.base.records import DriftRecord
from core.metrics.drift import DriftReport, compare_formats, usable_inputs
from core.metrics.verdict import DriftVerdict, evaluate, thresholds_for


@dataclass(frozen=True)
class DriftJudgement:
    report: DriftReport
    verdict: DriftVerdict
    record: DriftRecord
    """What the results file keeps (``core.base.records.DriftRecord``); reports read it."""


def judge_drift(plan, reference_plan, task: str, reference_records: Sequence[Mapping[str, Any]],
                records: Sequence[Mapping[str, Any]], settings) -> DriftJudgement:
    """Judge ``plan``'s answers (``records``) against ``reference_plan``'s answers to the same clips.

    ``plan`` and ``reference_plan`` are ``core.plan.matrix.EnginePlan``; ``settings`` gives the thresholds
    (``--threshold``), the confidence and what an inconclusive verdict does."""
    reference, candidate = usable_inputs(reference_records, records)
    report = compare_formats(reference, candidate, reference_format=reference_plan.engine.format,
                             candidate_format=plan.engine.format)
    verdict = evaluate(report, thresholds_for(plan.engine.format, settings.thresholds),
                       confidence=settings.drift_confidence, inconclusive=settings.drift_inconclusive)
    summary = verdict.to_dict()
    record: DriftRecord = {"type": "drift", "engine": plan.engine.id, "task": task, "passed": verdict.passed,
                           "report": report.to_dict(), "status": summary["status"], "verdict": summary,
                           "reference": reference_plan.engine.id}
    if plan.spec.is_prequantized:
        record["prequantized"] = plan.spec.prequantized.to_dict()
    return DriftJudgement(report, verdict, record)


def judge_batch_drift(alone: Sequence[Mapping[str, Any]], batched: Sequence[Mapping[str, Any]], *,
                      confidence: float = 0.95, inconclusive: str = "pass") -> dict[str, Any]:
    """Answers given in a batch (or under load) against the same clips answered alone, paired in order:
    label flips, KL over the candidates and token changes, judged with the drift statistics and the 8-bit
    tier's limits (batching changes kernels and reduction order, so exact equality is not the bar; a real
    regression is). Records need a ``video`` unique per pair, ``status``, ``predicted``, ``token_ids``
    and ``candidate_logprobs``."""
    from core.metrics.verdict import EIGHT_BIT

    if not alone:
        return {"status": "none", "n": 0, "note": "no batched answer to compare"}
    report = compare_formats(alone, batched, reference_format="alone", candidate_format="batched")
    verdict = evaluate(report, EIGHT_BIT, confidence=confidence, inconclusive=inconclusive)
    token_changes = sum(1 for r, c in zip(alone, batched, strict=True) if r["status"] == c["status"] == "ok"
                        and r["token_ids"] != c["token_ids"])
    return {"status": verdict.status, "n": report.n, "flips": report.n - report.agreement,
            "flip_rate": report.flip_rate, "kl_mean": report.kl_mean, "kl_max": report.kl_max,
            "token_sequence_changes": token_changes, "failures": verdict.failures,
            "errored": len(report.errored), "thresholds": "8-bit tier (core.metrics.verdict.EIGHT_BIT)",
            "verdict": verdict.to_dict()}
