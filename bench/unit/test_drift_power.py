"""Gates with stated power: the paired (clustered) McNemar gate, the smallest detectable change of
each gate, and inconclusive verdicts with the clips needed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import stats
from core.metrics.drift import compare_formats
from core.metrics.verdict import FOUR_BIT, ThresholdError, evaluate, thresholds_for

pytestmark = pytest.mark.cpu


def rec(video: str, label: str, truth: str, *, clip: str | None = None, margin: float = 2.0) -> dict:
    other = "Normal" if label == "Anomaly" else "Anomaly"
    return {"video": video, "video_path": clip or f"{video}.mp4", "status": "ok", "truth": truth, "predicted": label,
            "candidate_logprobs": {label: -0.1, other: -0.1 - margin}, "token_ids": [1]}


def test_durkalski_by_hand():
    # clusters (b_k, c_k): (2,0) (1,0) (0,1) (3,0): sum d = 5, sum d^2 = 4+1+1+9 = 15, X2 = 25/15
    t = stats.clustered_mcnemar({"a": (2, 0), "b": (1, 0), "c": (0, 1), "d": (3, 0)}, items=12, clusters=4)
    assert t.statistic == pytest.approx(25 / 15) and t.method.startswith("clustered McNemar (Durkalski")
    from scipy.stats import chi2

    assert t.p_value == pytest.approx(chi2.sf(25 / 15, 1))
    balanced = stats.clustered_mcnemar({"a": (1, 1), "b": (2, 2)}, items=6, clusters=2)
    assert balanced.p_value == 1.0 and balanced.statistic == 0.0  # no direction: 0/0 guarded


def test_durkalski_with_one_item_per_cluster_is_uncorrected_mcnemar():
    # the published property of the adjustment: singleton clusters give (b - c)^2 / (b + c)
    pairs = {f"q{i}": (1, 0) for i in range(7)} | {f"r{i}": (0, 1) for i in range(2)}
    forced = stats.clustered_mcnemar(pairs, items=10, clusters=9)  # one concordant question shares a clip
    assert forced.statistic == pytest.approx((7 - 2) ** 2 / (7 + 2))
    exact = stats.clustered_mcnemar(pairs, items=9, clusters=9)
    assert exact.method == "exact McNemar" and exact.p_value == stats.mcnemar_exact(7, 2)


def test_mcnemar_power_matches_a_simulation():
    rng = np.random.default_rng(3)
    n, drop, trials = 30, 0.25, 3000
    hits = sum(stats.mcnemar_exact(int((rng.random(n) < drop).sum()), 0) <= 0.05 for _ in range(trials))
    assert stats.mcnemar_power(n, drop) == pytest.approx(hits / trials, abs=0.03)
    assert stats.mcnemar_power(n, drop, discordance=0.5) < stats.mcnemar_power(n, drop)  # noise costs power


def test_sensitivity_numbers():
    assert stats.min_detectable_drop(12) == pytest.approx(1 - 0.2 ** (1 / 12))
    assert stats.clips_needed(0.10, stats.min_detectable_drop) == 16  # 1 - 0.2**(1/16) = 0.0956 <= 0.10 < n=15
    assert stats.min_detectable_drop(15) > 0.10 >= stats.min_detectable_drop(16)
    # t power from statsmodels: effect 0.766 SD at n=12, alpha 0.05, power 0.8 (one-sided)
    assert stats.mean_min_detectable(12, 1.0) == pytest.approx(0.7664, abs=1e-3)
    assert stats.mean_clips_needed(0.5, 1.0) == 27  # statsmodels' nobs 26.14 for d=0.5, rounded up
    assert stats.clips_needed(0.0, stats.min_detectable_drop) is None


def agreeing(n: int) -> list[dict]:
    return [rec(f"c{i:02d}", "Anomaly" if i % 2 else "Normal", "Anomaly" if i % 2 else "Normal") for i in range(n)]


def test_a_small_set_is_inconclusive_with_the_clips_needed():
    ref = agreeing(12)
    report = compare_formats(ref, [dict(r) for r in ref], reference_format="bf16", candidate_format="fp8")
    verdict = evaluate(report, thresholds_for("fp8"))
    assert verdict.status == "inconclusive" and verdict.passed and verdict.failures == []
    flips = next(s for s in verdict.sensitivity if s.metric == "flip_rate")
    assert not flips.conclusive and flips.clips_needed == 16
    assert "INCONCLUSIVE" in verdict.render() and "16 clips would see it" in verdict.render()
    strict = evaluate(report, thresholds_for("fp8"), inconclusive="fail")
    assert not strict.passed and strict.status == "inconclusive" and "fails" in strict.render().splitlines()[0]
    d = verdict.to_dict()
    assert d["status"] == "inconclusive" and {s["metric"] for s in d["sensitivity"]} == {
        "flip_rate", "accuracy_drop", "mean_kl", "mean_abs_margin_change"}
    with pytest.raises(ThresholdError, match="inconclusive"):
        evaluate(report, thresholds_for("fp8"), inconclusive="maybe")


def test_a_large_set_is_conclusive_and_exact_limits_have_no_power():
    ref = agreeing(400)
    cand = [dict(r) for r in ref]
    for r in cand[:3]:  # a little KL so the t test has a spread
        r["candidate_logprobs"] = {k: v - 0.05 * (k == r["predicted"]) for k, v in r["candidate_logprobs"].items()}
    report = compare_formats(ref, cand, reference_format="bf16", candidate_format="int4_awq")
    limits = FOUR_BIT
    verdict = evaluate(report, limits)
    assert verdict.status == "pass", verdict.render()
    assert all(s.conclusive for s in verdict.sensitivity)
    same = compare_formats(ref[:5], ref[:5], reference_format="bf16", candidate_format="bf16")
    assert evaluate(same, thresholds_for("bf16")).sensitivity == ()  # zero limits test determinism
    assert evaluate(same, thresholds_for("bf16")).status == "pass"


def test_paired_gate_fails_a_significantly_worse_candidate_and_clusters_by_clip():
    # 40 questions, 8 right->wrong, none the other way: exact McNemar p = 2 * 0.5**8 = 0.0078
    ref = agreeing(40)
    cand = [dict(r) for r in ref]
    for r in cand[:8]:
        wrong = "Normal" if r["truth"] == "Anomaly" else "Anomaly"
        cand[cand.index(r)] = rec(r["video"], wrong, r["truth"])
    loose = FOUR_BIT.__class__(**{**vars(FOUR_BIT), "max_flip_rate": 1.0, "max_accuracy_drop": 0.5})
    verdict = evaluate(compare_formats(ref, cand, reference_format="bf16", candidate_format="int4_awq"), loose)
    assert verdict.status == "fail" and any(f.startswith("paired flips") and "exact McNemar p = 0.0078" in f
                                            for f in verdict.failures)
    # the same answers, but the 8 changed questions are 2 clips of 4 questions each: far less evidence
    clip_of = {r["video"]: (f"clip{i // 4}.mp4" if i < 8 else f"{r['video']}.mp4") for i, r in enumerate(ref)}
    ref_c = [{**r, "video_path": clip_of[r["video"]]} for r in ref]
    cand_c = [{**r, "video_path": clip_of[r["video"]]} for r in cand]
    report = compare_formats(ref_c, cand_c, reference_format="bf16", candidate_format="int4_awq")
    test = report.accuracy.test
    assert (test.b, test.c, test.items, test.clusters) == (8, 0, 40, 34)
    assert test.statistic == pytest.approx(64 / 32)  # (4 + 4)^2 / (4^2 + 4^2)
    clustered = evaluate(report, loose)
    assert not any(f.startswith("paired flips") for f in clustered.failures)  # p = 0.157: not significant
    assert "clustered McNemar" in clustered.render()


def test_no_truth_means_no_paired_gate_and_no_accuracy_power():
    ref = [{**r, "truth": None} for r in agreeing(20)]
    verdict = evaluate(compare_formats(ref, ref, reference_format="bf16", candidate_format="fp8"),
                       thresholds_for("fp8"))
    assert "accuracy_drop" not in {s.metric for s in verdict.sensitivity}
    assert math.isfinite(next(s.detectable for s in verdict.sensitivity if s.metric == "flip_rate"))
