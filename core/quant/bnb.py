"""bitsandbytes through transformers' ``BitsAndBytesConfig`` (language model only).

A format's ``recipe`` is a key of ``RECIPES``: the ``BitsAndBytesConfig`` arguments for a checkpoint
loaded with ``from_pretrained``, and the layer class for shape-only models whose random weights
are made on the device (which ``BitsAndBytesConfig`` never sees).
"""

from __future__ import annotations

import time
from typing import Any

from core.base.errors import ArtifactError
from core.plan.formats import QuantFormat
from core.quant.base import Applied, QuantContext, Quantizer
from core.quant.inspect import linear_dtypes

# transformers 5 matches these as regexes anchored at the module name's start (4.x: substrings),
# so each vision part is listed both ways.
_VISION_PARTS = ["visual", "vision_tower", "vision_model", "multi_modal_projector", "mlp1"]
SKIP = [*_VISION_PARTS, *(f".*{p}" for p in _VISION_PARTS), "lm_head"]

RECIPES: dict[str, dict[str, Any]] = {
    "int8": {"config": {"load_in_8bit": True}, "layer": "Linear8bitLt"},
    "nf4": {"config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16"},
            "layer": "Linear4bit"},
}
"""Recipe -> ``BitsAndBytesConfig`` arguments and the bitsandbytes layer that replaces ``nn.Linear``."""


def _recipe(fmt: QuantFormat) -> dict[str, Any]:
    if fmt.tool != "bitsandbytes" or fmt.recipe not in RECIPES:
        raise ArtifactError(f"{fmt.id} is not a bitsandbytes format (recipes: {', '.join(RECIPES)})")
    return RECIPES[fmt.recipe]


def config(fmt: QuantFormat, *, compute_dtype: str = "bfloat16"):
    """The ``BitsAndBytesConfig`` of ``fmt``; the vision tower and lm_head are skipped. NF4 computes in
    ``compute_dtype`` (the model's: float32 on a CPU without bf16 arithmetic)."""
    import torch
    from transformers import BitsAndBytesConfig

    kwargs = {k: (getattr(torch, compute_dtype if k == "bnb_4bit_compute_dtype" else v) if k.endswith("_dtype")
                  else v) for k, v in _recipe(fmt)["config"].items()}
    return BitsAndBytesConfig(**kwargs, llm_int8_skip_modules=SKIP)


def summary(model) -> dict[str, Any]:
    """Which linear layers became bitsandbytes layers (the proof the format was applied)."""
    modules = linear_dtypes(model)
    quantized = sum(n for k, n in modules.items() if k.startswith(("Linear8bitLt", "Linear4bit")))
    if quantized == 0:
        raise ArtifactError("bitsandbytes config was given but no layer became Linear8bitLt/Linear4bit")
    return {"tool": "bitsandbytes", "quantized_linear_layers": quantized, "linear_modules": modules}


def _layer(kind: str, linear, weight, device: str):
    import bitsandbytes as bnb
    import torch

    has_bias = linear.bias is not None
    if kind == "Linear8bitLt":
        new = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=has_bias, has_fp16_weights=False,
                                  threshold=6.0)
        new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        new = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=has_bias,
                                compute_dtype=torch.bfloat16, quant_type="nf4")
        new.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
    if has_bias:
        new.bias = torch.nn.Parameter(linear.bias.data.to("cpu"), requires_grad=False)
    return new.to(device)


def quantize_in_place(model, fmt: QuantFormat, device: str) -> dict[str, Any]:
    """Swap the language model's nn.Linear layers for bitsandbytes layers in a model that was not
    loaded with ``from_pretrained`` (shape-only models). Weights are quantized as they move to ``device``."""
    import torch

    from core.quant.torchao_q import language_model

    kind = _recipe(fmt)["layer"]
    lm = language_model(model)
    for parent in list(lm.modules()):
        for cname, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, cname, _layer(kind, child, child.weight.data.to("cpu"), device))
                del child
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return summary(model)


class BitsAndBytesQuantizer(Quantizer):
    """LLM.int8() and NF4: quantized while loading (checkpoints) or in place (shape-only models)."""

    name = "bitsandbytes"

    def load_kwargs(self, fmt: QuantFormat, spec, *, dtype: str = "bfloat16") -> dict[str, Any]:
        return {} if spec.kind == "shape" else {"quantization_config": config(fmt, compute_dtype=dtype)}

    def apply(self, model, fmt: QuantFormat, ctx: QuantContext) -> Applied:
        if ctx.spec.kind != "shape":
            return Applied(model=model, report=summary(model))
        t0 = time.perf_counter()
        report = quantize_in_place(model, fmt, ctx.device.torch_device)
        return Applied(model=model, report=report, quantize_s=time.perf_counter() - t0)
