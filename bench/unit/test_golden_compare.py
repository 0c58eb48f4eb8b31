"""Golden comparison rules: exact labels, log-probs within tolerance, ties and subsets."""

from __future__ import annotations

import pytest

from core.base import paths
from core.plan.golden import (
    compare,
    golden_payload,
    recorded_with,
    unjudged,
    version_changes,
)

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]

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


def test_a_run_that_lost_clips_fails_naming_them():
    g = payload({"a": ("Normal", -0.2, -1.8), "b": ("Anomaly", -2.0, -0.1), "c": ("Normal", -0.3, -1.5)})
    lost = compare(g, payload({"a": ("Normal", -0.2, -1.8)}), tolerance=0.05)
    assert lost == [lost[0]] and lost[0].startswith("2 golden videos are missing from this run (b, c)")
    # a --max-videos run that got every clip it asked for checks the first clips of a larger golden
    first = payload({"a": ("Normal", -0.2, -1.8), "b": ("Anomaly", -2.0, -0.1)})
    assert compare(g, first, tolerance=0.05, max_videos=2) == []
    assert unjudged(g, first, max_videos=2) == ["--max-videos 2: 1 golden videos were not asked for this time"]
    # ... but one that asked for more than it got lost clips
    assert "1 golden videos are missing from this run (c)" in compare(g, first, tolerance=0.05, max_videos=3)[0]


def test_a_run_with_clips_the_golden_lacks_fails_asking_for_an_update():
    g = payload({"a": ("Normal", -0.2, -1.8)})
    grown = compare(g, payload({"a": ("Normal", -0.2, -1.8), "c": ("Normal", -0.1, -2.0)}), tolerance=0.05)
    assert len(grown) == 1 and grown[0].startswith("1 videos of this run have no golden (c)")
    assert "--snapshot-update" in grown[0]
    # a --max-videos run does not excuse clips the golden never judged
    assert compare(g, payload({"c": ("Normal", -0.1, -2.0)}), tolerance=0.05, max_videos=1)  # nothing in common
    assert compare(g, payload({"a": ("Normal", -0.2, -1.8), "c": ("Normal", -0.1, -2.0)}), tolerance=0.05,
                   max_videos=2)


@pytest.mark.slow
def test_the_golden_test_fails_a_run_that_lost_a_clip(pytester, fixture_clip_folder, monkeypatch):
    """End to end: tiny's CPU golden holds the 12 fixture clips; a run over a folder holding the first
    11 loses object_02, and its golden test fails naming it (it passed, judged on 11, before)."""
    root = paths.PROJECT_ROOT
    monkeypatch.setenv("PYTHONPATH", str(root))  # the child imports this checkout's core, wherever it runs
    folder = fixture_clip_folder("eleven", 11)
    res = pytester.runpytest_subprocess(
        str(root / "bench" / "test_golden.py"), "-p", "no:cacheprovider", "--rootdir", str(root),
        "-c", str(root / "pyproject.toml"), "-m", "cpu", "--model", "tiny", "--backend", "hf", "--format", "bf16",
        "--task", "anomaly", "--videos", str(folder))
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*1 golden videos are missing from this run (object_02)*"])


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
    from core.plan.capability import version

    assert ("modelopt" in recorded_with("hf", "modelopt")) is (version("modelopt") is not None)


def test_every_committed_golden_carries_its_preprocessing_fingerprint():
    """A failing golden without a fingerprint cannot say whether its inputs or its model moved; the last
    two without one (the sm90 vLLM goldens of tiny) were re-recorded on an H100 on 2026-12-07."""
    import json

    lacking = sorted(p.name for p in paths.GOLDEN_DIR.glob("*.json")
                     if "preprocessing" not in json.loads(p.read_text(encoding="utf-8")))
    assert lacking == []


def test_an_engine_whose_every_clip_failed_is_neither_judged_nor_recorded():
    """A crashed engine (every clip an error record) fails its golden test before the snapshot is compared,
    so --snapshot-update cannot write ``error:RuntimeError`` labels as the golden; one failed clip among
    answered ones stays part of the golden."""
    from types import SimpleNamespace

    import bench.test_golden as golden_test
    from core.plan.golden import unanswered

    ok = {"video": "a", "status": "ok", "predicted": "Normal"}
    err = {"video": "b", "status": "error", "error_type": "RuntimeError",
           "error": "self and mat2 must have the same dtype"}
    assert unanswered([ok, err]) is None
    assert unanswered([]) is None
    why = unanswered([err, dict(err, video="c")])
    assert why is not None and "every clip failed (2 of 2; b: RuntimeError: self and mat2" in why

    compared = []

    class Snapshot:  # syrupy's snapshot: comparing it is what --snapshot-update turns into a write
        def use_extension(self, _ext):
            return self

        def __eq__(self, other):
            compared.append(other)
            return True

    settings = SimpleNamespace(golden_tolerance_for=lambda _fmt: 0.05, max_videos=None)
    state = SimpleNamespace(settings=settings, clips_for=lambda _task: ["b", "c"],
                            answer=lambda cell: dict(err, video=cell.clip))
    plan, task = SimpleNamespace(fmt=SimpleNamespace(name="ct_nvfp4")), SimpleNamespace(name="anomaly")
    with pytest.raises(pytest.fail.Exception, match="every clip failed"):
        golden_test.test_golden((plan, task), state, Snapshot())
    assert compared == []  # the snapshot was never compared, so never written
