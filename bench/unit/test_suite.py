"""The suite end to end, in a child pytest run: loads once per engine, records everything, and a
broken clip fails only its own cell."""

from __future__ import annotations

import json

import pytest

from core.base import results
from core.inputs import dataset
from core.plan import device as devices

pytestmark = [pytest.mark.cpu, pytest.mark.slow]

pytest_plugins = ["pytester"]


@pytest.fixture
def clip_dir(fixture_clip_folder):
    d = fixture_clip_folder("clips", 2)
    rows = ["video,label"] + [f"{c.path.name},{c.label}" for c in dataset.fixture_clips()[:2]]
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 5000)
    rows.append("corrupt.mp4,Anomaly")
    (d / "manifest.csv").write_text("\n".join(rows) + "\n")
    return d


def test_cells_record_everything_and_isolate_a_broken_clip(pytester, clip_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    bench_json = tmp_path / "b.json"
    from core.base import paths

    args = [str(paths.PROJECT_ROOT / "bench" / "test_cells.py"), "-m", "cpu", "-p", "no:cacheprovider",
            "--rootdir", str(paths.PROJECT_ROOT), "-c", str(paths.PROJECT_ROOT / "pyproject.toml"),
            "--videos", str(clip_dir), "--model", "tiny", "--format", "bf16", "--format", "bnb_nf4", "--backend", "hf",
            "--rounds", "2", "--results", str(out), "--benchmark-json", str(bench_json)]
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(passed=4, failed=2)
    res.stdout.fnmatch_lines(["*corrupt.mp4*"])
    cells = results.load(out).answers()
    ok = [c for c in cells if c["status"] == "ok"]
    bad = [c for c in cells if c["status"] == "error"]
    assert len(ok) == 4 and len(bad) == 2
    assert all("corrupt.mp4" in c["error"] and c["error_type"] == "VideoError" for c in bad)
    # each engine loaded exactly once for all its clips
    assert {c["engine"]: c["load"]["load_count"] for c in ok} == {"tiny-hf-bf16-cpu": 1, "tiny-hf-bnb_nf4-cpu": 1}
    data = json.loads(bench_json.read_text())
    assert len(data["benchmarks"]) == 4
    for b in data["benchmarks"]:
        x = b["extra_info"]
        assert {"model", "backend", "format", "video", "predicted", "candidate_logprobs", "timings"} <= set(x)
        assert set(x["candidate_logprobs"]) == {"Normal", "Anomaly"}
        assert {"video_decode_s", "processor_s", "prefill_s", "decode_s", "total_s"} <= set(x["timings"])
        assert x["tokens"]["video"] > 0 and b["stats"]["rounds"] == 2
    assert data["machine_info"]["vqbench"]["gpu_class"] == devices.CPU.gpu_class  # cpu, or cpu_fp32 (bf16 emulated)
