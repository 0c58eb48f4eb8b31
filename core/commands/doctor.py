"""``vqbench doctor``: what this machine has and which backend x format cells can run here."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

from core.plan import capability, catalog
from core.plan import device as devices
from core.plan.catalog import BACKENDS
from core.plan.formats import all_formats

KNOWN_ISSUES = [
    # (package, first bad version, first good version, what goes wrong in between)
    ("transformers", "5.3", "5.18", "Qwen2.5-VL mrope truncates second_per_grid_ts to an int, so video sampled "
     "faster than 2 fps (e.g. 4 fps: 0.5 s per temporal patch) gets no temporal positions; answers and "
     "log-probs differ from 5.18+ and from vLLM, and the goldens in golden/ will not match"),
]


def _older(version: str, than: str) -> bool:
    try:
        from packaging.version import Version

        return Version(version) < Version(than)
    except Exception:  # noqa: BLE001 - no packaging, or a version it cannot parse: no warning
        return False


def known_issues(packages: dict[str, str | None]) -> list[str]:
    """Warnings for installed versions with bugs that change this suite's numbers."""
    return [f"{name} {v} (fixed in {good}): {what}" for name, bad, good, what in KNOWN_ISSUES
            if (v := packages.get(name)) and not _older(v, bad) and _older(v, good)]


def tool_environments() -> dict[str, dict]:
    """Quantization tools that run in an environment of their own: where it is and whether it is ready."""
    from core.quant import QUANTIZERS, resolve

    out = {}
    for q in QUANTIZERS.values():
        if q.environment:
            why = resolve(f"{q.environment}:unavailable")(None)
            out[q.name] = {"python": str(resolve(f"{q.environment}:python_path")()), "ready": why is None,
                           "reason": why or ""}
    return out


def _cpu() -> dict:
    """This CPU as the suite sees it (ISA, bf16, compute dtype) and, with vLLM installed, the kernel
    library vLLM loads here and the operators it lacks (asked of the build, not guessed)."""
    from pathlib import Path

    cpu = devices.CPU
    out = {**cpu.cpu_record(), "golden_class": cpu.gpu_class}
    if capability.installed("vllm"):
        from core.backends import vllm_cpu_kernels

        found = vllm_cpu_kernels.probe()
        out["vllm"] = ({"error": found["error"]} if "error" in found else
                       {"loaded_names": [Path(p).name for p in found["loaded"]],
                        "missing": [op for op, ok in found["ops"].items() if not ok]})
    return out


def report() -> dict:
    gpus = devices.gpus()
    dev = gpus[0] if gpus else devices.CPU
    packages = {p: capability.version(p) for p in catalog.PACKAGES}
    tools = tool_environments()
    table = []
    for fmt in all_formats():
        row: dict[str, Any] = {"format": fmt.id, "tool": fmt.tool, "description": fmt.description, "cells": {}}
        for backend in BACKENDS:
            for target in ([devices.CPU] + ([dev] if gpus else [])):
                # What the engine serves; a tool whose own environment is missing here only limits it to
                # checkpoints made elsewhere (pre-quantized models) and shape-only models.
                v = capability.check(backend, fmt, target, tool_environment=False)
                if v.runnable and not tools.get(fmt.tool, {"ready": True})["ready"]:
                    v = capability.CapabilityVerdict(True, "; ".join(filter(None, [
                        v.reason, f"checkpoints made elsewhere and shape-only models only: making one here "
                        f"needs {fmt.tool}'s environment (see the tools above)"])), mode=v.mode)
                row["cells"][f"{backend}/{target.gpu_class}"] = {"runnable": v.runnable, "mode": v.mode,
                                                                 "reason": v.reason}
        table.append(row)
    return {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "tools": tools,
        "gpus": [{"index": g.index, "name": g.name, "capability": g.sm, "memory_gib": round(g.memory_gib or 0, 1),
                  "driver": g.driver, "cuda_driver": g.cuda_driver_version} for g in gpus],
        "no_gpu_reason": "" if gpus else devices.no_gpu_reason(),
        "cpu": _cpu(),
        "packages": packages,
        "warnings": known_issues(packages),
        "capability": table,
    }


def doctor(*, as_json: bool = False) -> int:
    r = report()
    if as_json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"Python {r['python']} on {r['platform']}")
    if r["gpus"]:
        for g in r["gpus"]:
            print(f"GPU {g['index']}: {g['name']} sm_{g['capability']} {g['memory_gib']} GiB, "
                  f"driver {g['driver']}, CUDA {g['cuda_driver']}")
    else:
        print(f"GPU: none ({r['no_gpu_reason']})")
    c = r["cpu"]
    print(f"CPU: {c['name']}; torch dispatches to {c['isa']}; bf16 {'native' if c['bf16_native'] else 'EMULATED'} "
          f"({c['bf16']}); CPU engines compute in {c['compute_dtype']} (goldens: {c['golden_class']})")
    if not c["bf16_native"]:
        print("  bf16 is emulated on this CPU, ~100x slower than fp32 (torch 2.14, 648x1024 @ 1024x1024 on an AVX2 "
              "EPYC): --cpu-dtype auto computes in float32 here")
    if c.get("vllm"):
        v = c["vllm"]
        print(f"  vLLM CPU kernels: {v.get('error') or ', '.join(sorted(v.get('loaded_names', [])))}"
              + (f"; missing: {', '.join(v['missing'])}" if v.get("missing") else ""))
    print("\nPackages:")
    for p, v in r["packages"].items():
        print(f"  {catalog.PACKAGES[p].dists[0]:<16} {v or '-- not installed: ' + capability.install_hint(p)}")
    for w in r["warnings"]:
        print(f"  WARNING: {w}")
    for name, env in r["tools"].items():
        print(f"  {name + ' env':<16} {env['python'] if env['ready'] else '-- ' + env['reason']}")
    print("\nCapability (backend/device: ok, or why not):")
    for row in r["capability"]:
        print(f"  {row['format']:<17} {row['description']}")
        for where, v in row["cells"].items():
            status = f"ok ({v['mode']})" if v["runnable"] else "no"
            detail = f" - {v['reason']}" if v["reason"] else ""
            print(f"      {where:<12} {status}{detail}")
    return 0
