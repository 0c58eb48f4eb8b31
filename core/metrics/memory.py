"""Peak memory of an engine's processes while a piece of work runs, over the engine's own baseline.

An engine may live in several processes (vLLM runs its engine core and workers in children), so
every figure covers all of them (``Backend.pids`` and their descendants), but never vqbench's own
helpers that belong to no engine (``core.base.procs.helper_pids``: the decode-ahead workers ``vqbench run``
starts before the engine loads, multiprocessing's resource tracker):

* on a GPU, NVML's per-process usage summed over the engine's processes (NVML's device-wide "used"
  would count neighbours too), polled by a thread since NVML keeps no peak; torch's allocator
  figures are added for the in-process part. In a container with its own PID namespace NVML names
  host PIDs, so no process of the engine has a figure: when the device's used memory rose while
  the engine's processes show none, the figures are the device's used memory instead, labelled
  ``nvml_source: "device"`` with a note (they include anything else on the GPU);
* on the host, each process's resident memory, polled, and the kernel's per-process high-water mark
  (``VmHWM``), reset when the probe first sees the process (``/proc/PID/clear_refs``) so it is
  this work's peak and not the process's lifetime maximum.

The baseline is what the engine's processes held before the engine loaded (``EnginePool`` passes
it), so a cell's "over baseline" figure is the engine's footprint: weights, caches, activations.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.plan.device import DeviceInfo

# --- GPU: NVML per-process usage ------------------------------------------------------------------

def _physical_index(index: int) -> int:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        ids = [t.strip() for t in env.split(",") if t.strip().isdigit()]
        if index < len(ids):
            return int(ids[index])
    return index


def nvml_usage(index: int, pids: set[int]) -> dict[str, Any] | None:
    """NVML on device ``index``: bytes attributed to ``pids`` (``process_bytes``), whether any of
    ``pids`` had a figure (``attributed``), and the device's used memory (``device_bytes``, None if
    unreadable). None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(_physical_index(index))
        total, attributed = 0, False
        for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            for p in getter(h):
                if p.pid in pids and p.usedGpuMemory is not None:
                    total += int(p.usedGpuMemory)
                    attributed = True
    except Exception:  # noqa: BLE001 - no NVML, no figure
        return None
    try:
        device = int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
    except Exception:  # noqa: BLE001 - the per-process figures stand without it
        device = None
    return {"process_bytes": total, "attributed": attributed, "device_bytes": device}


NO_PROCESS_FIGURES_NOTE = (
    "NVML attributes no memory to the engine's processes while the device's used memory rose by {rise}: NVML "
    "names processes by host PID, which a container with its own PID namespace does not see. These figures are "
    "the device's used memory (nvml_source 'device'): they include any other process on this GPU.")


# --- CPU: resident memory of a process tree -------------------------------------------------------

