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
