"""Peak memory of an engine's processes while a piece of work runs, over the engine's own baseline.

An engine may live in several processes (vLLM runs its engine core and workers in children), so
every figure covers all of them (``Backend.pids`` and their descendants):

* on a GPU, NVML's per-process usage summed over the engine's processes (NVML's device-wide "used"
  would count neighbours too), polled by a thread since NVML keeps no peak; torch's allocator
  figures are added for the in-process part;
* on the host, each process's resident memory, polled, and the kernel's per-process high-water mark
  (``VmHWM``), reset when the probe first sees the process (``/proc/PID/clear_refs``) so it is
  this work's peak and not the process's lifetime maximum.

The baseline is what the engine's processes held before the engine loaded (``EnginePool`` passes
it), so a cell's "over baseline" figure is the engine's footprint: weights, caches, activations.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.device import DeviceInfo

# --- GPU: NVML per-process usage ------------------------------------------------------------------

def _physical_index(index: int) -> int:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        ids = [t.strip() for t in env.split(",") if t.strip().isdigit()]
        if index < len(ids):
            return int(ids[index])
    return index


def nvml_bytes(index: int, pids: set[int]) -> int | None:
    """GPU memory NVML attributes to ``pids`` on device ``index`` (None without NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(_physical_index(index))
        total = 0
        for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            for p in getter(h):
                if p.pid in pids and p.usedGpuMemory is not None:
                    total += int(p.usedGpuMemory)
        return total
    except Exception:  # noqa: BLE001 - no NVML, no figure
        return None


# --- CPU: resident memory of a process tree -------------------------------------------------------

def family(pids: list[int]) -> set[int]:
    """``pids`` and all their descendants, but not multiprocessing's resource tracker (started by the
    first spawn, it outlives every engine and belongs to none)."""
    try:
        import psutil
    except ImportError:
        return set(pids)
    from core.procs import resource_tracker_pid

    out: set[int] = set()
    for pid in pids:
        out.add(pid)
        try:
            out.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    out.discard(resource_tracker_pid())
    return out


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pids: set[int]) -> int:
    """Current resident memory of ``pids`` (each process once)."""
    return sum((_status_kib(p, "VmRSS") or 0) * 1024 for p in pids)


def reset_peaks(pids: set[int]) -> bool:
    """Reset the kernel's resident high-water mark of ``pids`` (Linux >= 4.0); False if not allowed."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def host_bytes(pids: list[int]) -> int:
    """Resident memory of the engine's processes and their descendants now."""
    return rss_bytes(family(pids))


class MemoryProbe:
    """Peak memory of ``pids()`` (and descendants) during the enclosed work, on ``device``.

    A thread samples every ``interval`` seconds: it finds processes the engine starts meanwhile,
    polls NVML (which keeps no peak) and each process's resident memory. Each process's peak is the
    larger of its polled maximum and, where the kernel allows resetting it, its ``VmHWM`` (which
    also catches spikes between samples); the host figure is the sum of those per-process peaks.
    ``baseline`` (from ``snapshot`` before the engine loaded) makes the "over baseline" figures the
    engine's footprint; without it the probe's own start is the baseline.
    """

    def __init__(self, device: DeviceInfo, pids: Callable[[], list[int]] | None = None, *,
                 baseline: dict[str, int | None] | None = None, interval: float = 0.005) -> None:
        self.device = device
        self.pids = pids or (lambda: [os.getpid()])
        self.baseline = baseline
        self.interval = interval
        self.result: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> MemoryProbe:
        self._stop = threading.Event()
        self._start = snapshot(self.device, self.pids)
        self._rss_peak: dict[int, int] = {}
        self._hwm: set[int] = set()
        self._peak_gpu = self._start.get("gpu_bytes") or 0
        if self.device.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device.index)
            torch.cuda.reset_peak_memory_stats(self.device.index)
            self._torch_base = torch.cuda.memory_allocated(self.device.index)
        self.sample()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="vqbench-memory-probe")
        self._thread.start()
        return self

    def sample(self) -> None:
        """Take one sample now: new processes of the engine, their resident memory, NVML's figure."""
        fam = family(self.pids())
        with self._lock:
            for pid in fam:
                rss = (_status_kib(pid, "VmRSS") or 0) * 1024
                if pid not in self._rss_peak and reset_peaks({pid}):
                    self._hwm.add(pid)
                self._rss_peak[pid] = max(self._rss_peak.get(pid, 0), rss)
            if self.device.kind == "cuda":
                v = nvml_bytes(self.device.index, set(self._rss_peak))
                if v is not None:
                    self._peak_gpu = max(self._peak_gpu, v)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.device.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device.index)
        self._thread.join()
        self.sample()
        with self._lock:
            peaks = {pid: max(rss, (_status_kib(pid, "VmHWM") or 0) * 1024 if pid in self._hwm else 0)
                     for pid, rss in self._rss_peak.items()}
        base = self.baseline or self._start
        host_peak = sum(peaks.values())
        r: dict[str, Any] = {
            "processes": len(peaks),
            "host_peak_bytes": host_peak, "host_baseline_bytes": base["host_bytes"],
            "host_peak_over_baseline_bytes": max(0, host_peak - (base["host_bytes"] or 0)),
        }
        if self.device.kind == "cuda":
            import torch

            idx = self.device.index
            end = nvml_bytes(idx, set(peaks))
            if end is not None:
                gpu_peak = max(self._peak_gpu, end)
                r.update(nvml_peak_bytes=gpu_peak, nvml_baseline_bytes=base.get("gpu_bytes"),
                         nvml_peak_over_baseline_bytes=max(0, gpu_peak - (base.get("gpu_bytes") or 0)))
            r.update(torch_peak_allocated_bytes=torch.cuda.max_memory_allocated(idx),
                     torch_baseline_allocated_bytes=self._torch_base,
                     torch_peak_over_baseline_bytes=torch.cuda.max_memory_allocated(idx) - self._torch_base,
                     torch_peak_reserved_bytes=torch.cuda.max_memory_reserved(idx))
        self.result = r


def snapshot(device: DeviceInfo, pids: Callable[[], list[int]] | None = None) -> dict[str, Any]:
    """Memory held now by ``pids()`` and descendants: host resident bytes and, on a GPU, NVML bytes."""
    fam = family((pids or (lambda: [os.getpid()]))())
    out: dict[str, Any] = {"host_bytes": rss_bytes(fam), "processes": len(fam)}
    if device.kind == "cuda":
        out["gpu_bytes"] = nvml_bytes(device.index, fam)
        torch = _torch()
        if torch is not None and torch.cuda.is_initialized():
            out["torch_allocated_bytes"] = torch.cuda.memory_allocated(device.index)
            out["torch_reserved_bytes"] = torch.cuda.memory_reserved(device.index)
    return out


def _torch():
    import sys

    return sys.modules.get("torch")