def family(pids: list[int]) -> set[int]:
    """``pids`` and all their descendants, but not the processes that belong to no engine
    (``core.base.procs.helper_pids``: decode-ahead workers, multiprocessing's resource tracker)."""
    try:
        import psutil
    except ImportError:
        return set(pids)
    from core.base.procs import helper_pids

    helpers = helper_pids()
    for pid in list(helpers):  # a helper's own children belong to no engine either
        try:
            helpers.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    out: set[int] = set()
    for pid in pids:
        out.add(pid)
        try:
            out.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    return out - helpers


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
        self._peak_device = self._start.get("gpu_device_bytes") or 0
        self._attributed = False
        """Whether NVML ever gave a figure for one of the engine's processes."""
        torch = _cuda_torch() if self.device.kind == "cuda" else None
        if torch is not None:
            torch.cuda.synchronize(self.device.index)
            torch.cuda.reset_peak_memory_stats(self.device.index)
            self._torch_base = torch.cuda.memory_allocated(self.device.index)
        self.sample()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="vqbench-memory-probe")
        self._thread.start()
        return self

    def sample(self) -> None:
        """Take one sample now: new processes of the engine, their resident memory, NVML's figures."""
        fam = family(self.pids())
        with self._lock:
            for pid in fam:
                rss = (_status_kib(pid, "VmRSS") or 0) * 1024
                if pid not in self._rss_peak and reset_peaks({pid}):
                    self._hwm.add(pid)
                self._rss_peak[pid] = max(self._rss_peak.get(pid, 0), rss)
            if self.device.kind == "cuda":
                self._note_nvml(nvml_usage(self.device.index, set(self._rss_peak)))

    def _note_nvml(self, usage: dict[str, Any] | None) -> None:
        if usage is None:
            return
        self._peak_gpu = max(self._peak_gpu, usage["process_bytes"])
        self._attributed = self._attributed or usage["attributed"]
        if usage["device_bytes"] is not None:
            self._peak_device = max(self._peak_device, usage["device_bytes"])

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        torch = _cuda_torch() if self.device.kind == "cuda" else None
        if torch is not None:
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
            idx = self.device.index
            end = nvml_usage(idx, set(peaks))
            if end is not None:
                self._note_nvml(end)
                r.update(self._nvml_figures(base))
            if torch is not None:
                r.update(torch_peak_allocated_bytes=torch.cuda.max_memory_allocated(idx),
                         torch_baseline_allocated_bytes=self._torch_base,
                         torch_peak_over_baseline_bytes=torch.cuda.max_memory_allocated(idx) - self._torch_base,
                         torch_peak_reserved_bytes=torch.cuda.max_memory_reserved(idx))
        self.result = r

    def _nvml_figures(self, base: dict[str, Any]) -> dict[str, Any]:
        """NVML's peak over the baseline: the engine's processes' figures, or, when NVML attributes
        nothing to them while the device's used memory rose, the device's used memory with a note."""
        base_dev = base.get("gpu_device_bytes")
        rise = self._peak_device - base_dev if base_dev is not None else 0
        if self._attributed or self._peak_gpu or base.get("gpu_bytes") or rise <= 0:
            return {"nvml_source": "processes", "nvml_peak_bytes": self._peak_gpu,
                    "nvml_baseline_bytes": base.get("gpu_bytes"),
                    "nvml_peak_over_baseline_bytes": max(0, self._peak_gpu - (base.get("gpu_bytes") or 0))}
        note = NO_PROCESS_FIGURES_NOTE.format(rise=f"{rise / 2**20:.1f} MiB")
        _warn_once(note)
        return {"nvml_source": "device", "nvml_note": note, "nvml_peak_bytes": self._peak_device,
                "nvml_baseline_bytes": base_dev, "nvml_peak_over_baseline_bytes": rise}


_WARNED: set[str] = set()


def _warn_once(note: str) -> None:
    """Warn about NVML's missing per-process figures once per process (every cell's record has the note)."""
    if "nvml" not in _WARNED:
        _WARNED.add("nvml")
        warnings.warn(note, RuntimeWarning, stacklevel=3)


def snapshot(device: DeviceInfo, pids: Callable[[], list[int]] | None = None) -> dict[str, Any]:
    """Memory held now by ``pids()`` and descendants: host resident bytes and, on a GPU, NVML bytes
    (the processes' own, and the device's used memory)."""
    fam = family((pids or (lambda: [os.getpid()]))())
    out: dict[str, Any] = {"host_bytes": rss_bytes(fam), "processes": len(fam)}
    if device.kind == "cuda":
        usage = nvml_usage(device.index, fam)
        out["gpu_bytes"] = None if usage is None else usage["process_bytes"]
        out["gpu_device_bytes"] = None if usage is None else usage["device_bytes"]
        torch = _torch()
        if torch is not None and torch.cuda.is_initialized():
            out["torch_allocated_bytes"] = torch.cuda.memory_allocated(device.index)
            out["torch_reserved_bytes"] = torch.cuda.memory_reserved(device.index)
    return out


def _cuda_torch():
    """torch, when it can see a CUDA device (the probe's torch figures need one)."""
    import torch

    return torch if torch.cuda.is_available() else None


def _torch():
    import sys

    return sys.modules.get("torch")
