"""Drift statistics: hand-computed values, properties, and the verdict on identical and perturbed runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.metrics.drift import (
    candidate_distribution,
    compare_formats,
    judge_run_to_run,
    kl_divergence,
    margin,
    run_to_run,
)
from core.metrics.stats import (
    mcnemar_exact,
    min_detectable_drop,
    normal_quantile,
    percentile,
    wilson_interval,
)
from core.metrics.verdict import DEFAULT_THRESHOLDS, EIGHT_BIT, FOUR_BIT, Thresholds, evaluate, thresholds_for

pytestmark = pytest.mark.cpu

LABELS = ("Anomaly", "Normal")


def rec(video: str, anomaly: float, normal: float, *, truth: str | None = None, status: str = "ok",
        token_ids: list[int] | None = None) -> dict:
    """A cell record as ``core.cells.runner.record`` writes it, reduced to the fields drift reads."""
    lps = {"Anomaly": anomaly, "Normal": normal}
    return {"video": video, "format": "x", "status": status, "truth": truth,
            "predicted": max(lps, key=lps.get), "parsed": None, "answer": "",
            "candidate_logprobs": lps, "token_ids": token_ids if token_ids is not None else [7, 8]}


def reference_set(n: int = 13) -> list[dict]:
    """Confident, varied reference records; truth equals the reference label."""
    out = []
    for i in range(n):
        a, b = -0.2 - 0.05 * i, -2.5 + 0.03 * i
        lps = (a, b) if i % 2 else (b, a)
        out.append(rec(f"clip_{i:02d}", *lps, truth="Anomaly" if i % 2 else "Normal"))
    return out


# --- stats: hand-computed ----------------------------------------------------------------------

def test_wilson_10_of_13_by_hand():
    # z = 1.959964, z^2 = 3.841459, p = 10/13 = 0.769231, z^2/n = 0.295497, denominator 1.295497
    # centre = (0.769231 + 3.841459/26) / 1.295497 = 0.916979 / 1.295497 = 0.707820
    # half = 1.959964/1.295497 * sqrt(0.769231*0.230769/13 + 3.841459/676)
    #      = 1.512904 * sqrt(0.013655 + 0.005683) = 1.512904 * 0.139061 = 0.210385
    low, high = wilson_interval(10, 13)
    assert low == pytest.approx(0.707820 - 0.210385, abs=2e-6)
    assert high == pytest.approx(0.707820 + 0.210385, abs=2e-6)


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(13, 13)
    assert high == 1.0 and low == pytest.approx(13 / (13 + 1.959964**2), abs=1e-6)  # k=n: n/(n+z^2)
    assert wilson_interval(0, 13)[0] == 0.0
    assert wilson_interval(5, 10, confidence=0.99)[0] < wilson_interval(5, 10)[0]
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(14, 13)


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 5) == 0.0625  # 2 * (1/2)^5
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 1024)  # 2 * (C(10,0)+C(10,1)) / 2^10
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 0) == 1.0


def test_normal_quantile_and_percentile():
    assert normal_quantile(0.975) == pytest.approx(1.959963984540054, abs=1e-12)
    assert normal_quantile(0.5) == pytest.approx(0.0, abs=1e-14)
    assert normal_quantile(0.05) == pytest.approx(-1.6448536269514722, abs=1e-12)
    assert percentile([3.0, 1.0, 2.0, 10.0], 37) == pytest.approx(2.11)
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


def test_min_detectable_drop():
    # baseline 100%: any disagreement rejects, so power 0.8 needs 1 - p^n >= 0.8
    assert min_detectable_drop(13) == pytest.approx(1 - 0.2 ** (1 / 13), abs=1e-9)  # 0.1164
    assert min_detectable_drop(13) > min_detectable_drop(50) > min_detectable_drop(500)
    assert min_detectable_drop(0) == math.inf
    assert min_detectable_drop(3, baseline=0.5) == math.inf  # P(X=0 | 0.5) = 0.125 > alpha: never significant
    assert 0 < min_detectable_drop(200, baseline=0.9) < 0.1


def test_min_detectable_drop_below_full_baseline():
    # 20 videos, baseline 90%: P(X <= 15 | 0.9) = 0.043 <= 0.05 < P(X <= 16 | 0.9) = 0.133, so the test
    # rejects at <= 15 agreements; the answer is the rate at which that happens with probability 0.8
    def cdf(k, n, p):
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    assert cdf(15, 20, 0.9) == pytest.approx(0.0432, abs=1e-4) and cdf(16, 20, 0.9) == pytest.approx(0.1330, abs=1e-4)
    drop = min_detectable_drop(20, baseline=0.9)
    assert cdf(15, 20, 0.9 - drop) == pytest.approx(0.8, abs=1e-9)


# --- stats: properties -------------------------------------------------------------------------

@settings(deadline=None)  # the first call imports scipy/statsmodels
@given(st.integers(0, 300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_rate(kn):
    k, n = kn
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= k / n <= high


@settings(deadline=None)  # the first call imports scipy/statsmodels
@given(st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_symmetric_and_a_probability(b, c):
    p = mcnemar_exact(b, c)
    assert p == mcnemar_exact(c, b)
    assert 0.0 < p <= 1.0


logprob = st.floats(-30.0, 0.0, allow_nan=False)


@given(st.lists(logprob, min_size=2, max_size=6), st.lists(logprob, min_size=2, max_size=6))
def test_kl_nonnegative(a, b):
    k = min(len(a), len(b))
    labels = [f"l{i}" for i in range(k)]
    p, q = (candidate_distribution(dict(zip(labels, x))) for x in (a, b))
    assert kl_divergence(p, q) >= 0.0
    assert kl_divergence(p, p) == 0.0


@settings(deadline=None)  # the first call imports scipy/statsmodels
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.floats(0, 100))
def test_percentile_matches_numpy(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


@given(st.lists(logprob, min_size=2, max_size=5), st.floats(-10, 10))
def test_margin_ignores_normalization(values, shift):
    lps = {f"l{i}": v for i, v in enumerate(values)}
    shifted = {k: v + shift for k, v in lps.items()}
    assert margin(shifted) == pytest.approx(margin(lps), abs=1e-9)


# --- drift primitives --------------------------------------------------------------------------

def test_candidate_distribution_renormalizes():
    p = candidate_distribution({"Anomaly": math.log(0.2) - 5, "Normal": math.log(0.6) - 5})
    assert p == pytest.approx({"Anomaly": 0.25, "Normal": 0.75})


def test_kl_known_bernoulli():
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3)
    kl = kl_divergence({"a": 0.5, "b": 0.5}, {"a": 0.25, "b": 0.75})
    assert kl == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    assert kl_divergence({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}) == pytest.approx(-math.log(1e-12))
    with pytest.raises(ValueError, match="same candidate labels"):
        kl_divergence({"a": 1.0}, {"b": 1.0})


def test_margin_ties_are_deterministic():
    assert margin({"b": -1.0, "a": -1.0, "c": -3.0}) == 0.0
    assert margin({"x": -0.5, "y": -2.0}) == 1.5


# --- compare_formats and evaluate --------------------------------------------------------------

def test_identical_runs_have_zero_drift_and_pass_bf16():
    ref = reference_set()
    report = compare_formats(ref, [dict(r) for r in ref], reference_format="bf16", candidate_format="bf16")
    assert report.n == 13 and report.agreement == 13 and report.flips == []
    assert report.kl_max == 0.0 and report.kl_mean == 0.0 and report.abs_margin_change_max == 0.0
    assert report.delta_p_mean == 0.0 and report.same_top_token == 13
    assert report.accuracy.mcnemar_p == 1.0 and report.accuracy.drop == 0.0
    verdict = evaluate(report, thresholds_for("bf16"))
    assert verdict.passed and verdict.failures == []
    assert "PASS" in verdict.render() and "offending" not in verdict.render()


def perturbed(ref: list[dict], flip: set[str]) -> list[dict]:
    """The reference with the given videos' two log-probs swapped (a label flip) and a tiny nudge elsewhere."""
    out = []
    for r in ref:
        a, n = r["candidate_logprobs"]["Anomaly"], r["candidate_logprobs"]["Normal"]
        out.append(rec(r["video"], n, a, truth=r["truth"]) if r["video"] in flip
                   else rec(r["video"], a - 1e-4, n, truth=r["truth"]))
    return out


