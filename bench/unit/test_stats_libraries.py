"""Statistics from scipy/statsmodels give the numbers and verdicts the hand-written ones gave
(``legacy_stats`` keeps those verbatim), on random inputs, on every committed golden and on timing
fixtures; edge cases (n=0, all agree, no discordant pairs) are guarded."""

from __future__ import annotations

import csv
import json
import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.unit import legacy_stats as legacy
from core import paths
from core import settings as settings_mod
from core.metrics import drift, stats
from core.metrics.drift import compare_formats
from core.metrics.verdict import evaluate, thresholds_for
from core.report import compare as compare_mod

pytestmark = pytest.mark.cpu

counts = st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(deadline=None)  # the first call imports scipy/statsmodels
@given(counts, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_matches_the_hand_written_one(kn, confidence):
    k, n = kn
    new, old = stats.wilson_interval(k, n, confidence=confidence), legacy.wilson_interval(k, n, confidence=confidence)
    assert new == pytest.approx(old, abs=1e-12)


@settings(deadline=None)
@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_matches_the_hand_written_one(b, c):
    assert stats.mcnemar_exact(b, c) == pytest.approx(legacy.mcnemar_exact(b, c), rel=1e-9, abs=1e-300)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 400), st.sampled_from([1.0, 0.95, 0.9, 0.75, 0.5]), st.sampled_from([0.01, 0.05, 0.1]))
def test_min_detectable_drop_matches_the_hand_written_one(n, baseline, alpha):
    new, old = (f(n, baseline=baseline, alpha=alpha) for f in (stats.min_detectable_drop, legacy.min_detectable_drop))
    assert (new == old == math.inf) or new == pytest.approx(old, abs=1e-9)


@settings(deadline=None)
@given(st.floats(1e-9, 1 - 1e-9), st.integers(0, 200).flatmap(lambda n: st.tuples(st.integers(-1, n + 1), st.just(n))),
       st.floats(0, 1))
def test_tails_and_quantiles_match(p, kn, q):
    k, n = kn
    # the bisection's error grows in the far tails (erfc near 1 - 1e-9); scipy's ppf inverts its cdf there too
    assert stats.normal_quantile(p) == pytest.approx(legacy.normal_quantile(p), abs=1e-7)
    assert legacy.normal_cdf(stats.normal_quantile(p)) == pytest.approx(p, rel=1e-9)
    assert stats.binomial_cdf(k, n, q) == pytest.approx(legacy.binomial_cdf(k, n, q), abs=1e-12)


