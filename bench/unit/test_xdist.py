"""``-n 2`` on CPU workers, as CI can run it: every engine loads once on one worker, and the merged
``--benchmark-json`` holds every timed cell of every worker."""

from __future__ import annotations

import json

import pytest

from core.base import paths, results

pytestmark = [pytest.mark.cpu, pytest.mark.slow]

pytest_plugins = ["pytester"]


def _cells_under_two_workers(*extra: str) -> list[str]:
    """A child session of this checkout's test_cells.py on the CPU with ``-n 2``, then ``extra``."""
    return [str(paths.PROJECT_ROOT / "bench" / "test_cells.py"), "-m", "cpu", "-p", "no:cacheprovider",
            "--rootdir", str(paths.PROJECT_ROOT), "-c", str(paths.PROJECT_ROOT / "pyproject.toml"), "-n", "2", *extra]


def test_two_workers_keep_each_engine_on_one_worker_and_merge_the_json(pytester, tmp_path):
    pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    out, bench_json = tmp_path / "r.jsonl", tmp_path / "b.json"
    args = _cells_under_two_workers(
        "--model", "tiny", "--model", "tiny-trained", "--backend", "hf", "--format", "bf16",
        "--format", "int8_weight_only", "--max-videos", "2", "--rounds", "2",
        "--results", str(out), "--benchmark-json", str(bench_json))
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(passed=8)
    run = results.load(out)
    sessions = results.load_sessions(out)
    assert sorted(s["worker"] for s in sessions) == ["gw0", "gw1"]
    # the controller's run id reached both workers (through workerinput): every record carries it
    assert len({r.get("run_id") for r in results.read(out)} - {None}) == 1
    assert all(r.get("run_id") for r in results.read(out))
    loads: dict[str, int] = {}
    workers_of: dict[str, set[str]] = {}
    for s in sessions:
        for engine, n in s["loads"].items():
            loads[engine] = loads.get(engine, 0) + n
            workers_of.setdefault(engine, set()).add(s["worker"])
    engines = {r["engine"] for r in run.speed()}
    assert len(engines) == 4 and set(loads) == engines
    assert all(n == 1 for n in loads.values()), loads  # loads == distinct engines
    # all formats of one model/backend stay on one worker (drift sees its reference there)
    by_model: dict[str, set[str]] = {}
    for engine, workers in workers_of.items():
        by_model.setdefault(engine.split("-hf-")[0], set()).update(workers)
    assert all(len(w) == 1 for w in by_model.values()), by_model
    doc = json.loads(bench_json.read_text())
    assert sorted(b["param"] for b in doc["benchmarks"]) == sorted(r["cell"] for r in run.speed())
    assert len(doc["benchmarks"]) == 8 and all(b["stats"]["rounds"] == 2 for b in doc["benchmarks"])
    # each named after the test that timed it, as the workers collected it (the plugin knows no test name)
    names = [(b["name"], b["fullname"]) for b in doc["benchmarks"]]
    assert names == [(f"test_cell[{b['param']}]", f"bench/test_cells.py::test_cell[{b['param']}]")
                     for b in doc["benchmarks"]], names
    res.stdout.fnmatch_lines(["*merged 8 timed cells from the xdist workers*", "*engine loads: 4 for 4 engines*"])


def test_benchmark_options_that_xdist_switches_off_stop_the_run(pytester):
    pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    res = pytester.runpytest_subprocess(*_cells_under_two_workers(
        "--model", "tiny", "--backend", "hf", "--format", "bf16", "--max-videos", "1", "--rounds", "1",
        "--benchmark-save=baseline", "--benchmark-compare=0001", "--benchmark-compare-fail=median:10%"))
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str()
    res.stderr.fnmatch_lines(["*--benchmark-save, --benchmark-compare, --benchmark-compare-fail do nothing under -n*"
                              "--benchmark-json FILE*--history FILE.sqlite*"])
    assert not (pytester.path / ".benchmarks").exists()


def _old_timed(video: str, rounds: list[float], **extra) -> dict:
    """A timed tiny/hf/bf16 cell record as an earlier session left it in the results file."""
    return {"type": "cell", "kind": "timed", "cell": f"tiny-hf-bf16-cpu-anomaly-{video}", "engine": "tiny-hf-bf16-cpu",
            "model": "tiny", "backend": "hf", "format": "bf16", "device": "cpu", "task": "anomaly", "video": video,
            "status": "ok", "rounds_s": rounds, "time": 1.0, **extra}