def test_perturbed_candidate_fails_and_lists_offenders():
    ref = reference_set()
    flip = {"clip_03", "clip_08"}
    report = compare_formats(ref, perturbed(ref, flip), reference_format="bf16", candidate_format="int8_sq")
    assert report.agreement == 11 and {v.video for v in report.flips} == flip
    assert {v.video: v.direction for v in report.flips} == {"clip_03": "Anomaly->Normal", "clip_08": "Normal->Anomaly"}
    p_ref = {v: 1 / (1 + math.exp(-abs(r["candidate_logprobs"]["Anomaly"] - r["candidate_logprobs"]["Normal"])))
             for v, r in ((r["video"], r) for r in ref)}
    flipped = {v.video: v for v in report.flips}
    assert flipped["clip_03"].delta_p == pytest.approx(2 * p_ref["clip_03"] - 1)  # p -> 1 - p after the swap
    assert report.delta_p_mean == pytest.approx(sum(2 * p_ref[v] - 1 for v in flip) / 13, abs=1e-4)  # nudges ~1e-5
    assert report.accuracy.b == 2 and report.accuracy.c == 0 and report.accuracy.mcnemar_p == 0.5
    verdict = evaluate(report, thresholds_for("int8_sq"))
    assert not verdict.passed
    assert any(f.startswith("flip_rate = 0.154 (2/13) > limit max_flip_rate 0.100") for f in verdict.failures)
    assert any(f.startswith("max_kl") for f in verdict.failures)
    assert set(verdict.offending) == flip
    table = verdict.render().split("offending videos:\n", 1)[1].splitlines()
    assert table[0].startswith("video") and {row.split(" | ")[0].strip() for row in table[1:]} == flip
    assert "Anomaly->Normal x1" in verdict.render() and "McNemar exact p = 0.5" in verdict.render()


