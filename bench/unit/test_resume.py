"""``vqbench run --resume``: changed settings are refused by name; a run interrupted after N of M
videos (a child process, sequenced by pipes) and resumed ends with all M, each answered once."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from core import cli
from core.base import paths
from core.base.errors import ConfigError
from core.base.results import ResultsWriter, read
from core.cells import resume
from core.inputs import dataset
from core.plan.settings import Settings

pytestmark = pytest.mark.cpu

IDENT = dict(model="tiny", backend="hf", fmt="bf16", task="anomaly", device="cpu", videos="/v", decoder_used="pyav")


def _file(tmp_path, settings: Settings, **ident) -> str:
    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path, header={"command": "run", "run": resume.identity(settings, **{**IDENT, **ident})})
    w.write({"type": "cell", "kind": "timed", "engine": "tiny-hf-bf16-cpu", "video": "a", "status": "ok",
             "model": "tiny", "backend": "hf", "format": "bf16", "device": "cpu", "task": "anomaly"})
    w.write({"type": "cell", "kind": "timed", "engine": "tiny-hf-bf16-cpu", "video": "b", "status": "error",
             "model": "tiny", "backend": "hf", "format": "bf16", "device": "cpu", "task": "anomaly"})
    w.close()
    return path


def test_changed_settings_are_refused_by_name(tmp_path):
    path = _file(tmp_path, Settings(fps=4.0))
    now = resume.identity(Settings(fps=2.0, resolution="448x448"), **{**IDENT, "model": "tiny-trained"})
    with pytest.raises(ConfigError) as err:
        resume.answered(path, now, engine="tiny-hf-bf16-cpu")
    text = str(err.value)
    assert "--fps 4.0 (now 2.0)" in text and '--resolution "250x250" (now "448x448")' in text
    assert '--model "tiny" (now "tiny-trained")' in text and str(path) in text
    for changed in ({"decoder_used": "nvdec"}, {"task": "mcq"}, {"backend": "vllm"}, {"fmt": "int8"}):
        with pytest.raises(ConfigError, match="other settings"):
            resume.answered(path, resume.identity(Settings(fps=4.0), **{**IDENT, **changed}), engine="tiny-hf-bf16-cpu")


def test_options_that_change_no_answer_may_differ(tmp_path):
    path = _file(tmp_path, Settings(fps=4.0, max_videos=2, decode_workers=3))
    now = resume.identity(Settings(fps=4.0, decode_workers=0, decode_memory="1MiB", results="x.jsonl"), **IDENT)
    done = resume.answered(path, now, engine="tiny-hf-bf16-cpu")
    assert set(done) == {"a"}, "answered videos are kept; errors are tried again"


def test_missing_file_resumes_nothing_and_a_suite_file_is_refused(tmp_path):
    assert resume.answered(tmp_path / "none.jsonl", resume.identity(Settings(), **IDENT), engine="e") == {}
    suite = tmp_path / "suite.jsonl"
    ResultsWriter(suite, header={"settings": {}, "worker": "main"}).close()
    with pytest.raises(ConfigError, match="not written by `vqbench run`"):
        resume.answered(suite, resume.identity(Settings(), **IDENT), engine="e")


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"type": "cell", "video": "a"}\n{"type": "cell", "vid')  # killed mid-write
    w = ResultsWriter(path, header={"command": "run"})
    w.write({"type": "cell", "video": "b"})
    w.close()
    assert [r.get("video") for r in read(path)] == ["a", None, "b"]


def test_resume_refusal_from_the_command_line(capsys, tmp_path):
    d = tmp_path / "v"
    d.mkdir()
    shutil.copy(dataset.fixture_clips()[0].path, d / "a.mp4")
    results = tmp_path / "r.jsonl"
    from core.inputs import decode

    settings = Settings(fps=4.0)
    ident = resume.identity(settings, model="tiny", backend="hf", fmt="bf16", task="anomaly", device="cpu",
                            videos=str(d.resolve()), decoder_used=decode.resolve_decoder("pyav")[0])
    ResultsWriter(results, header={"command": "run", "run": ident}).close()
    code = cli.main(["run", "--device", "cpu", "--videos", str(d), "--results", str(results), "--output",
                     str(tmp_path / "o.json"), "--resume", "--fps", "2", "--max-frames", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "--fps 4.0 (now 2.0)" in err and "--max-frames 768 (now 64)" in err


CHILD = r'''
import os, signal, sys
from core import cli
from core.base import results

# Python's own SIGINT handler, also when this test runs in a background job that ignores SIGINT (a
# non-interactive shell's `&`): the Ctrl-C this test stands for reaches a foreground run.
signal.signal(signal.SIGINT, signal.default_int_handler)

N, READY, GO = int(os.environ["VQ_STOP_AFTER"]), int(os.environ["VQ_READY_FD"]), int(os.environ["VQ_GO_FD"])
_write, _seen = results.ResultsWriter.write, []

def write(self, rec):
    _write(self, rec)
    if rec.get("type") == "cell":
        _seen.append(rec["video"])
        if len(_seen) == N:  # say so, then wait for the parent's SIGINT (it never writes to GO)
            os.write(READY, (",".join(_seen) + "\n").encode())
            os.close(READY)
            os.read(GO, 1)

results.ResultsWriter.write = write
sys.exit(cli.main(sys.argv[1:]))
'''


@pytest.mark.slow
def test_interrupted_run_resumes_to_all_videos(capsys, tmp_path, fixture_clip_folder):
    clips = dataset.fixture_clips()[:5]
    d = fixture_clip_folder("videos", 5)
    (d / "README.txt").write_text("dashcam export, 5 clips\n" * 20)
    out, results, answers = tmp_path / "run.json", tmp_path / "run.jsonl", tmp_path / "answers.csv"
    argv = ["run", "--device", "cpu", "--videos", str(d), "--output", str(out), "--results", str(results),
            "--csv", str(answers), "--decode-workers", "1", "--resume"]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT), "VQ_STOP_AFTER": "2", "VQ_READY_FD": str(ready_w),
           "VQ_GO_FD": str(go_r)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *argv], env=env, pass_fds=(ready_w, go_r),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(ready_w)
    os.close(go_r)
    try:
        with os.fdopen(ready_r) as ready:
            said = ready.read()  # returns once the child wrote two answers (or died: then empty)
        assert said.strip(), f"the child ended before answering two videos: {proc.communicate()[1].decode()[-2000:]}"
        proc.send_signal(signal.SIGINT)
        _, child_err = proc.communicate(timeout=300)
    finally:
        os.close(go_w)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, child_err.decode()[-2000:]
    first = said.strip().split(",")
    assert len(first) == 2 and not out.exists(), "the interrupted run wrote no summary"

    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "2 of 5 videos already answered, 3 to go" in err
    doc = json.loads(out.read_text())
    ids = sorted(c.path.stem for c in clips)
    assert sorted(r["video"] for r in doc["results"]) == ids
    assert doc["summary"]["videos"] == 5 and doc["summary"]["resumed"] == 2 and doc["summary"]["answered_now"] == 3
    assert doc["skipped"] == [{"path": "README.txt", "reason": doc["skipped"][0]["reason"]}]
    assert {r[0] for r in list(csv.reader(answers.open()))[1:]} == set(ids)
    cells = [r for r in read(results) if r.get("type") == "cell"]
    assert sorted(r["video"] for r in cells) == ids, "each video answered exactly once over both runs"
    assert {r["video"] for r in cells[:2]} == set(first)
