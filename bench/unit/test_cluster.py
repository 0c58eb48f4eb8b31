"""The matrix on a local Ray cluster of CPU workers: one task per work unit, records streamed back
into one results file and one pytest-benchmark JSON, and a worker lost mid-run retried elsewhere;
units planned once, on a worker whose GPU and packages the driver does not have."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap

import pytest

from core.base import paths, results

pytestmark = [pytest.mark.cpu, pytest.mark.slow]

pytest_plugins = ["pytester"]


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason="ray not installed: pip install 'vqbench[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"VQBENCH_CACHE": os.environ.get("VQBENCH_CACHE", "")}}
             if os.environ.get("VQBENCH_CACHE") else None)
    yield ray
    ray.shutdown()


# An NVML that reports one H200 (what nvidia-ml-py's pynvml answers on such a node) and a vllm package
# that can be found (capability checks find_spec, never imports it): on this CPU machine, the Ray
# workers below get these on their PYTHONPATH, the driver (this process) does not.
NVML_H200 = textwrap.dedent("""
    class NVMLError(Exception):
        pass

    class _Memory:
        total, used, free = 141 * 2**30, 0, 141 * 2**30

    def nvmlInit():
        pass

    def nvmlShutdown():
        pass

    def nvmlSystemGetDriverVersion():
        return "580.95.05"

    def nvmlSystemGetCudaDriverVersion_v2():
        return 13000

    def nvmlDeviceGetCount():
        return 1

    def nvmlDeviceGetHandleByIndex(index):
        return index

    def nvmlDeviceGetName(handle):
        return "NVIDIA H200"

    def nvmlDeviceGetCudaComputeCapability(handle):
        return (9, 0)

    def nvmlDeviceGetMemoryInfo(handle):
        return _Memory()

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __getattr__(name):  # clocks, power, processes ...: "not supported", as some GPUs answer
        if not name.startswith("nvml"):
            raise AttributeError(name)

        def not_supported(*args):
            raise NVMLError(f"{name}: not supported by this stand-in")

        return not_supported