LOOSE = dict(max_flip_rate=1.0, max_mean_kl=100.0, max_kl=100.0, max_mean_abs_margin_change=100.0,
             max_accuracy_drop=1.0)


def squeezed(ref: list[dict], videos: set[str]) -> list[dict]:
    """The reference with the given videos' log-probs pulled 40% toward each other (less sure, no flip)."""
    out = [dict(r) for r in ref]
    for i, r in enumerate(out):
        if r["video"] in videos:
            a, n = r["candidate_logprobs"]["Anomaly"], r["candidate_logprobs"]["Normal"]
            out[i] = rec(r["video"], a + 0.2 * (n - a), n + 0.2 * (a - n), truth=r["truth"])
    return out


@pytest.mark.parametrize("metric,make", [
    ("max_flip_rate", perturbed), ("max_accuracy_drop", perturbed), ("max_kl", perturbed),
    ("max_mean_kl", perturbed), ("max_mean_abs_margin_change", squeezed),
])
def test_each_gate_fails_alone_and_names_its_videos(metric, make):
    ref, offenders = reference_set(), {"clip_03", "clip_08"}
    report = compare_formats(ref, make(ref, offenders), reference_format="bf16", candidate_format="int4_awq")
    verdict = evaluate(report, Thresholds(**{**LOOSE, metric: 0.05}))
    assert len(verdict.failures) == 1 and f"limit {metric} 0.05" in verdict.failures[0]
    assert set(verdict.offending) == offenders
    assert report.agreement == (13 if make is squeezed else 11)


def test_same_top_token_counts_only_records_with_tokens():
    ref = reference_set(3)
    cand = [{**r, "token_ids": ids} for r, ids in zip(ref, ([7, 8], [9, 8], []))]
    report = compare_formats(ref, cand, reference_format="bf16", candidate_format="fp8")
    assert (report.same_top_token, report.same_top_token_n) == (1, 2)
    assert [v.same_top_token for v in report.videos] == [True, False, None]


def test_tiny_nudge_passes_int8_but_not_bf16():
    ref = reference_set()
    report = compare_formats(ref, perturbed(ref, set()), reference_format="bf16", candidate_format="int8_sq")
    assert report.agreement == 13 and 0 < report.kl_max < 1e-4
    assert evaluate(report, thresholds_for("int8_sq")).passed
    strict = evaluate(report, thresholds_for("bf16"))
    assert not strict.passed and any(f.startswith("mean_kl") for f in strict.failures)


def test_unpaired_and_errored_are_kept_apart():
    ref = reference_set(4) + [rec("only_ref", -1, -2)]
    cand = [dict(r) for r in ref[:4]] + [rec("only_cand", -1, -2)]
    cand[1] = {**cand[1], "status": "error"}
    report = compare_formats(ref, cand, reference_format="bf16", candidate_format="bf16")
    assert report.n == 3 and report.unpaired == ("only_cand", "only_ref") and report.errored == ("clip_01",)
    verdict = evaluate(report, thresholds_for("bf16"))
    assert not verdict.passed and "clip_01" in verdict.failures[0]


