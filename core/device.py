"""What compute this process can use, found through NVML (no torch import).

``gpu_class`` (``cpu``, ``sm90``, ``sm100`` ...) keys goldens wherever numerics differ by hardware.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    """One device a cell can run on."""

    kind: str  # "cpu" or "cuda"
    index: int = 0
    name: str = "cpu"
    capability: tuple[int, int] | None = None
    memory_gib: float | None = None
    driver: str | None = None
    cuda_driver_version: str | None = None

    @property
    def sm(self) -> int | None:
        """Compute capability as one number (9.0 -> 90), None on CPU."""
        return None if self.capability is None else self.capability[0] * 10 + self.capability[1]

    @property
    def gpu_class(self) -> str:
        return "cpu" if self.kind == "cpu" else f"sm{self.sm}"

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    def describe(self) -> str:
        if self.kind == "cpu":
            return "CPU"
        cap = f"sm_{self.sm}" if self.sm else "unknown capability"
        return f"{self.name} ({cap}, {self.memory_gib:.0f} GiB)"


CPU = DeviceInfo(kind="cpu")


@functools.lru_cache(maxsize=1)
def _nvml_gpus() -> tuple[tuple[DeviceInfo, ...], str]:
    try:
        import pynvml
    except ImportError:
        return (), "nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError subclasses vary by failure
        return (), f"no NVIDIA driver reachable through NVML ({exc})"
    gpus = []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        cuda_s = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            cap = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30
            gpus.append(DeviceInfo(kind="cuda", index=i, name=name, capability=cap, memory_gib=mem,
                                   driver=driver, cuda_driver_version=cuda_s))
    except Exception as exc:  # noqa: BLE001
        return tuple(gpus), f"NVML query failed ({exc})"
    return tuple(gpus), "" if gpus else "NVML found no GPUs"


def _visible(gpus: tuple[DeviceInfo, ...]) -> list[DeviceInfo]:
    """Apply CUDA_VISIBLE_DEVICES (indices only) and renumber as CUDA does."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(gpus)
    picked = []
    for tok in env.split(","):
        tok = tok.strip()
        if tok.isdigit() and int(tok) < len(gpus):
            picked.append(gpus[int(tok)])
    return [DeviceInfo(**{**g.__dict__, "index": i}) for i, g in enumerate(picked)]


def gpus() -> list[DeviceInfo]:
    """Visible CUDA GPUs (respecting CUDA_VISIBLE_DEVICES)."""
    return _visible(_nvml_gpus()[0])


def no_gpu_reason() -> str:
    """Why there is no usable GPU ('' when there is one)."""
    found, why = _nvml_gpus()
    if found and not gpus():
        return f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} hides every GPU"
    return why


def primary() -> DeviceInfo:
    """The device a GPU cell uses: the first visible GPU, else the CPU."""
    found = gpus()
    return found[0] if found else CPU
