"""bitsandbytes through transformers' ``BitsAndBytesConfig`` (language model only)."""

from __future__ import annotations

from typing import Any

from core.formats import QuantFormat
from core.quant.inspect import linear_dtypes

# transformers 5 matches these as regexes anchored at the module name's start (4.x: substrings),
# so each vision part is listed both ways.
_VISION_PARTS = ["visual", "vision_tower", "vision_model", "multi_modal_projector", "mlp1"]
SKIP = [*_VISION_PARTS, *(f".*{p}" for p in _VISION_PARTS), "lm_head"]


def config(fmt: QuantFormat):
    """The BitsAndBytesConfig for ``bnb_int8`` or ``bnb_nf4``; the vision tower and lm_head are skipped."""
    import torch
    from transformers import BitsAndBytesConfig

    if fmt.name == "bnb_int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=SKIP)
    if fmt.name == "bnb_nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=SKIP)
    raise ValueError(f"{fmt.name} is not a bitsandbytes format")


def summary(model) -> dict[str, Any]:
    """Which linear layers became bitsandbytes layers (the proof the format was applied)."""
    modules = linear_dtypes(model)
    quantized = sum(n for k, n in modules.items() if k.startswith(("Linear8bitLt", "Linear4bit")))
    if quantized == 0:
        from core.errors import ArtifactError

        raise ArtifactError("bitsandbytes config was given but no layer became Linear8bitLt/Linear4bit")
    return {"quantized_linear_layers": quantized, "linear_modules": modules}


def quantize_in_place(model, fmt: QuantFormat, device: str) -> dict[str, Any]:
    """Swap the language model's nn.Linear layers for bitsandbytes layers in a model that was not
    loaded with ``from_pretrained`` (shape-only models: random weights made on the device, which
    ``BitsAndBytesConfig`` never sees). Weights are quantized as they move to ``device``."""
    import bitsandbytes as bnb
    import torch

    from core.quant.torchao_q import language_model

    lm = language_model(model)
    for parent in list(lm.modules()):
        for cname, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            w = child.weight.data.to("cpu")
            has_bias = child.bias is not None
            if fmt.name == "bnb_int8":
                new = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=has_bias,
                                          has_fp16_weights=False, threshold=6.0)
                new.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
            elif fmt.name == "bnb_nf4":
                new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=has_bias,
                                        compute_dtype=torch.bfloat16, quant_type="nf4")
                new.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
            else:
                raise ValueError(f"{fmt.name} is not a bitsandbytes format")
            if has_bias:
                new.bias = torch.nn.Parameter(child.bias.data.to("cpu"), requires_grad=False)
            setattr(parent, cname, new.to(device))
            del child
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return summary(model)