def test_empty_pairing_fails_and_duplicates_raise():
    report = compare_formats([], [], reference_format="bf16", candidate_format="fp8")
    assert report.n == 0 and report.kl_mean is None and report.min_detectable_drop == math.inf
    assert not evaluate(report, thresholds_for("fp8")).passed
    with pytest.raises(ValueError, match="appears twice"):
        compare_formats([rec("a", -1, -2)] * 2, [], reference_format="bf16", candidate_format="fp8")


def test_to_dict_is_strict_json():
    ref = reference_set(3)
    d = compare_formats(ref, perturbed(ref, {"clip_00"}), reference_format="bf16", candidate_format="nvfp4").to_dict()
    assert json.loads(json.dumps(d, allow_nan=False))["flips"] == [
        {"video": "clip_00", "reference": "Normal", "candidate": "Anomaly", "direction": "Normal->Anomaly"}]
    empty = compare_formats([], [], reference_format="bf16", candidate_format="nvfp4").to_dict()
    assert empty["min_detectable_drop"] is None
    json.dumps(empty, allow_nan=False)


# --- thresholds --------------------------------------------------------------------------------

def test_default_thresholds_by_tier():
    assert DEFAULT_THRESHOLDS["bf16"] == Thresholds(max_flip_rate=0, max_mean_kl=0, max_kl=0,
                                                    max_mean_abs_margin_change=0, max_accuracy_drop=0)
    for name in ("fp8", "int8_sq", "bnb_int8", "fp8_dynamic", "int8_weight_only"):
        assert DEFAULT_THRESHOLDS[name] == EIGHT_BIT, name
    for name in ("nvfp4", "int4_awq", "w4a8_awq", "bnb_nf4", "int4_weight_only"):
        assert DEFAULT_THRESHOLDS[name] == FOUR_BIT, name
    assert all(getattr(EIGHT_BIT, k) < getattr(FOUR_BIT, k) for k in vars(EIGHT_BIT))


def test_kv_suffix_and_override_merging():
    assert thresholds_for("int8_sq+kv_fp8") == DEFAULT_THRESHOLDS["int8_sq"]
    assert thresholds_for("bf16+kv_fp8") == EIGHT_BIT  # an FP8 KV cache is never exact
    merged = thresholds_for("nvfp4", {"nvfp4": {"max_mean_kl": 0.2}, "fp8": {"max_kl": 9}})
    assert merged.max_mean_kl == 0.2 and merged.max_kl == FOUR_BIT.max_kl
    exact_name = thresholds_for("nvfp4+kv_fp8", {"nvfp4": {"max_kl": 1.0}, "nvfp4+kv_fp8": {"max_kl": 2.0}})
    assert exact_name.max_kl == 2.0
    assert DEFAULT_THRESHOLDS["nvfp4"].max_mean_kl == FOUR_BIT.max_mean_kl  # the preset was not mutated


def test_override_errors_name_what_is_valid():
    with pytest.raises(ValueError, match="unknown threshold 'max_kld'.*valid keys: max_flip_rate, max_mean_kl"):
        thresholds_for("fp8", {"fp8": {"max_kld": 0.1}})
    with pytest.raises(ValueError, match="finite number >= 0"):
        thresholds_for("fp8", {"fp8": {"max_kl": -1}})
    with pytest.raises(ValueError, match="no drift thresholds for format 'fp16'"):
        thresholds_for("fp16")


# --- run to run --------------------------------------------------------------------------------

def test_run_to_run():
    first = reference_set(4) + [rec("dead", -math.inf, -1.0)]
    same = run_to_run(first, [dict(r) for r in first])
    assert same["identical"] and same["max_abs_logprob_diff"] == 0.0 and same["differing_videos"] == []
    second = [dict(r) for r in first]
    second[2] = {**second[2], "token_ids": [7, 9]}
    second[3] = {**second[3], "candidate_logprobs": {**second[3]["candidate_logprobs"], "Normal": -1.0}}
    diff = run_to_run(first, second)
    assert not diff["identical"] and diff["token_id_differences"] == ["clip_02"]
    assert diff["differing_videos"] == ["clip_02", "clip_03"] and diff["label_differences"] == []
    one_sided = [dict(r) for r in first]
    one_sided[0] = {**one_sided[0], "candidate_logprobs": {**one_sided[0]["candidate_logprobs"], "Other": -9.0}}
    assert run_to_run(first, one_sided)["logprob_differences"] == ["clip_00"]
    second[4] = rec("dead", -5.0, -1.0)
    revived = run_to_run(first, second)
    assert "dead" in revived["logprob_differences"] and revived["max_abs_logprob_diff"] is None
    assert diff["max_abs_logprob_diff"] == pytest.approx(abs(-1.0 - first[3]["candidate_logprobs"]["Normal"]))


