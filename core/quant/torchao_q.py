"""torchao quantization of the language model's linear layers (vision tower and lm_head untouched).

A format's ``recipe`` is a key of ``RECIPES``: how to build the torchao config object.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.base.errors import ArtifactError
from core.plan.formats import QuantFormat
from core.quant.base import Applied, QuantContext, Quantizer
from core.quant.inspect import linear_dtypes, weight_size

RECIPES: dict[str, Callable[[Any], Any]] = {
    "float8_dynamic_per_row": lambda q: q.Float8DynamicActivationFloat8WeightConfig(granularity=q.PerRow()),
    "int8_weight_only": lambda q: q.Int8WeightOnlyConfig(),
    # tinygemm's tile-packed layout: aten kernels only (the default "plain" layout needs mslk/fbgemm)
    "int4_weight_only_tinygemm": lambda q: q.Int4WeightOnlyConfig(group_size=128,
                                                                  int4_packing_format="tile_packed_to_4d"),
}
"""Recipe -> a function of ``torchao.quantization`` returning the config."""


def _config(fmt: QuantFormat):
    from torchao import quantization as q

    if fmt.tool != "torchao" or fmt.recipe not in RECIPES:
        raise ArtifactError(f"{fmt.id} is not a torchao format (recipes: {', '.join(RECIPES)})")
    return RECIPES[fmt.recipe](q)


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

    before = weight_size(model)
    lm = language_model(model)
    quantize_(lm, _config(fmt), filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    quantized = sum(1 for m in lm.modules()
                    if isinstance(m, torch.nn.Linear) and type(m.weight).__name__ not in {"Parameter", "Tensor"})
    if quantized == 0:
        raise ArtifactError(f"torchao {fmt.name} converted no linear layer")
    after = weight_size(model)
    notes = [n for n in (before.note, after.note) if n]
    return {"tool": "torchao", "quantized_linear_layers": quantized, "weight_bytes_before": before.bytes,
            "weight_bytes_after": after.bytes, **({"weight_bytes_note": "; ".join(notes)} if notes else {}),
            "linear_modules": linear_dtypes(model)}


class TorchAOQuantizer(Quantizer):
    """torchao's ``quantize_`` on the loaded model."""

    name = "torchao"

    def apply(self, model, fmt: QuantFormat, ctx: QuantContext) -> Applied:
        t0 = time.perf_counter()
        report = apply(model, fmt)
        return Applied(model=model, report=report, quantize_s=time.perf_counter() - t0)
