"""``vqbench quantize``: make (or reuse from the artifact cache) a quantized model and show where it
is and what got quantized."""

from __future__ import annotations

import sys

from core.base.errors import Unsupported
from core.inputs.requests import EngineOptions
from core.models import registry
from core.plan import capability
from core.plan import device as devices
from core.plan.formats import get_format


def quantize(*, model: str, fmt_name: str, device: str, options: EngineOptions, export: bool) -> int:
    spec = registry.resolve(model, allow_pickle=options.allow_pickle)
    if spec.is_prequantized:
        raise Unsupported(f"{spec.name} is already quantized ({spec.detected_format}, {spec.prequantized.source}): "
                          "vqbench never quantizes a checkpoint again; run it with `vqbench run --model` or the suite")
    fmt = get_format(fmt_name)
    dev = devices.for_kind(device, options.cpu_dtype)
    if device == "cuda" and dev.kind != "cuda":
        raise Unsupported(f"--device cuda asked for, but there is no GPU: {devices.no_gpu_reason()}")
    if not fmt.quantized:
        print(f"{fmt.id} is not a quantized format: nothing to make", file=sys.stderr)
        return 0
    if export:
        if not any(r.how == "checkpoint" for r in fmt.backends.values()):
            raise Unsupported(f"--export writes the checkpoints other engines load; {fmt.id} is made by {fmt.tool} "
                              "at load time, no engine loads a checkpoint of it")
        from core.backends.exports import checkpoint_for

        path, report = checkpoint_for(spec, fmt, options=options, device=dev)
        state = "reused from the cache" if report["cached"] else f"made in {report['quantize_s']:.1f}s"
        print(f"{spec.name} {fmt.id} export ({report['quant_algo']}): {path} ({state})")
        return 0
    verdict = capability.check("hf", fmt, dev, spec=spec)
    if not verdict:
        raise Unsupported(verdict.reason)
    from core.backends.hf import HFBackend

    backend = HFBackend(spec, fmt, dev, options)
    with backend:
        info = backend.load_info
        if info is None:
            raise RuntimeError(f"{spec.name} {fmt.id}: the backend loaded without recording its load")
        q = info.details.get("quantization", {})
    weights = (f"{info.weight_bytes / 2**20:.2f} MiB" if info.weight_bytes is not None
               else f"unknown ({info.details.get('weight_bytes_note')})")
    print(f"{spec.name} {fmt.id} on {dev.describe()}: weights {weights} on the device")
    if "enabled_quantizers" in q:  # a calibrated, cached quantization (ModelOpt)
        state = "reused from the artifact cache" if info.quantize_cached else f"calibrated in {info.quantize_s:.1f}s"
        print(f"  ModelOpt {q['config']}: {q['enabled_quantizers']} quantizers enabled {q['by_kind']} ({state})")
        print(f"  by part: {q['by_part']}; calibration: {q['calibration']}")
        print(f"  artifact: {registry.paths.cache_dir() / 'artifacts' / q['artifact_key']}")
        print(f"  note: {verdict.reason}")
        for layer, qs in list(q["layers"].items())[:8]:
            print(f"    {layer}: {qs}")
        if len(q["layers"]) > 8:
            print(f"    ... {len(q['layers']) - 8} more layers")
    elif "runs" in q:  # a checkpoint its tool wrote, loaded by transformers (compressed-tensors)
        exported = q.get("export", {})
        state = "reused from the artifact cache" if info.quantize_cached else f"made in {info.quantize_s:.1f}s"
        print(f"  {fmt.tool} {q['recipe']} checkpoint {exported.get('export_dir')} ({state})")
        print(f"  layers {q['layers']}; runs {q['runs']}: {q['how']}")
        print(f"  note: {verdict.reason}")
    else:
        print(f"  {fmt.tool}: {q.get('quantized_linear_layers')} linear layers quantized: {q.get('linear_modules')}")
        print("  (made at load time; nothing to cache)")
    return 0