def _second_run(first: list[dict], changes: dict[int, dict]) -> list[dict]:
    """``first`` run again, with ``changes`` (fields by clip index) applied."""
    return [{**r, **changes.get(i, {})} for i, r in enumerate(first)]


def test_gpu_run_to_run_label_flip_fails():
    """The GPU branch used an imperative pytest.xfail for any difference, which xfail_strict does not
    cover: a reference whose labels flip between two runs could never fail a GPU run."""
    first = reference_set(4)
    flipped = _second_run(first, {1: {"predicted": "Normal", "candidate_logprobs": {"Anomaly": -0.7, "Normal": -0.69}}})
    noise, failures, _ = judge_run_to_run(first, flipped, exact=False, tolerance=0.05)
    assert noise["label_differences"] == ["clip_01"]
    assert len(failures) == 2 and "labels flip between two runs on ['clip_01']" in failures[0]
    assert "more than the tolerated 0.05" in failures[1]  # its log-probs moved by far more than that too


def test_gpu_run_to_run_fails_beyond_the_golden_tolerance_and_on_lost_videos():
    first = reference_set(4)
    lp = first[2]["candidate_logprobs"]
    moved = _second_run(first, {2: {"candidate_logprobs": {**lp, "Normal": lp["Normal"] + 0.2}}})
    noise, (failure,), _ = judge_run_to_run(first, moved, exact=False, tolerance=0.05)
    assert noise["label_differences"] == [] and noise["max_abs_logprob_diff"] == pytest.approx(0.2)
    assert "more than the tolerated 0.05 (the golden tolerance), on ['clip_02']" in failure
    (failure,) = judge_run_to_run(first, _second_run(first, {3: {"status": "error"}}), exact=False, tolerance=0.05)[1]
    assert "failed on one run (['clip_03'])" in failure
    (failure,) = judge_run_to_run(first, first[:3], exact=False, tolerance=0.05)[1]
    assert "missing from one (['clip_03'])" in failure


def test_gpu_run_to_run_within_tolerance_is_reported_not_failed():
    first = reference_set(4)
    lp = first[0]["candidate_logprobs"]
    second = _second_run(first, {0: {"candidate_logprobs": {**lp, "Anomaly": lp["Anomaly"] + 0.01}},
                                 3: {"token_ids": [7, 9]}})
    noise, failures, notes = judge_run_to_run(first, second, exact=False, tolerance=0.05)
    assert not noise["identical"] and failures == []
    assert notes == ["generated tokens differ between two runs on ['clip_03'] (labels equal)",
                     f"candidate log-probs differ between two runs on ['clip_00'], by at most "
                     f"{noise['max_abs_logprob_diff']} nats (tolerated: 0.05)"]
    assert judge_run_to_run(first, [dict(r) for r in first], exact=False, tolerance=0.05)[1:] == ([], [])


def test_cpu_run_to_run_must_be_exact():
    first = reference_set(4)
    lp = first[0]["candidate_logprobs"]
    second = _second_run(first, {0: {"candidate_logprobs": {**lp, "Anomaly": lp["Anomaly"] + 0.01}}})
    (failure,) = judge_run_to_run(first, second, exact=True, tolerance=0.05)[1]
    assert failure.startswith("not deterministic on CPU")
    assert judge_run_to_run(first, [dict(r) for r in first], exact=True, tolerance=0.05)[1:] == ([], [])


def test_no_suite_test_calls_xfail_imperatively():
    """xfail_strict covers xfail markers only: an imperative pytest.xfail() always ends as xfailed, so a
    check behind it can never fail. Expected failures in the suite are markers (or real failures)."""
    import ast

    from core.base import paths

    calls = []
    for path in sorted((paths.PROJECT_ROOT / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "xfail"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "pytest"):
                calls.append(f"{path.relative_to(paths.PROJECT_ROOT)}:{node.lineno}")
    assert calls == []
