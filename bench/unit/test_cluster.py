"""The matrix on a local Ray cluster of CPU workers: one task per work unit, records streamed back
into one results file and one pytest-benchmark JSON, and a worker lost mid-run retried elsewhere."""

from __future__ import annotations

import json
import os
import signal

import pytest

from core import paths, results

pytestmark = [pytest.mark.cpu, pytest.mark.slow]


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason="ray not installed: pip install 'vqbench[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"VQBENCH_CACHE": os.environ.get("VQBENCH_CACHE", "")}}
             if os.environ.get("VQBENCH_CACHE") else None)
    yield ray
    ray.shutdown()


def test_units_run_as_ray_tasks_and_a_lost_worker_is_retried(local_ray, tmp_path, monkeypatch):
    from core import cluster

    monkeypatch.chdir(paths.PROJECT_ROOT)
    out, bench_json = tmp_path / "r.jsonl", tmp_path / "b.json"
    args = ["bench/test_cells.py", "-m", "cpu", "--model", "tiny", "--model", "tiny-trained", "--backend", "hf",
            "--format", "bf16", "--max-videos", "2", "--rounds", "1", "--warmup-rounds", "0"]
    killed: dict[str, int] = {}
    pids: dict[str, int] = {}

    def lose_a_worker(rec):
        # Once the first cell of a unit streams back, kill the Ray worker running it (what losing a
        # node does to a task); the unit must run once more and the session still complete.
        if rec["type"] == "unit-start":
            pids[rec["unit"]] = rec["pid"]
        elif rec["type"] == "cell" and not killed:
            killed[rec["unit"]] = pids[rec["unit"]]
            os.kill(pids[rec["unit"]], signal.SIGKILL)

    code = cluster.run(args, workers=2, gpus_per_unit=0, results_path=out, benchmark_json=bench_json,
                       on_record=lose_a_worker)
    assert code == 0
    ((lost_unit, lost_pid),) = killed.items()
    # Ray ran the unit once more, in another worker process (it does not stream again what it already sent)
    (final,) = [r for r in results.read(out) if r.get("type") == "unit" and r["unit"] == lost_unit]
    assert final["exit"] == 0 and final["pid"] != lost_pid
    run = results.load(out)
    cells = run.speed()
    assert sorted(r["cell"] for r in cells) == sorted(
        f"{m}-hf-bf16-cpu-anomaly-{v}" for m in ("tiny", "tiny-trained") for v in ("normal_01", "normal_02"))
    assert all(r["status"] == "ok" for r in cells) and not run.errors
    units = {r["unit"] for r in cells}
    assert units == {"group:cpu-tiny-hf", "group:cpu-tiny-trained-hf"}
    doc = json.loads(bench_json.read_text())
    assert sorted(b["param"] for b in doc["benchmarks"]) == sorted(r["cell"] for r in cells)


def test_benchmark_json_holds_only_this_runs_cells_of_a_reused_results_file(local_ray, tmp_path, monkeypatch):
    """The JSON was built from the whole --results file, so an earlier run's cells came into it."""
    from core import cluster

    monkeypatch.chdir(paths.PROJECT_ROOT)
    out, bench_json = tmp_path / "r.jsonl", tmp_path / "b.json"
    earlier = {"type": "cell", "kind": "timed", "cell": "tiny-hf-bf16-cpu-anomaly-old_clip", "model": "tiny",
               "backend": "hf", "format": "bf16", "device": "cpu", "task": "anomaly", "video": "old_clip",
               "status": "ok", "rounds_s": [9.0] * 5, "time": 1.0}
    out.write_text(json.dumps(earlier) + "\n")
    args = ["bench/test_cells.py", "-m", "cpu", "--model", "tiny", "--backend", "hf", "--format", "bf16",
            "--max-videos", "1", "--rounds", "1", "--warmup-rounds", "0"]
    assert cluster.run(args, workers=1, gpus_per_unit=0, results_path=out, benchmark_json=bench_json) == 0
    doc = json.loads(bench_json.read_text())
    assert [b["param"] for b in doc["benchmarks"]] == ["tiny-hf-bf16-cpu-anomaly-normal_01"]
    assert doc["benchmarks"][0]["stats"]["rounds"] == 1
    assert {r["video"] for r in results.load(out).speed()} == {"old_clip", "normal_01"}  # the file keeps both
