"""Golden comparison rules: exact labels, log-probs within tolerance, ties and subsets."""

from __future__ import annotations

import pytest

from core.golden import (
    compare,
    golden_payload,
    recorded_with,
    unjudged,
    version_changes,
)

pytestmark = pytest.mark.cpu

META = {"model": "tiny", "backend": "hf", "format": "bf16", "task": "anomaly", "device_class": "cpu"}


def payload(videos: dict[str, tuple[str, float, float]]) -> dict:
    recs = [{"video": v, "predicted": lab, "parsed": None, "candidate_logprobs": {"Normal": n, "Anomaly": a}}
            for v, (lab, n, a) in videos.items()]
    return golden_payload("tiny-hf-bf16-cpu-anomaly", META, recs)


def test_identical_and_within_tolerance_match():
    g = payload({"a": ("Normal", -0.2, -1.8), "b": ("Anomaly", -2.0, -0.1)})
    assert compare(g, g, tolerance=0.05) == []
    assert compare(g, payload({"a": ("Normal", -0.23, -1.77), "b": ("Anomaly", -2.0, -0.1)}), tolerance=0.05) == []


def test_drift_beyond_tolerance_and_label_flips_are_reported():
    g = payload({"a": ("Normal", -0.2, -1.8), "b": ("Anomaly", -2.0, -0.1)})
    moved = compare(g, payload({"a": ("Normal", -0.4, -1.2), "b": ("Normal", -0.3, -1.4)}), tolerance=0.05)
    assert any("a: log p(Normal) -0.2 -> -0.4" in p for p in moved)
    assert any(p.startswith("b: label Anomaly -> Normal") for p in moved)


def test_a_tie_may_break_either_way():
    g = payload({"a": ("Normal", -0.70, -0.71)})
    assert compare(g, payload({"a": ("Anomaly", -0.705, -0.70)}), tolerance=0.05) == []
    wide = payload({"a": ("Normal", -0.5, -0.9)})
    assert compare(wide, payload({"a": ("Anomaly", -0.9, -0.5)}), tolerance=0.05)


def test_subsets_are_judged_on_the_common_videos_only():
    g = payload({"a": ("Normal", -0.2, -1.8), "b": ("Anomaly", -2.0, -0.1)})
    sub = payload({"a": ("Normal", -0.2, -1.8), "c": ("Normal", -0.1, -2.0)})
    assert compare(g, sub, tolerance=0.05) == []
    notes = unjudged(g, sub)
    assert any("1 videos have no golden" in n for n in notes) and any("not run" in n for n in notes)
    assert compare(g, payload({"z": ("Normal", -0.1, -2.0)}), tolerance=0.05)  # nothing in common fails


def test_library_versions_are_stored_but_never_compared():
    a, b = payload({"x": ("Normal", -0.1, -2.0)}), payload({"x": ("Normal", -0.1, -2.0)})
    a["recorded_with"] = {"torch": "2.14.1", "transformers": "5.17.0"}
    b["recorded_with"] = {"torch": "2.14.1", "transformers": "5.23.0"}
    assert compare(a, b, tolerance=0.05) == []  # an upgrade that keeps the numbers passes
    assert version_changes(a, b) == ["transformers 5.17.0 -> 5.23.0"]
    assert version_changes(a, a) == [] and version_changes({}, b) == []


def test_recorded_with_names_backend_and_quantizer_libraries():
    hf = recorded_with("hf", "none")
    assert set(hf) == {"torch", "transformers"} and all(hf.values())
    from core.capability import version

    assert ("modelopt" in recorded_with("hf", "modelopt")) is (version("modelopt") is not None)
