"""Faults in a child pytest run: an out-of-memory cell, NaN logits, a hung cell and an interrupted
run each fail only what they must, and every finished result stays on disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.base import paths, results
from core.inputs import dataset

pytestmark = [pytest.mark.cpu, pytest.mark.slow]

pytest_plugins = ["pytester"]

# The child's conftest: wrap the HF backend so chosen clips misbehave the way real runs do.
FAULTS_CONFTEST = '''
import os
import signal
import threading
import torch
import core.backends.hf as hf
import core.suite.session as session

_generate = hf.HFBackend.generate

def generate(self, request):
    cid = request.clip.id
    if cid.startswith("oom"):
        torch.zeros(4)  # touch torch as a real allocation would
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    if cid.startswith("hang"):
        threading.Event().wait()  # a real hang: nothing ever sets it
    if cid.startswith("nan"):
        handle = self.model.lm_head.register_forward_hook(lambda m, i, o: o * float("nan"))
        try:
            return _generate(self, request)
        finally:
            handle.remove()
    return _generate(self, request)

hf.HFBackend.generate = generate

_free = session.free_after_oom

def free_and_note():
    open("freed-after-oom", "w").write("yes")
    _free()

session.free_after_oom = free_and_note

def pytest_collection_modifyitems(items):
    import pytest

    for item in items:  # only the hung cell gets a short limit: no other cell can run into it
        if "hang" in item.name:
            item.add_marker(pytest.mark.timeout(10, method="signal"))


# The interrupted-run test: after the second finished cell, say so on a pipe and block on another
# until the parent interrupts this run (no timing involved). SIGINT gets Python's own handler back: a
# test run started with `&` by a non-interactive shell (a CI script) ignores SIGINT, and so would this
# child, which inherits that; the Ctrl-C this test stands for reaches a foreground run.
signal.signal(signal.SIGINT, signal.default_int_handler)
_finished = 0

def pytest_runtest_logfinish(nodeid, location):
    global _finished
    ready = os.environ.get("VQ_READY_FD")
    if ready is None or "test_cell[" not in nodeid:
        return
    _finished += 1
    if _finished == 2:
        os.write(int(ready), b"2\\n")
        os.close(int(ready))
        os.read(int(os.environ["VQ_GO_FD"]), 1)  # blocks: the parent never writes, it sends SIGINT
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
    pytester.makeconftest(FAULTS_CONFTEST)
    return pytester


def test_oom_and_nan_fail_only_their_cells(child, tmp_path):
    clip_dir = _clips(tmp_path, ["a_ok", "nan_1", "oom_1", "z_ok"])
    out = tmp_path / "r.jsonl"
    res = child.runpytest_subprocess(*_args(clip_dir, out))
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines(["*NumericsError*non-finite log-probs*", "*OutOfMemoryError*"])
    by_video = {c["video"]: c for c in results.load(out).answers()}
    assert by_video["nan_1"]["error_type"] == "NumericsError"
    assert by_video["oom_1"]["error_type"] == "OutOfMemoryError"
    assert by_video["a_ok"]["status"] == by_video["z_ok"]["status"] == "ok"
    assert (child.path / "freed-after-oom").read_text() == "yes"


def test_hung_cell_times_out_and_the_session_goes_on(child, tmp_path):
    pytest.importorskip("pytest_timeout", reason="pytest-timeout not installed: pip install pytest-timeout")
    clip_dir = _clips(tmp_path, ["a_ok", "hang_1", "z_ok"])
    out = tmp_path / "r.jsonl"
    res = child.runpytest_subprocess(*_args(clip_dir, out, "--timeout", "600", "--timeout-method", "signal"),
                                     timeout=900)  # only a guard against a broken timeout: the cell never ends
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines(["*Timeout*"])
    assert {c["video"] for c in results.load(out).answers() if c["status"] == "ok"} == {"a_ok", "z_ok"}


def test_interrupted_run_keeps_finished_results_and_still_reports(child, tmp_path):
    from core.report.markdown import render_markdown

    clip_dir = _clips(tmp_path, [f"c{i:02d}" for i in range(12)])
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "pytest", *_args(clip_dir, out)]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT), "VQ_READY_FD": str(ready_w), "VQ_GO_FD": str(go_r)}
    proc = subprocess.Popen(cmd, cwd=child.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            pass_fds=(ready_w, go_r))
    os.close(ready_w)
    os.close(go_r)
    try:
        with os.fdopen(ready_r) as ready:
            said = ready.read()  # returns once the child finished two cells (or died: then it is empty)
        assert said == "2\n", f"the child run ended before two cells finished (exit {proc.wait()})"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        os.close(go_w)
        if proc.poll() is None:
            proc.kill()
    finished = results.load(out).speed()
    assert 2 <= len(finished) < 12, "the run was interrupted midway"
    assert len(finished) == 2
    assert all(c["status"] == "ok" for c in finished)
    # a torn last line (a kill mid-write) is tolerated too
    with open(out, "a") as fh:
        fh.write('{"type": "cell", "cell": "torn')
    records = results.load(out).answers()
    assert len(records) == len(finished)
    assert "c00" in render_markdown(records)
