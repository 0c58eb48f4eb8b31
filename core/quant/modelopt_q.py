"""ModelOpt post-training quantization (nvidia-modelopt 0.47, list-form ``quant_cfg``).

``quantize_model`` calibrates and fake-quantizes an HF model in memory (or restores it from the
artifact cache); ``export`` writes a real quantized HF checkpoint (``export_hf_checkpoint``) plus
the tokenizer and processor, for vLLM and TensorRT-LLM.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core.errors import ArtifactError
from core.formats import QuantFormat

# Later entries win in ModelOpt's list-form config: these keep the vision tower and lm_head in
# high precision even after FP8_KV_CFG (which would re-enable vision k/v quantizers).
KEEP_HIGH_PRECISION = ["*visual*", "*vision_tower*", "*vision_model*", "*multi_modal_projector*",
                       "*mlp1*", "*lm_head*"]


def build_config(fmt: QuantFormat) -> dict[str, Any]:
    """A deep copy of the format's preset (never the preset itself), extended for KV and scope."""
    import modelopt.torch.quantization as mtq

    if fmt.modelopt_config is None:
        raise ArtifactError(f"{fmt.id} is not a ModelOpt format")
    cfg = copy.deepcopy(getattr(mtq, fmt.modelopt_config))
    if fmt.kv_cache == "fp8":
        cfg["quant_cfg"].extend(copy.deepcopy(mtq.FP8_KV_CFG["quant_cfg"]))
    cfg["quant_cfg"].extend({"quantizer_name": p, "enable": False} for p in KEEP_HIGH_PRECISION)
    return cfg


def quantizer_summary(model) -> dict[str, Any]:
    """Enabled quantizers by kind and by top-level part, plus a per-layer listing (the proof)."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    kinds: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    layers: dict[str, dict[str, str]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, TensorQuantizer) or not module.is_enabled:
            continue
        owner, _, qname = name.rpartition(".")
        if qname.isdigit():  # a step of a SequentialQuantizer (W4A8: int4 then fp8)
            owner, _, parent = owner.rpartition(".")
            qname = f"{parent}[{qname}]"
        kinds[qname] += 1
        part = "vision" if any(v in name for v in ("visual", "vision")) else (
            "lm_head" if "lm_head" in name else "language_model")
        parts[part] += 1
        bits = module.num_bits
        desc = f"{bits}" if not isinstance(bits, tuple) else f"fp(e{bits[0]}m{bits[1]})"
        if getattr(module, "block_sizes", None):
            desc += f" blocks={dict(module.block_sizes)}"
        layers.setdefault(owner, {})[qname.replace("_quantizer", "")] = desc
    return {"enabled_quantizers": sum(kinds.values()), "by_kind": dict(sorted(kinds.items())),
            "by_part": dict(sorted(parts.items())), "layers": layers}


def quantize_model(model, fmt: QuantFormat, *, spec, directory: Path, processor, device, options):
    """Fake-quantize ``model`` with ModelOpt, or restore it from the artifact cache. Returns (model, report)."""
    import modelopt.torch.opt as mto
    import modelopt.torch.quantization as mtq

    from core.families import family
    from core.quant import artifacts, calibration

    calib = calibration.make(options.calibration, options.calib_size)
    key = artifacts.key(spec=spec, directory=directory, fmt=fmt, calib=calib, kind="fakequant",
                        device_class=device.gpu_class)
    t0 = time.perf_counter()
    cached = False
    entry = artifacts.lookup(key) if options.artifact_cache else None
    if entry is not None:
        try:
            artifacts.restore_modelopt(model, entry)
            cached = True
        except Exception as exc:  # noqa: BLE001 - a bad entry is rebuilt, not fatal
            artifacts.discard(key, reason=f"restore failed: {exc}")
            entry = None
    if entry is None:
        cfg = build_config(fmt)
        loop = calibration.forward_loop(calib, processor=processor, family=family(spec.family),
                                        device=str(model.device))
        model = mtq.quantize(model, cfg, forward_loop=loop)
        if options.artifact_cache and artifacts.cacheable(model):
            artifacts.store_modelopt(model, key, record={"format": fmt.id, "calibration": calib.describe(),
                                                         "model": spec.name})
    summary = quantizer_summary(model)
    if summary["enabled_quantizers"] == 0:
        raise ArtifactError(f"ModelOpt {fmt.modelopt_config} enabled no quantizer in {spec.name}")
    if summary["by_part"].get("vision", 0):
        raise ArtifactError(f"{summary['by_part']['vision']} vision-tower quantizers are enabled; "
                            "the vision tower must stay high precision")
    report = {"tool": "modelopt", "config": fmt.modelopt_config, "kv_cache": fmt.kv_cache,
              "quantize_s": time.perf_counter() - t0, "cached": cached, "artifact_key": key,
              "calibration": calib.describe(), **{k: v for k, v in summary.items() if k != "layers"},
              "layers": summary["layers"]}
    _ = mto  # imported for its registration side effects on restore
    return model, report


def export(model, export_dir: Path, *, processor) -> dict[str, Any]:
    """Write a real quantized HF checkpoint (safetensors + hf_quant_config.json) plus processor files."""
    import json

    from modelopt.torch.export import export_hf_checkpoint

    export_dir = Path(export_dir)
    export_hf_checkpoint(model, export_dir=export_dir)
    processor.save_pretrained(export_dir)
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.save_pretrained(export_dir)
    chat = getattr(processor, "chat_template", None)
    if chat:
        (export_dir / "chat_template.jinja").write_text(chat)
    qcfg_file = export_dir / "hf_quant_config.json"
    qcfg = json.loads(qcfg_file.read_text()) if qcfg_file.exists() else {}
    size = sum(f.stat().st_size for f in export_dir.glob("*.safetensors"))
    return {"export_dir": str(export_dir), "quant_algo": qcfg.get("quantization", {}).get("quant_algo"),
            "hf_quant_config": qcfg, "safetensors_bytes": size}
