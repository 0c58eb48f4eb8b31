"""The report shows drift verdicts (with what an inconclusive one needs), vocabulary and vision drift
with their plots, latency-history verdicts and GPU clocks."""

from __future__ import annotations

import math

import pytest

from core.base.results import from_records
from core.metrics.drift import compare_formats
from core.metrics.verdict import evaluate, thresholds_for
from core.metrics.vocab import compact_pairs
from core.report.html import make_plots, render_html
from core.report.markdown import render_markdown

pytestmark = pytest.mark.cpu


def cell(video: str, fmt: str, p_top: float, **extra) -> dict:
    lps = {"Anomaly": math.log(p_top), "Normal": math.log(1 - p_top)}
    return {"type": "cell", "kind": "timed", "model": "tiny-trained", "backend": "hf", "format": fmt, "device": "cuda",
            "task": "anomaly", "video": video, "status": "ok", "truth": "Anomaly", "predicted": "Anomaly",
            "candidate_logprobs": lps, "token_ids": [7], "rounds_s": [0.1, 0.1, 0.1], "gpu_class": "sm90",
            "gpu_name": "H200", "vocab": compact_pairs([[(7, math.log(p_top)), (8, math.log(1 - p_top))]], k=2),
            **extra}


def records() -> list[dict]:
    clocks = {"sm_mhz": 1980, "sm_max_mhz": 1980, "sm_app_mhz": 1980, "mem_mhz": 3201, "power_limit_w": 700.0}
    vision = {"reference": "bf16", "groups": [{"cos": 0.9999, "rel_err": 0.012, "tokens": 81}] * 2,
              "cos_min": 0.9999, "rel_err_max": 0.012, "rel_err_mean": 0.012}
    ref = [cell(f"v{i}", "bf16", 0.9, gpu_clocks=clocks) for i in range(5)]
    cand = [cell(f"v{i}", "fp8+vit", 0.9 - 0.05 * (i == 3), vision=vision, gpu_clocks=clocks,
                 history={"status": "clock change" if i == 0 else "ok", "median_s": 0.1, "baseline_s": 0.09,
                          "delta_pct": 11.1, "noise_pct": 1.0, "runs": 5, "clock_changes": ["sm_app_mhz 1980 -> 1500"],
                          "message": "..."}) for i in range(5)]
    report = compare_formats(ref, cand, reference_format="bf16", candidate_format="fp8+vit")
    verdict = evaluate(report, thresholds_for("fp8+vit"))
    drift = {"type": "drift", "engine": "tiny-trained-hf-fp8+vit-cuda", "task": "anomaly", "passed": verdict.passed,
             "status": verdict.status, "report": report.to_dict(), "verdict": verdict.to_dict()}
    return [*ref, *cand, drift]


def test_markdown_has_the_drift_and_history_sections():
    md = render_markdown(from_records(records()))
    drift = md.split("## Drift against the reference", 1)[1].split("\n## ", 1)[0]
    assert "**inconclusive**" in drift and "v3 100%" in drift  # the one clip that moved dominates
    assert "inconclusive on flip_rate: 5 clips detect" in drift and "16 clips would see it" in drift
    assert "0.999900" in drift and "0.012" in drift
    history = md.split("## Latency against the history", 1)[1].split("\n## ", 1)[0]
    assert "clock change" in history and "sm_app_mhz 1980 -> 1500" in history
    assert "GPU clocks (H200): SM 1980 MHz (max 1980, application 1980), memory 3201 MHz, power limit 700.0 W." in md


def test_html_plots_per_clip_kl_and_vision():
    pytest.importorskip("matplotlib")
    plots = [p for p in make_plots(from_records(records())) if p.section == "Drift against the reference"]
    assert len(plots) == 2 and "per clip" in plots[0].caption and "frame group" in plots[1].caption
    assert "Drift against the reference" in render_html(from_records(records()))