""")


@pytest.fixture
def gpu_node_ray(tmp_path):
    """A local Ray cluster whose workers see a different machine than the driver: an H200 (through
    NVML) and vLLM installed, given to them explicitly through their runtime environment."""
    ray = pytest.importorskip("ray", reason="ray not installed: pip install 'vqbench[ray]'")
    from core.plan import device as devices

    node = tmp_path / "gpu-node-site"
    (node / "vllm").mkdir(parents=True)
    (node / "vllm" / "__init__.py").write_text('raise ImportError("a stand-in: only found, never imported")\n')
    (node / "pynvml.py").write_text(NVML_H200)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(node), os.environ.get("PYTHONPATH")]))}
    if os.environ.get("VQBENCH_CACHE"):
        env["VQBENCH_CACHE"] = os.environ["VQBENCH_CACHE"]
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield devices.primary()  # the driver's own device
    ray.shutdown()


def _units(path):
    return {r["unit"]: r for r in results.read(path) if r.get("type") == "unit"}


def test_units_are_planned_on_a_worker_the_driver_does_not_resemble(gpu_node_ray, tmp_path, monkeypatch):
    """The driver has no GPU or vLLM; its workers have an H200. The plan is the worker's (the 7B's GPU
    group split into engine units there), -m cpu leaves only the CPU unit, which runs holding no GPU.
    (Planned on the driver, the 7B group was a unit name the worker's pytest refused: exit 4.)"""
    from core.commands import cluster

    monkeypatch.chdir(paths.PROJECT_ROOT)
    out = tmp_path / "r.jsonl"
    args = ["bench/test_cells.py", "-m", "cpu", "--model", "tiny", "--gpu-model", "qwen2.5-vl-7b", "--backend", "hf",
            "--format", "bf16", "--max-videos", "2", "--rounds", "1", "--warmup-rounds", "0"]
    assert cluster.run(args, workers=2, gpus_per_unit=1, results_path=out) == 0
    header = next(results.read(out))
    assert header["planned_on"]["gpu_class"] == "sm90" and "vllm" in header["planned_on"]["packages"]
    planned = [u["name"] for u in header["schedule"]["units"]]
    assert "group:cpu-tiny-hf" in planned and "group:cuda-qwen2.5-vl-7b-hf" not in planned
    assert any(u.startswith("engine:qwen2.5-vl-7b-hf-bf16-cuda") for u in planned)
    units = _units(out)
    assert set(units) == {"group:cpu-tiny-hf"}  # no task for units -m cpu leaves empty
    assert units["group:cpu-tiny-hf"]["exit"] == 0 and units["group:cpu-tiny-hf"]["gpus_held"] == []
    cells = results.load(out).speed()
    assert sorted(r["cell"] for r in cells) == [f"tiny-hf-bf16-cpu-anomaly-normal_0{i}" for i in (1, 2)]
    assert all(r["status"] == "ok" and r["gpu_class"] in ("cpu", "cpu_fp32") for r in cells), \
        [(r["status"], r.get("gpu_class"), r.get("error")) for r in cells]


def test_the_readme_example_runs_every_unit_a_gpu_worker_planned(gpu_node_ray, tmp_path, monkeypatch):
    """`-m gpu --gpu-model qwen2.5-vl-7b --backend vllm` from a driver without a GPU or vLLM: each
    unit's node collects exactly the tests it was handed (collect-only: the cells themselves need a
    real GPU) and holds the GPU it asked for."""
    from core.commands import cluster

    monkeypatch.chdir(paths.PROJECT_ROOT)
    out = tmp_path / "r.jsonl"
    args = ["bench/test_cells.py", "-m", "gpu", "--model", "tiny", "--gpu-model", "qwen2.5-vl-7b", "--backend", "vllm",
            "--format", "bf16", "--max-videos", "2", "--collect-only"]
    assert cluster.run(args, workers=2, gpus_per_unit=1, results_path=out) == 0
    planned = [u["name"] for u in next(results.read(out))["schedule"]["units"]]
    assert "group:cpu-tiny-vllm" in planned  # a CPU unit -m gpu leaves empty: no task, no GPU held for it
    units = _units(out)
    assert units and all(u.startswith("engine:qwen2.5-vl-7b-vllm-bf16-cuda") for u in units)
    collected = 0
    for rec in units.values():
        assert rec["exit"] == 0 and rec["gpus_held"] == ["0"]
        (n,) = [int(m.group(1)) for line in rec["summary"] if (m := re.match(r"(\d+)(?:/\d+)? tests? collected", line))]
        assert n == rec["tests"]
        collected += n
    assert collected == 2  # two clips of one engine, each in exactly one unit


def test_a_matrix_with_nothing_selected_is_not_a_pass(local_ray, tmp_path, monkeypatch, capsys):
    """-m leaves no test: the cluster says so and returns pytest's 5 (every unit's 'no tests ran'
    used to count as a pass, so the run returned 0)."""
    from core.commands import cluster

    monkeypatch.chdir(paths.PROJECT_ROOT)
    args = ["bench/test_cells.py", "-m", "gpu and not hf", "--model", "tiny", "--backend", "hf", "--format", "bf16",
            "--max-videos", "1"]
    assert cluster.run(args, workers=2, gpus_per_unit=0, results_path=tmp_path / "r.jsonl") == 5
    assert "vqbench cluster: no test selected" in capsys.readouterr().err


def test_a_node_refuses_tests_it_did_not_collect(pytester, monkeypatch):
    """--unit-tests names node ids; one this session does not collect (a node unlike the planning
    worker) is a usage error naming it, not a silently smaller unit."""
    root = paths.PROJECT_ROOT
    monkeypatch.setenv("PYTHONPATH", str(root))  # the child imports this checkout's core, wherever it runs
    real = "bench/test_cells.py::test_cell[tiny-hf-bf16-cpu-anomaly-normal_01]"
    other = "bench/test_cells.py::test_cell[tiny-hf-bf16-cuda-anomaly-normal_01]"
    listed = pytester.path / "tests.json"
    listed.write_text(json.dumps({"unit": "group:x", "tests": [real, other], "planned_on": "NVIDIA H200 (sm_90)"}))
    res = pytester.runpytest_subprocess(
        str(root / "bench" / "test_cells.py"), "-p", "no:cacheprovider", "--rootdir", str(root),
        "-c", str(root / "pyproject.toml"), "--model", "tiny", "--gpu-model", "qwen2.5-vl-7b", "--backend", "hf",
        "--format", "bf16", "--max-videos", "1", "--collect-only", "--unit-tests", str(listed))
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*unit group:x was planned on NVIDIA H200 (sm_90)*did not collect 1 of its 2 tests: "
                              "*tiny-hf-bf16-cuda-anomaly-normal_01*"])


def test_units_run_as_ray_tasks_and_a_lost_worker_is_retried(local_ray, tmp_path, monkeypatch):
    from core.commands import cluster

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
    # every unit's pytest stamped its records with the cluster run's id (given as --run-id)
    run_id = doc["machine_info"]["vqbench"]["cluster"]["run_id"]
    assert {r.get("run_id") for r in results.read(out) if r.get("type") == "cell"} == {run_id}


def test_benchmark_json_holds_only_this_runs_cells_of_a_reused_results_file(local_ray, tmp_path, monkeypatch):
    """The JSON was built from the whole --results file, so an earlier run's cells came into it."""
    from core.commands import cluster

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
    assert doc["benchmarks"][0]["fullname"] == "bench/test_cells.py::test_cell[tiny-hf-bf16-cpu-anomaly-normal_01]"
    assert doc["benchmarks"][0]["stats"]["rounds"] == 1
    assert {r["video"] for r in results.load(out).speed()} == {"old_clip", "normal_01"}  # the file keeps both
