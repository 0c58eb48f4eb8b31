"""torchao quantization of the language model's linear layers (vision tower and lm_head untouched)."""

from __future__ import annotations

from typing import Any

from core.errors import ArtifactError
from core.formats import QuantFormat
from core.quant.inspect import linear_dtypes, weight_bytes


def _config(fmt: QuantFormat):
    from torchao import quantization as q

    if fmt.name == "fp8_dynamic":
        return q.Float8DynamicActivationFloat8WeightConfig(granularity=q.PerRow())
    if fmt.name == "int8_weight_only":
        return q.Int8WeightOnlyConfig()
    if fmt.name == "int4_weight_only":
        # tinygemm's tile-packed layout: aten kernels only (the default "plain" layout needs mslk/fbgemm)
        return q.Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")
    raise ArtifactError(f"{fmt.id} is not a torchao format")


def language_model(model):
    """The decoder stack of a VLM (``model.model.language_model`` in transformers 5)."""
    inner = getattr(model, "model", model)
    lm = getattr(inner, "language_model", None)
    if lm is None:
        raise ArtifactError(f"cannot find the language model inside {type(model).__name__}")
    return lm


def apply(model, fmt: QuantFormat) -> dict[str, Any]:
    """Quantize the language model's nn.Linear layers in place; return the proof it took effect."""
    import torch
    from torchao.quantization import quantize_

    before = weight_bytes(model)
    lm = language_model(model)
    quantize_(lm, _config(fmt), filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    quantized = sum(1 for m in lm.modules()
                    if isinstance(m, torch.nn.Linear) and type(m.weight).__name__ not in {"Parameter", "Tensor"})
    if quantized == 0:
        raise ArtifactError(f"torchao {fmt.name} converted no linear layer")
    return {"tool": "torchao", "quantized_linear_layers": quantized, "weight_bytes_before": before,
            "weight_bytes_after": weight_bytes(model), "linear_modules": linear_dtypes(model)}