def test_merged_json_holds_only_this_sessions_cells_of_a_reused_results_file(pytester, tmp_path):
    """--results appends across sessions; the merged --benchmark-json was built from the whole file,
    so an earlier session's cells (other clips, older rounds of the same cell) came into it. Without
    -n pytest-benchmark writes this session's cells only; under -n it must be the same."""
    pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    out, bench_json = tmp_path / "r.jsonl", tmp_path / "b.json"
    earlier = [{"type": "header", "settings": {}, "worker": "main"},  # a session before run ids existed
               _old_timed("normal_01", [9.0] * 5), _old_timed("old_clip", [9.0] * 5),
               {"type": "session", "worker": "main", "gpu": None, "wall_s": 1.0, "phases": {}, "unattributed_s": 0.0,
                "loads": {"tiny-hf-bf16-cpu": 1}, "engines": []},
               # and one that had an id of its own
               _old_timed("other_clip", [8.0] * 5, run_id="20261201T000000-1")]
    out.write_text("".join(json.dumps(r) + "\n" for r in earlier))
    args = _cells_under_two_workers(
        "--model", "tiny", "--model", "tiny-trained", "--backend", "hf", "--format", "bf16",
        "--max-videos", "1", "--rounds", "2", "--warmup-rounds", "0",
        "--results", str(out), "--benchmark-json", str(bench_json))
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(passed=2)
    doc = json.loads(bench_json.read_text())
    assert sorted(b["param"] for b in doc["benchmarks"]) == [
        "tiny-hf-bf16-cpu-anomaly-normal_01", "tiny-trained-hf-bf16-cpu-anomaly-normal_01"]
    assert all(b["stats"]["rounds"] == 2 for b in doc["benchmarks"])  # not the earlier session's 5
    res.stdout.fnmatch_lines(["*merged 2 timed cells from the xdist workers*", "*workers: 2;*"])
    # the file still holds every session: reports over it see the old clips as well
    assert {r["video"] for r in results.load(out).speed()} == {"normal_01", "old_clip", "other_clip"}


def test_a_given_run_id_stamps_every_workers_records(pytester, tmp_path):
    """--run-id names the run (``vqbench cluster`` hands each unit's pytest its own this way); the
    controller hands it to its workers through xdist's workerinput, not the environment."""
    pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    out, bench_json = tmp_path / "r.jsonl", tmp_path / "b.json"
    res = pytester.runpytest_subprocess(*_cells_under_two_workers(
        "--model", "tiny", "--model", "tiny-trained", "--backend", "hf", "--format", "bf16", "--max-videos", "1",
        "--rounds", "1", "--warmup-rounds", "0", "--run-id", "issue24-run", "--results", str(out),
        "--benchmark-json", str(bench_json)))
    res.assert_outcomes(passed=2)
    recs = list(results.read(out))
    assert sorted(r["worker"] for r in recs if r.get("type") == "session") == ["gw0", "gw1"]
    assert {r.get("run_id") for r in recs} == {"issue24-run"}
    assert len(json.loads(bench_json.read_text())["benchmarks"]) == 2


def test_without_results_the_workers_share_the_controllers_file(pytester, tmp_path, monkeypatch):
    """Without --results the controller makes a file and hands it to every worker (workerinput): the
    merged JSON and the per-worker summary are made from it, and then it is removed."""
    pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    bench_json, child_tmp = tmp_path / "b.json", tmp_path / "tmp"
    child_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(child_tmp))
    res = pytester.runpytest_subprocess(*_cells_under_two_workers(
        "--model", "tiny", "--model", "tiny-trained", "--backend", "hf", "--format", "bf16", "--max-videos", "1",
        "--rounds", "1", "--warmup-rounds", "0", "--benchmark-json", str(bench_json)))
    res.assert_outcomes(passed=2)
    assert len(json.loads(bench_json.read_text())["benchmarks"]) == 2
    res.stdout.fnmatch_lines(["*merged 2 timed cells from the xdist workers*", "*workers: 2;*"])
    assert not list(child_tmp.glob("vqbench-*")), "the controller's temporary results file was left behind"
