"""Faults in a child pytest run: an out-of-memory cell, NaN logits, a hung cell and an interrupted
run each fail only what they must, and every finished result stays on disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import dataset, paths, results

pytestmark = [pytest.mark.cpu, pytest.mark.slow]

pytest_plugins = ["pytester"]

# The child's conftest: wrap the HF backend so chosen clips misbehave the way real runs do.
FAULTS_CONFTEST = '''
import time
import torch
import core.backends.hf as hf
import core.plugin as plugin

_generate = hf.HFBackend.generate

def generate(self, request):
    cid = request.clip.id
    if cid.startswith("oom"):
        torch.zeros(4)  # touch torch as a real allocation would
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    if cid.startswith("hang"):
        time.sleep(120)
    if cid.startswith("nan"):
        handle = self.model.lm_head.register_forward_hook(lambda m, i, o: o * float("nan"))
        try:
            return _generate(self, request)
        finally:
            handle.remove()
    return _generate(self, request)

hf.HFBackend.generate = generate

_free = plugin._free_after_oom

def free_and_note():
    open("freed-after-oom", "w").write("yes")
    _free()

plugin._free_after_oom = free_and_note
'''


def _clips(tmp: Path, names: list[str]) -> Path:
    src = dataset.fixture_clips()[0].path
    d = tmp / "clips"
    d.mkdir()
    for n in names:
        shutil.copy(src, d / f"{n}.mp4")
    (d / "manifest.csv").write_text("video,label\n" + "".join(f"{n}.mp4,Normal\n" for n in names))
    return d


def _args(clip_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["test_cells.py", "-p", "no:cacheprovider", "-p", "vqbench", "--videos", str(clip_dir),
            "--backend", "hf", "--format", "bf16", "--rounds", "1", "--warmup-rounds", "0",
            "--results", str(out), "-m", "cpu", *extra]


@pytest.fixture
def child(pytester):
    shutil.copy(paths.PROJECT_ROOT / "bench" / "test_cells.py", pytester.path / "test_cells.py")
    (pytester.path / "bench").mkdir()
    shutil.copy(paths.PROJECT_ROOT / "bench" / "timing.py", pytester.path / "bench" / "timing.py")
    (pytester.path / "bench" / "__init__.py").write_text("")
    pytester.makeconftest(FAULTS_CONFTEST)
    return pytester


def test_oom_and_nan_fail_only_their_cells(child, tmp_path):
    clip_dir = _clips(tmp_path, ["a_ok", "nan_1", "oom_1", "z_ok"])
    out = tmp_path / "r.jsonl"
    res = child.runpytest_subprocess(*_args(clip_dir, out))
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines(["*NumericsError*non-finite log-probs*", "*OutOfMemoryError*"])
    by_video = {c["video"]: c for c in results.cells(out)}
    assert by_video["nan_1"]["error_type"] == "NumericsError"
    assert by_video["oom_1"]["error_type"] == "OutOfMemoryError"
    assert by_video["a_ok"]["status"] == by_video["z_ok"]["status"] == "ok"
    assert (child.path / "freed-after-oom").read_text() == "yes"


def test_hung_cell_times_out_and_the_session_goes_on(child, tmp_path):
    pytest.importorskip("pytest_timeout", reason="pytest-timeout not installed: pip install pytest-timeout")
    clip_dir = _clips(tmp_path, ["a_ok", "hang_1", "z_ok"])
    out = tmp_path / "r.jsonl"
    t0 = time.monotonic()
    res = child.runpytest_subprocess(*_args(clip_dir, out, "--timeout", "20", "--timeout-method", "signal"))
    assert time.monotonic() - t0 < 110
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines(["*Timeout*"])
    assert {c["video"] for c in results.cells(out) if c["status"] == "ok"} == {"a_ok", "z_ok"}


def test_interrupted_run_keeps_finished_results_and_still_reports(child, tmp_path):
    from core.report import load, render_markdown

    clip_dir = _clips(tmp_path, [f"c{i:02d}" for i in range(12)])
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "pytest", *_args(clip_dir, out)]
    proc = subprocess.Popen(cmd, cwd=child.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT)})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and sum(1 for r in results.read(out) if r.get("type") == "cell") >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    finished = results.cells(out)
    assert 2 <= len(finished) < 12, "the run was interrupted midway"
    assert all(c["status"] == "ok" for c in finished)
    # a torn last line (a kill mid-write) is tolerated too
    with open(out, "a") as fh:
        fh.write('{"type": "cell", "cell": "torn')
    records = load(out)
    assert len(records) == len(finished)
    assert "c00" in render_markdown(records)
