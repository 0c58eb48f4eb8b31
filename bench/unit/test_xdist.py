"""``-n 2`` on CPU workers, as CI can run it: every engine loads once on one worker, and the merged
``--benchmark-json`` holds every timed cell of every worker."""

from __future__ import annotations

import json

import pytest

from core import paths, results

pytestmark = [pytest.mark.cpu, pytest.mark.slow]

pytest_plugins = ["pytester"]


def test_two_workers_keep_each_engine_on_one_worker_and_merge_the_json(pytester, tmp_path):
    pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    out, bench_json = tmp_path / "r.jsonl", tmp_path / "b.json"
    args = [str(paths.PROJECT_ROOT / "bench" / "test_cells.py"), "-m", "cpu", "-p", "no:cacheprovider",
            "--rootdir", str(paths.PROJECT_ROOT), "-c", str(paths.PROJECT_ROOT / "pyproject.toml"), "-n", "2",
            "--model", "tiny", "--model", "tiny-trained", "--backend", "hf", "--format", "bf16",
            "--format", "int8_weight_only", "--max-videos", "2", "--rounds", "2",
            "--results", str(out), "--benchmark-json", str(bench_json)]
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(passed=8)
    run = results.load(out)
    sessions = results.load_sessions(out)
    assert sorted(s["worker"] for s in sessions) == ["gw0", "gw1"]
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
    res.stdout.fnmatch_lines(["*merged 8 timed cells from the xdist workers*", "*engine loads: 4 for 4 engines*"])


def test_benchmark_options_that_xdist_switches_off_stop_the_run(pytester):
    pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    res = pytester.runpytest_subprocess(
        str(paths.PROJECT_ROOT / "bench" / "test_cells.py"), "-m", "cpu", "-p", "no:cacheprovider",
        "--rootdir", str(paths.PROJECT_ROOT), "-c", str(paths.PROJECT_ROOT / "pyproject.toml"), "-n", "2",
        "--model", "tiny", "--backend", "hf", "--format", "bf16", "--max-videos", "1", "--rounds", "1",
        "--benchmark-save=baseline", "--benchmark-compare=0001", "--benchmark-compare-fail=median:10%")
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str()
    res.stderr.fnmatch_lines(["*--benchmark-save, --benchmark-compare, --benchmark-compare-fail do nothing under -n*"
                              "--benchmark-json FILE*--history FILE.sqlite*"])
    assert not (pytester.path / ".benchmarks").exists()
