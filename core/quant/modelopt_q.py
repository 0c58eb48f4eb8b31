"""ModelOpt post-training quantization (nvidia-modelopt 0.47, list-form ``quant_cfg``).

``ModelOptQuantizer.apply`` calibrates and fake-quantizes an HF model in memory (or restores it from
the artifact cache); ``export`` writes a real quantized HF checkpoint (``export_hf_checkpoint``)
plus the tokenizer and processor, for vLLM and TensorRT-LLM. A format's ``recipe`` names the
ModelOpt preset (``FP8_DEFAULT_CFG`` ...).
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core.base import timeline
from core.base.errors import ArtifactError
from core.plan.formats import QuantFormat
from core.quant.base import Applied, QuantContext, Quantizer

# Later entries win in ModelOpt's list-form config: these keep the vision tower and lm_head in
# high precision even after FP8_KV_CFG (which would re-enable vision k/v quantizers).
VISION_PATTERNS = ["*visual*", "*vision_tower*", "*vision_model*", "*multi_modal_projector*", "*mlp1*"]
KEEP_HIGH_PRECISION = [*VISION_PATTERNS, "*lm_head*"]
VISION_EXCLUSIONS = {*VISION_PATTERNS, "*embed_vision*"}
"""The presets' own "leave the vision tower alone" entries (0.47 presets list them)."""


def build_config(fmt: QuantFormat) -> dict[str, Any]:
    """A deep copy of the format's preset (never the preset itself), extended for KV and scope."""
    import modelopt.torch.quantization as mtq

    if fmt.tool != "modelopt" or not fmt.recipe:
        raise ArtifactError(f"{fmt.id} is not a ModelOpt format")
    cfg = copy.deepcopy(getattr(mtq, fmt.recipe))
    if fmt.vision:
        # +vit: drop the preset's own vision exclusions, so its weight/input rules reach the tower too
        cfg["quant_cfg"] = [e for e in cfg["quant_cfg"]
                            if not (e.get("enable") is False and e.get("quantizer_name") in VISION_EXCLUSIONS)]
    if fmt.kv_cache == "fp8":
        cfg["quant_cfg"].extend(copy.deepcopy(mtq.FP8_KV_CFG["quant_cfg"]))
    keep = ["*lm_head*"] if fmt.vision else KEEP_HIGH_PRECISION  # +vit: the vision tower is quantized too
    cfg["quant_cfg"].extend({"quantizer_name": p, "enable": False} for p in keep)
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


class ModelOptQuantizer(Quantizer):
    """Calibrated fake-quantization in memory (HF), cached; real checkpoints through ``export``."""

    name = "modelopt"

    def imports(self) -> None:
        # The first import of modelopt keeps frames of the importing call stack alive (found on CPU:
        # ModelOpt's optional-plugin imports; bench/unit/test_memory.py): a first import from inside
        # a quantization kept the whole model, and on a GPU its 7B export, in memory for the rest of
        # the session. Import it here, from frames that hold no model.
        with timeline.phase("quantizer import"):
            import modelopt.torch.export
            import modelopt.torch.opt  # registers ModelOpt's modes for restore
            import modelopt.torch.quantization  # noqa: F401

    def apply(self, model, fmt: QuantFormat, ctx: QuantContext) -> Applied:
        """Fake-quantize ``model`` with ModelOpt, or restore it from the artifact cache."""
        t0 = time.perf_counter()
        import modelopt.torch.quantization as mtq

        from core.models.families import family
        from core.quant import artifacts, calibration

        spec, options = ctx.spec, ctx.options
        # a quantized vision tower is calibrated on what it sees: video clips (text captions never reach it)
        calib = calibration.make("clips" if fmt.vision else options.calibration, options.calib_size)
        key = artifacts.key(spec=spec, directory=ctx.directory, fmt=fmt, calib=calib, kind="fakequant",
                            device_class=ctx.device.gpu_class)
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
            with timeline.phase("calibration + quantize"):
                cfg = build_config(fmt)
                loop = calibration.forward_loop(calib, processor=ctx.processor, family=family(spec.family),
                                                device=str(model.device))
                model = mtq.quantize(model, cfg, forward_loop=loop)
        summary = quantizer_summary(model)
        if summary["enabled_quantizers"] == 0:
            raise ArtifactError(f"ModelOpt {fmt.recipe} enabled no quantizer in {spec.name}")
        if fmt.vision and not summary["by_part"].get("vision", 0):
            raise ArtifactError(f"{fmt.id}: no vision-tower quantizer is enabled in {spec.name}; the +vit format "
                                "must quantize the vision tower")
        if summary["by_part"].get("vision", 0) and not fmt.vision:
            raise ArtifactError(f"{summary['by_part']['vision']} vision-tower quantizers are enabled; "
                                "the vision tower must stay high precision")
        if not cached and options.artifact_cache and artifacts.cacheable(model):  # only a checked model is kept
            artifacts.store_modelopt(model, key, record={"format": fmt.id, "calibration": calib.describe(),
                                                         "model": spec.name})
        quantize_s = time.perf_counter() - t0
        report = {"tool": "modelopt", "config": fmt.recipe, "kv_cache": fmt.kv_cache, "vision": fmt.vision,
                  "quantize_s": quantize_s,
                  "cached": cached, "artifact_key": key, "calibration": calib.describe(),
                  **{k: v for k, v in summary.items() if k != "layers"}, "layers": summary["layers"]}
        return Applied(model=model, report=report, quantize_s=quantize_s, cached=cached)


def export(model, export_dir: Path, *, processor) -> dict[str, Any]:
    """Write a real quantized HF checkpoint (safetensors + hf_quant_config.json) plus processor files."""
    import json

    from modelopt.torch.export import export_hf_checkpoint

    export_dir = Path(export_dir)
    config = getattr(model, "config", None)
    if config is not None and not getattr(config, "architectures", None):
        # A config built from its class (the shape-only specs, a hand-written config.json) names no
        # architecture; ModelOpt 0.47's multimodal check iterates config.architectures and fails on None.
        # Name the loaded class, which is what save_pretrained writes there anyway.
        config.architectures = [type(model).__name__]
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
