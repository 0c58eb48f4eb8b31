"""An interrupted run leaves nothing running: the interrupt of a timed test still ends the session
(its results, its benchmark JSON, the stop of its vLLM server), and a server its process did not stop is
stopped when that process exits. Both were missed on an H100 (2026-12-07): ``timeout -s INT`` cut a load
test inside ``benchmark.pedantic``, pytest-benchmark raised at session end, every other session-end hook
was skipped, and the vLLM server kept 73 GiB of the GPU, so the next format's server could not start.

The children are sequenced with pipes: each says on one when it is where the test needs it, and blocks
on another that the parent never writes to (the parent sends SIGINT, or reads the child's exit)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.base import paths
from core.load.server import _group_members, port_in_use

pytestmark = pytest.mark.cpu
STANDIN = str(Path(__file__).with_name("_standin_server.py"))

# A timed test that tells the parent it is inside benchmark.pedantic, then blocks until interrupted.
# SIGINT gets Python's own handler back: a run started with `&` by a non-interactive shell (a CI
# script) ignores SIGINT, and so would this child, which inherits that.
TIMED_TEST = '''
import os
import signal

signal.signal(signal.SIGINT, signal.default_int_handler)


def test_first(benchmark):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_interrupted(benchmark, vqbench_state):
    vqbench_state.runtime()  # the session's engine pool and results file, as a load test's session starts them

    def target():
        os.write(int(os.environ["VQ_READY_FD"]), b"in\\n")
        os.close(int(os.environ["VQ_READY_FD"]))
        os.read(int(os.environ["VQ_GO_FD"]), 1)  # blocks: the parent never writes, it sends SIGINT
    benchmark.pedantic(target, rounds=1, iterations=1)
'''


def _child(argv: list[str], cwd: Path) -> tuple[subprocess.Popen, int, int]:
    """Start ``argv`` with a ready pipe (child -> parent) and a go pipe (never written)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT), "VQ_READY_FD": str(ready_w), "VQ_GO_FD": str(go_r)}
    proc = subprocess.Popen(argv, cwd=cwd, env=env, pass_fds=(ready_w, go_r), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    os.close(ready_w)
    os.close(go_r)
    return proc, ready_r, go_w


def test_an_interrupt_inside_a_timed_test_still_ends_the_session(tmp_path):
    (tmp_path / "test_timed.py").write_text(TIMED_TEST)
    results_file, bench_json = tmp_path / "r.jsonl", tmp_path / "b.json"
    proc, ready_r, go_w = _child([sys.executable, "-m", "pytest", "test_timed.py", "-p", "no:cacheprovider",
                                  "-p", "vqbench", "-q", "--results", str(results_file),
                                  "--benchmark-json", str(bench_json)], tmp_path)
    try:
        with os.fdopen(ready_r) as ready:
            said = ready.read()  # returns once the child is inside the timed call (or died: then empty)
        assert said == "in\n", f"the child ended before its timed test ran:\n{proc.communicate()[0]}"
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:
        os.close(go_w)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out and "Traceback" not in out, out
    # pytest-benchmark finished: its JSON holds the test that completed, not the interrupted one
    names = [b["name"] for b in json.loads(bench_json.read_text())["benchmarks"]]
    assert names == ["test_first"], names
    # vqbench's session end ran (the hook that stops a load session's vLLM server): its session record
    records = [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]
    assert [r["type"] for r in records if r.get("type") == "session"] == ["session"], records


# A process that starts a stand-in server and dies of an exception without stopping it.
LEAVER = '''
import os, sys
from core.load.server import VLLMServer
server = VLLMServer({}, log=sys.argv[2], command=[sys.executable, sys.argv[1], "{port}", "ok"]).start()
os.write(int(os.environ["VQ_READY_FD"]), f"{server.proc.pid} {server.port}\\n".encode())
os.close(int(os.environ["VQ_READY_FD"]))
raise RuntimeError("the caller's cleanup never ran")
'''


def test_a_server_left_running_is_stopped_when_its_process_exits(tmp_path):
    proc, ready_r, go_w = _child([sys.executable, "-c", LEAVER, STANDIN, str(tmp_path / "server.log")], tmp_path)
    try:
        with os.fdopen(ready_r) as ready:
            said = ready.read()  # the server's process group and port, once it is healthy
        out = proc.communicate(timeout=120)[0]
    finally:
        os.close(go_w)
        if proc.poll() is None:
            proc.kill()
    assert said, f"the child ended before its server was healthy:\n{out}"
    pgid, port = (int(x) for x in said.split())
    leftover = _group_members(pgid)
    for pid in leftover:  # never leave the stand-in behind, whatever this test says
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 1 and "the caller's cleanup never ran" in out, out
    assert "stopping the vLLM server" in out and "still running at exit" in out, out
    assert leftover == [], f"processes of the server's group {pgid} outlived the process that started it"
    assert not port_in_use(port)


# A process that starts a stand-in server, says where it is, and blocks until it is killed outright.
KILLED = '''
import os, sys
from core.load.server import VLLMServer
server = VLLMServer({}, log=sys.argv[2], command=[sys.executable, sys.argv[1], "{port}", "ok"]).start()
os.write(int(os.environ["VQ_READY_FD"]), f"{server.proc.pid} {server.port} {server._watchdog.pid}\\n".encode())
os.close(int(os.environ["VQ_READY_FD"]))
os.read(int(os.environ["VQ_GO_FD"]), 1)  # blocks: the parent never writes, it sends SIGKILL
'''


def test_a_server_whose_process_is_killed_outright_is_stopped_by_its_watchdog(tmp_path):
    import psutil

    log = tmp_path / "server.log"
    proc, ready_r, go_w = _child([sys.executable, "-c", KILLED, STANDIN, str(log)], tmp_path)
    try:
        with os.fdopen(ready_r) as ready:
            said = ready.read()  # the server's process group, its port and its watchdog, once it is healthy
        assert said, f"the child ended before its server was healthy:\n{proc.communicate()[0]}"
        pgid, port, dog = (int(x) for x in said.split())
        assert _group_members(pgid), "the stand-in server is not running"
        proc.kill()  # SIGKILL: no atexit hook, no finally
        proc.wait()
    finally:
        os.close(go_w)
        if proc.poll() is None:
            proc.kill()
    try:
        # The watchdog's exit is the event: it exits once the group is gone (or after its SIGKILL).
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(dog).wait(timeout=120)
        leftover = _group_members(pgid)
    finally:
        for pid in _group_members(pgid):  # never leave the stand-in behind, whatever this test says
            os.kill(pid, signal.SIGKILL)
    assert leftover == [], f"processes of the server's group {pgid} outlived the SIGKILL of the process that started it"
    assert "ended without stopping it; SIGTERM to its process group" in log.read_text(), log.read_text()
    assert not port_in_use(port)


def test_a_server_stopped_by_its_owner_ends_its_watchdog_quietly(tmp_path):
    from core.load.server import VLLMServer

    log = tmp_path / "server.log"
    server = VLLMServer({}, log=log, command=[sys.executable, STANDIN, "{port}", "ok"]).start()
    dog = server._watchdog
    server.stop()
    assert dog.returncode == 0
    assert "watchdog" not in log.read_text()