def test_edge_cases_are_guarded():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # statsmodels would warn and return NaN for n=0
        assert stats.wilson_interval(0, 0) == (0.0, 1.0)
        assert stats.wilson_interval(7, 7)[1] == 1.0 and stats.wilson_interval(0, 7)[0] == 0.0
        assert stats.mcnemar_exact(0, 0) == 1.0  # no discordant pairs: no evidence either way
        assert stats.min_detectable_drop(0) == math.inf
        assert stats.mcnemar_min_detectable_drop(0) == math.inf
        assert stats.mean_min_detectable(1, 0.3) == math.inf and stats.mean_min_detectable(12, 0.0) == 0.0
        assert stats.upper_bound(0, 0) == 1.0
        assert stats.clustered_mcnemar({}, items=0, clusters=0).p_value == 1.0
        assert compare_mod.median_ratio_ci([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) == (1.0, 1.0)  # BCa would give NaN
    with pytest.raises(ValueError, match="successes"):
        stats.wilson_interval(3, 2)
    with pytest.raises(ValueError, match=">= 2 rounds"):
        compare_mod.median_ratio_ci([1.0], [1.0, 2.0])


# --- verdicts on the committed goldens ---------------------------------------------------------

def _truth() -> dict[str, str]:
    root = paths.PROJECT_ROOT
    out = {r["video"].rsplit(".", 1)[0]: r["label"] for r in csv.DictReader(open(root / "fixtures/clips/manifest.csv"))}
    data = json.loads((root / "fixtures/questions_roadbuddy.json").read_text())["data"]
    out.update({q["id"]: q["answer"] for q in data})
    return out


def _golden_pairs():
    """(name, reference records, candidate records, format) for every committed non-reference golden."""
    truth, groups = _truth(), {}
    for f in sorted(paths.GOLDEN_DIR.glob("*.json")):
        g = json.loads(f.read_text())
        recs = [{"video": v, "status": "ok", "truth": truth.get(v), "predicted": d["label"],
                 "candidate_logprobs": d["logprobs"]} for v, d in g["videos"].items()]
        groups.setdefault((g["model"], g["backend"], g["device_class"], g["task"]), {})[g["format"]] = recs
    for key, fmts in sorted(groups.items()):
        for fmt, recs in sorted(fmts.items()):
            if fmt != "bf16" and "bf16" in fmts:
                yield "-".join(key) + ":" + fmt, fmts["bf16"], recs, fmt


# pass/fail of each committed golden's drift against bf16, computed with the hand-written statistics
# at commit 7c33ca8 (before issue 17) under this repository's thresholds
PINNED = {
    "tiny-hf-cpu-anomaly:bnb_int8": True, "tiny-hf-cpu-anomaly:bnb_nf4": False, "tiny-hf-cpu-anomaly:fp8": True,
    "tiny-hf-cpu-anomaly:int4_awq": True, "tiny-hf-cpu-anomaly:int8_sq": True,
    "tiny-hf-cpu-anomaly:int8_weight_only": True, "tiny-hf-cpu-anomaly:w4a8_awq": True,
    **{f"tiny-internvl-hf-cpu-mcq:{f}": True for f in ("bnb_int8", "bnb_nf4", "fp8", "int4_awq", "int8_sq",
                                                        "int8_weight_only", "w4a8_awq")},
    **{f"tiny-trained-hf-cpu-anomaly:{f}": True for f in ("bnb_int8", "bnb_nf4", "fp8", "int4_awq", "int8_sq",
                                                         "int8_weight_only", "w4a8_awq")},
    # the H200 goldens (sm90); the random tiny's fp8 moves past the 8-bit limits (its drift is never judged)
    "tiny-hf-sm90-anomaly:fp8": False, "tiny-hf-sm90-anomaly:int4_weight_only": True,
    "tiny-trained-hf-sm90-anomaly:fp8": True, "tiny-trained-hf-sm90-anomaly:int4_weight_only": True,
    "tiny-vllm-sm90-anomaly:fp8": True,
    # the vllm-cpu tier's compressed-tensors goldens (llm-compressor checkpoints)
    **{f"{m}-vllm-cpu-anomaly:{f}": True for m in ("tiny", "tiny-trained")
       for f in ("ct_fp8_dynamic", "ct_w4a16", "ct_w8a8")},
    # the float32-compute goldens (class cpu_fp32, recorded 2026-12-07 on an AVX2-only EPYC): pinned as
    # the library statistics judged them when recorded (the legacy comparison below covers them too).
    # The random tiny's bnb_nf4 and w4a8_awq move past their limits (its drift is never judged).
    **{f"tiny-hf-cpu_fp32-anomaly:{f}": f not in ("bnb_nf4", "w4a8_awq")
       for f in ("bnb_int8", "bnb_nf4", "fp8", "int4_awq", "int8_sq", "int8_weight_only", "w4a8_awq")},
    **{f"{m}-hf-cpu_fp32-{t}:{f}": True for m, t in (("tiny-internvl", "mcq"), ("tiny-trained", "anomaly"))
       for f in ("bnb_int8", "bnb_nf4", "fp8", "int4_awq", "int8_sq", "int8_weight_only", "w4a8_awq")},
    **{f"{m}-vllm-cpu_fp32-anomaly:{f}": True for m in ("tiny", "tiny-trained")
       for f in ("ct_fp8_dynamic", "ct_w8a8")},
}


def _with_legacy(monkeypatch):
    for name in ("mcnemar_exact", "min_detectable_drop", "percentile", "wilson_interval"):
        monkeypatch.setattr(drift, name, getattr(legacy, name))


def test_every_golden_verdict_is_unchanged(monkeypatch):
    limits = settings_mod.build(paths.PROJECT_ROOT).thresholds
    seen, new = {}, {}
    for name, ref, cand, fmt in _golden_pairs():
        report = compare_formats(ref, cand, reference_format="bf16", candidate_format=fmt)
        verdict = evaluate(report, thresholds_for(fmt, limits))
        seen[name] = verdict.passed
        new[name] = (report, verdict)
    assert seen == PINNED
    _with_legacy(monkeypatch)
    for name, ref, cand, fmt in _golden_pairs():
        old_report = compare_formats(ref, cand, reference_format="bf16", candidate_format=fmt)
        old = evaluate(old_report, thresholds_for(fmt, limits))
        report, verdict = new[name]
        assert (old.passed, old.failures, old.status) == (verdict.passed, verdict.failures, verdict.status), name
        a, b = old_report.to_dict(), report.to_dict()
        for key in ("agreement_interval", "kl_mean", "kl_p50", "kl_p90", "kl_p99", "min_detectable_drop"):
            assert a[key] == pytest.approx(b[key], abs=1e-9), (name, key)
        if a["accuracy"]:
            assert a["accuracy"]["mcnemar_p"] == pytest.approx(b["accuracy"]["mcnemar_p"], abs=1e-12)


def _timed(cell: str, rounds: list[float]) -> dict:
    return {"type": "cell", "kind": "timed", "model": "m", "backend": "hf", "format": "bf16", "device": "cpu",
            "task": "anomaly", "video": cell, "status": "ok", "rounds_s": rounds, "predicted": "Normal"}


def test_compare_verdicts_are_unchanged(monkeypatch):
    """Run-vs-run verdicts from scipy.stats.bootstrap equal the hand-written bootstrap's on timing
    fixtures: overlapping, separated, noisy, constant and many-round cells."""
    import numpy as np

    rng = np.random.default_rng(7)
    a, b = [], []
    for i in range(120):
        n = int(rng.integers(3, 9))
        base, shift = rng.uniform(0.05, 2.0), rng.choice([0.0, 0.03, 0.06, 0.12, -0.08])
        a.append(_timed(f"v{i}", list(base * (1 + rng.normal(0, 0.02, n)))))
        b.append(_timed(f"v{i}", list(base * (1 + shift) * (1 + rng.normal(0, 0.02, n)))))
    a.append(_timed("const", [1.0, 1.0, 1.0]))
    b.append(_timed("const", [1.0, 1.0, 1.0]))
    new = compare_mod.compare(a, b, threshold_pct=5.0)
    monkeypatch.setattr(compare_mod, "median_ratio_ci", legacy.median_ratio_ci)
    old = compare_mod.compare(a, b, threshold_pct=5.0)
    assert [c.verdict for c in new.changes] == [c.verdict for c in old.changes]
    assert {c.verdict for c in new.changes} >= {"not significant", "regression", "improvement"}
    for x, y in zip(new.changes, old.changes):
        assert x.ci_pct == pytest.approx(y.ci_pct, abs=1e-9)
