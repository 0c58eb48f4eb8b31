"""Memory as the suite measures it on a CPU: the engine's own peak over its pre-load baseline, over
every process of the engine, and back to that baseline once the engine closed, load after load."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import types

import pytest

from core.metrics import memory
from core.plan import device as devices

pytestmark = pytest.mark.cpu


def test_probe_counts_a_child_process_and_its_own_peak_not_the_lifetime_maximum():
    # A large allocation before the probe must not show up as this work's peak.
    ballast = bytearray(200 * 2**20)
    del ballast
    gc.collect()
    # A child that holds 64 MiB until told to exit (a pipe, no timing).
    code = "import sys; b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]); print('ok', flush=True); " \
           "sys.stdin.read()"
    with memory.MemoryProbe(devices.CPU) as probe:
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ok"
            probe.sample()  # the thread samples too; this sample makes the test independent of its timing
            here = memory.host_bytes([os.getpid()])
        finally:
            child.stdin.close()
            child.wait()
    r = probe.result
    assert r["processes"] >= 2, r
    assert r["host_peak_bytes"] >= here >= r["host_baseline_bytes"] + 60 * 2**20, r
    assert r["host_peak_over_baseline_bytes"] < 190 * 2**20, "the earlier 200 MiB is not this work's peak"


@pytest.mark.slow
def test_twenty_engine_loads_return_to_baseline_without_growth(tmp_path):
    pytest.importorskip("transformers", reason="needs transformers: pip install 'vqbench[hf]'")
    from core.cells.runner import EnginePool
    from core.plan.matrix import plan_engines
    from core.plan.settings import build

    settings = build(tmp_path, {"models": ["tiny"], "backends": ["hf"], "formats": ["bf16"]}, env={})
    (plan,) = [p for p in plan_engines(settings) if p.engine.device == "cpu"]
    pool = EnginePool(settings)
    after = []
    for _ in range(20):
        pool.get(plan)
        pool.release()
        rec = pool.close_records[plan.engine.id]
        assert rec["returned_to_baseline"], rec
        after.append(rec["after"]["host_bytes"])
    assert pool.loads[plan.engine.id] == 20
    # the first loads import and cache what every later load reuses; from then on, no growth
    assert max(after[5:]) - after[5] <= 64 * 2**20, [a >> 20 for a in after]


@pytest.mark.slow
def test_a_checkpoint_export_leaves_nothing_of_the_exporting_model_alive(tmp_path, monkeypatch):
    """The fp8 cells once showed the ModelOpt export's size still held after the exporting model
    closed: after ``checkpoint_for`` returns, no tensor of that model may be alive."""
    torch = pytest.importorskip("torch", reason="needs torch")
    pytest.importorskip("modelopt", reason="needs nvidia-modelopt: pip install 'vqbench[modelopt]'")
    from core.backends.exports import checkpoint_for
    from core.inputs.requests import EngineOptions
    from core.models import registry
    from core.plan.formats import get_format

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))

    def live_tensor_bytes() -> int:
        gc.collect()
        return sum(o.numel() * o.element_size() for o in gc.get_objects()
                   if isinstance(o, torch.Tensor) and not o.is_meta)

    spec = registry.resolve("tiny")
    registry.materialize(spec)
    before = live_tensor_bytes()
    directory, report = checkpoint_for(spec, get_format("fp8"), options=EngineOptions(calib_size=2),
                                       device=devices.CPU)
    assert (directory / "hf_quant_config.json").is_file() and not report["cached"]
    weights = sum(f.stat().st_size for f in directory.glob("*.safetensors"))
    assert live_tensor_bytes() - before < weights / 4, "tensors of the exporting model are still alive"


def test_decode_ahead_workers_are_not_engine_memory(tmp_path):
    """``vqbench run`` starts its decode workers before the engine loads: they are this process's
    children, but no engine's, so neither the baseline nor the probe counts them."""
    from core.base import procs
    from core.inputs import decode, synth
    from core.inputs.sampling import SamplingSpec

    clip = tmp_path / "c.mp4"
    synth.encode(synth.render_clip("normal", 0, width=96, height=64, seconds=1.0), clip)
    before = procs.children()
    others = {p for p in before if p != procs.resource_tracker_pid()}
    job = decode.Job(str(clip), SamplingSpec(fps=4.0, resolution=(56, 56)), threads=1)
    ahead = decode.DecodeAhead([job, job], workers=2, ahead=2)
    try:
        ahead.start()
        outcomes = iter(ahead)  # kept: closing the iterator shuts the pool down
        assert next(outcomes).error is None  # a worker decoded a clip: the pool's processes are up
        workers = {p.pid for p in procs.started_since(before)}
        assert workers, "the decode pool started no process"
        with memory.MemoryProbe(devices.CPU) as probe:
            probe.sample()
        assert not workers & memory.family([os.getpid()])
        assert probe.result["processes"] == 1 + len(others)
        assert memory.snapshot(devices.CPU)["processes"] == 1 + len(others)
    finally:
        ahead.close()


