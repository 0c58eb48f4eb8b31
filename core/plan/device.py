"""What compute this process can use, found through NVML and /proc/cpuinfo (no torch import).

``gpu_class`` (``cpu``, ``cpu_fp32``, ``sm90``, ``sm100`` ...) keys goldens wherever numerics differ by
hardware. On a CPU the class is the compute dtype: ``cpu`` computes in bfloat16 (CPUs with bf16
arithmetic, AVX512-BF16 or AMX), ``cpu_fp32`` in float32 (``--cpu-dtype auto`` picks it where bf16 is
emulated: on an AVX2-only CPU torch's bf16 matmul is ~100x slower than fp32).
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
    compute_dtype: str | None = None
    """CPU only: the dtype engines compute in ('bfloat16' or 'float32'); None = bfloat16 (GPUs)."""
    isa: str | None = None
    """CPU only: the instruction set torch dispatches to (AVX512, AVX2, DEFAULT)."""
    bf16_native: bool | None = None
    """CPU only: whether bf16 arithmetic is native (AVX512-BF16/AMX); None = not probed (assumed native)."""
    bf16_why: str = ""
    uuid: str | None = None
    """GPU only: NVML's UUID of the physical card (tells one machine from another of the same model)."""

    @property
    def sm(self) -> int | None:
        """Compute capability as one number (9.0 -> 90), None on CPU."""
        return None if self.capability is None else self.capability[0] * 10 + self.capability[1]

    @property
    def gpu_class(self) -> str:
        if self.kind == "cpu":
            return "cpu_fp32" if self.compute_dtype == "float32" else "cpu"
        return f"sm{self.sm}"

    @property
    def dtype(self) -> str:
        """The dtype a bf16 model computes in here: bfloat16, or float32 on a CPU told to (``--cpu-dtype``)."""
        return self.compute_dtype or "bfloat16"

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    def cpu_record(self) -> dict[str, object]:
        """What records and doctor say about a CPU device: name, ISA, bf16 native or emulated, compute dtype."""
        return {"name": self.name, "isa": self.isa, "bf16_native": self.bf16_native, "bf16": self.bf16_why,
                "compute_dtype": self.dtype}

    def describe(self) -> str:
        if self.kind == "cpu":
            return "CPU" if self.dtype == "bfloat16" else f"CPU (computing in {self.dtype})"
        cap = f"sm_{self.sm}" if self.sm else "unknown capability"
        return f"{self.name} ({cap}, {self.memory_gib:.0f} GiB)"


CPU_DTYPES = ("auto", "bfloat16", "float32")

# torch's dispatch levels (ATen's CPU capability) and the /proc/cpuinfo flags each needs (ATen's own
# check: cpuinfo's avx512 vl/bw/dq + fma; avx2 + fma). ATEN_CPU_CAPABILITY caps it (avx2, default).
_ISA_FLAGS = (("AVX512", ("avx512f", "avx512vl", "avx512bw", "avx512dq", "fma")), ("AVX2", ("avx2", "fma")))
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512",
                     "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL")


@dataclass(frozen=True)
class CpuFacts:
    """This CPU as the kernels see it: its name, the ISA torch dispatches to (after
    ATEN_CPU_CAPABILITY) and whether bf16 arithmetic is native (AVX512-BF16 or AMX, not capped by
    ATEN_CPU_CAPABILITY or oneDNN's ONEDNN_MAX_CPU_ISA) or emulated (bf16 converted to fp32 in
    software: ~100x slower than fp32 on an AVX2-only CPU, measured with torch 2.14)."""

    name: str
    isa: str
    """'AVX512', 'AVX2' or 'DEFAULT': the level ``torch.backends.cpu.get_cpu_capability()`` reports."""
    bf16_native: bool
    bf16_why: str
    """Which instructions (or which cap) make bf16 native or emulated here."""

    def describe(self) -> str:
        return f"{self.name} ({self.isa}; bf16 {'native' if self.bf16_native else 'emulated'}: {self.bf16_why})"


def cpu_facts(cpuinfo: str | None = None, env: dict[str, str] | None = None) -> CpuFacts:
    """The CPU's facts from /proc/cpuinfo and the capping variables (``cpuinfo``/``env`` for tests)."""
    environ = os.environ if env is None else env
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    lines = cpuinfo.splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "") or "unknown CPU"
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    isa = next((level for level, need in _ISA_FLAGS if all(f in flags for f in need)), "DEFAULT")
    cap = environ.get("ATEN_CPU_CAPABILITY", "").strip().upper()
    order = ["DEFAULT", "AVX2", "AVX512"]
    capped = cap in order and order.index(cap) < order.index(isa)
    if capped:
        isa = cap
    bf16_flags = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    onednn = environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if not bf16_flags:
        why = f"no AVX512-BF16 or AMX-BF16 instructions ({isa})"
    elif isa != "AVX512":
        why = f"{' and '.join(bf16_flags)} present, but torch is capped at {isa} (ATEN_CPU_CAPABILITY={cap.lower()})"
    elif onednn and onednn not in _ONEDNN_BF16_ISAS:
        why = f"{' and '.join(bf16_flags)} present, but oneDNN is capped at ONEDNN_MAX_CPU_ISA={onednn}"
    else:
        return CpuFacts(name, isa, True, " and ".join(bf16_flags))
    return CpuFacts(name, isa, False, why)


def resolve_cpu_dtype(choice: str = "auto", facts: CpuFacts | None = None) -> str:
    """``--cpu-dtype``: 'auto' computes in bfloat16 where the CPU has bf16 arithmetic, else float32."""
    if choice not in CPU_DTYPES:
        raise ValueError(f"cpu dtype must be one of {', '.join(CPU_DTYPES)}, not {choice!r}")
    if choice != "auto":
        return choice
    return "bfloat16" if (facts or cpu_facts()).bf16_native else "float32"


def cpu_model() -> str:
    """The CPU's model name and the instruction-set extensions that change bf16 numerics (goldens and
    results name the CPU with it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    isa = [f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f in flags]
    return f"{name} ({' '.join(isa) or 'no AVX'})"


def cpu(choice: str = "auto", facts: CpuFacts | None = None) -> DeviceInfo:
    """The CPU as a device, computing in the dtype ``choice`` (``--cpu-dtype``) resolves to here."""
    facts = facts or _host_cpu()
    return DeviceInfo(kind="cpu", name=facts.name, compute_dtype=resolve_cpu_dtype(choice, facts), isa=facts.isa,
                      bf16_native=facts.bf16_native, bf16_why=facts.bf16_why)


@functools.lru_cache(maxsize=1)
def _host_cpu() -> CpuFacts:
    return cpu_facts()


CPU = cpu()
"""The CPU with ``--cpu-dtype auto`` (what a session without the option uses)."""


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
            try:
                uuid = pynvml.nvmlDeviceGetUUID(h)
                uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            except Exception:  # noqa: BLE001 - an identity for records, never needed to run
                uuid = None
            gpus.append(DeviceInfo(kind="cuda", index=i, name=name, capability=cap, memory_gib=mem,
                                   driver=driver, cuda_driver_version=cuda_s, uuid=uuid))
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


def for_kind(kind: str, cpu_dtype: str = "auto") -> DeviceInfo:
    """The device an engine of device kind ``kind`` runs on: the CPU (computing in ``cpu_dtype``) for
    "cpu", the primary GPU otherwise."""
    return cpu(cpu_dtype) if kind == "cpu" else primary()
