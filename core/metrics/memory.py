"""Peak memory of one piece of work: NVML for this process only (baseline subtracted) and torch's
allocator on a GPU; the process's peak resident set on the CPU.

NVML's per-device "used" counts every process on the GPU; the figure here is this process's own
usage from the device's running-process list, so a neighbour's allocations never leak in.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import Any

from core.device import DeviceInfo


def _nvml_process_bytes(index: int) -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(_physical_index(index))
        pid = os.getpid()
        for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            for p in getter(h):
                if p.pid == pid and p.usedGpuMemory is not None:
                    return int(p.usedGpuMemory)
        return 0
    except Exception:  # noqa: BLE001 - no NVML, no figure
        return None


def _physical_index(index: int) -> int:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        ids = [t.strip() for t in env.split(",") if t.strip().isdigit()]
        if index < len(ids):
            return int(ids[index])
    return index


def rss_peak_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryProbe:
    """Context manager measuring peak memory of the enclosed work on ``device``.

    On a GPU a sampling thread polls NVML every ``interval`` seconds (NVML has no peak counter);
    torch's ``max_memory_allocated`` is exact for the caching allocator.
    """

    def __init__(self, device: DeviceInfo, *, interval: float = 0.005) -> None:
        self.device = device
        self.interval = interval
        self.result: dict[str, Any] = {}

    def __enter__(self) -> "MemoryProbe":
        self._stop = threading.Event()
        self._peak_nvml = 0
        if self.device.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device.index)
            torch.cuda.reset_peak_memory_stats(self.device.index)
            self._torch_base = torch.cuda.memory_allocated(self.device.index)
            self._nvml_base = _nvml_process_bytes(self.device.index)
            if self._nvml_base is not None:
                self._thread = threading.Thread(target=self._poll, daemon=True)
                self._thread.start()
        self._rss_base = rss_peak_bytes()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            v = _nvml_process_bytes(self.device.index)
            if v is not None:
                self._peak_nvml = max(self._peak_nvml, v)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        r: dict[str, Any] = {"rss_peak_bytes": rss_peak_bytes()}
        if self.device.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device.index)
            if getattr(self, "_thread", None):
                self._thread.join()
                end = _nvml_process_bytes(self.device.index) or 0
                peak = max(self._peak_nvml, end)
                r.update(nvml_process_peak_bytes=peak, nvml_process_baseline_bytes=self._nvml_base,
                         nvml_peak_over_baseline_bytes=max(0, peak - (self._nvml_base or 0)))
            r.update(torch_peak_allocated_bytes=torch.cuda.max_memory_allocated(self.device.index),
                     torch_baseline_allocated_bytes=self._torch_base,
                     torch_peak_over_baseline_bytes=torch.cuda.max_memory_allocated(self.device.index)
                     - self._torch_base,
                     torch_peak_reserved_bytes=torch.cuda.max_memory_reserved(self.device.index))
        self.result = r


def device_memory_now(device: DeviceInfo) -> dict[str, Any]:
    """Current usage, for the after-close check (memory back to baseline)."""
    if device.kind != "cuda":
        return {"rss_peak_bytes": rss_peak_bytes()}
    import torch

    return {"torch_allocated_bytes": torch.cuda.memory_allocated(device.index),
            "torch_reserved_bytes": torch.cuda.memory_reserved(device.index),
            "nvml_process_bytes": _nvml_process_bytes(device.index)}