def test_nvml_without_per_process_figures_falls_back_to_device_used_with_a_note(monkeypatch):
    """In a container with its own PID namespace NVML lists host PIDs: none is the engine's. The
    device's used memory rising is then the figure, labelled as such, with a note and a warning."""
    gib = 2**30
    state = {"used": 1 * gib, "ours": None}

    def running(_h):
        host = types.SimpleNamespace(pid=4_000_000, usedGpuMemory=None)  # a PID this namespace never sees
        ours = [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=state["ours"])] if state["ours"] else []
        return [host, *ours]

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: "h", nvmlDeviceGetComputeRunningProcesses=running,
        nvmlDeviceGetGraphicsRunningProcesses=lambda h: [],
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=state["used"], total=80 * gib)))
    torch = pytest.importorskip("torch", reason="the probe reads torch's CUDA allocator: pip install torch")
    zero = lambda *_: 0  # noqa: E731 - torch's allocator figures of this process: none
    monkeypatch.setattr(torch, "cuda", types.SimpleNamespace(
        is_available=lambda: True, is_initialized=lambda: True, synchronize=lambda *_: None,
        reset_peak_memory_stats=lambda *_: None, memory_allocated=zero, memory_reserved=zero,
        max_memory_allocated=zero, max_memory_reserved=zero))
    monkeypatch.setattr(memory, "_WARNED", set(), raising=False)  # the warning is once per process
    gpu = devices.DeviceInfo(kind="cuda", index=0, name="NVIDIA H100", capability=(9, 0))
    baseline = memory.snapshot(gpu)
    with pytest.warns(RuntimeWarning, match="PID namespace"):
        with memory.MemoryProbe(gpu, baseline=baseline) as probe:
            state["used"] = 4 * gib  # the engine loaded: the device filled, yet no process of ours has a figure
            probe.sample()
            state["used"] = 3 * gib
    r = probe.result
    assert r["nvml_source"] == "device" and "device's used memory" in r["nvml_note"]
    assert (r["nvml_baseline_bytes"], r["nvml_peak_bytes"], r["nvml_peak_over_baseline_bytes"]) == (
        1 * gib, 4 * gib, 3 * gib)
    # Where NVML does name the engine's process, its own figure stands (the device's is not used).
    state.update(used=1 * gib, ours=None)
    baseline = memory.snapshot(gpu)
    with memory.MemoryProbe(gpu, baseline=baseline) as probe:
        state.update(used=6 * gib, ours=2 * gib)
        probe.sample()
    r = probe.result
    assert r["nvml_source"] == "processes" and "nvml_note" not in r
    assert (r["nvml_peak_bytes"], r["nvml_peak_over_baseline_bytes"]) == (2 * gib, 2 * gib)
