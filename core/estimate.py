"""A memory estimate before loading: weights as the backend will store them, plus the KV cache
and the vision encoder's activations for the prompt length. Printed by ``vqbench run`` so a user
sees that a cell will not fit before waiting for it to fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.formats import QuantFormat
from core.models.shape import ModelShape


def count_params(config_dir: Path) -> dict[str, int]:
    """Parameters of the language-model linears and of everything else, from config (meta device)."""
    import torch
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(config_dir, local_files_only=True)
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(cfg)
    lm_linear = other = 0
    for name, p in model.named_parameters():
        if ".language_model." in f".{name}" and name.endswith(".weight") and p.dim() == 2 and "embed" not in name:
            lm_linear += p.numel()
        else:
            other += p.numel()
    return {"lm_linear": lm_linear, "other": other}


def estimate(config_dir: Path, fmt: QuantFormat, *, backend: str, prompt_tokens: int,
             max_new_tokens: int = 7) -> dict[str, Any]:
    """Estimated device bytes: weights, KV cache, and a rough activation peak."""
    shape = ModelShape.from_dir(config_dir)
    params = count_params(config_dir)
    per = fmt.stored_bytes_per_weight(backend)
    fake = fmt.backends.get(backend) is not None and fmt.backends[backend].how == "fake-quant"
    weights = params["lm_linear"] * per + params["other"] * 2.0
    kv = shape.kv_bytes_per_token(1 if fmt.kv_cache == "fp8" else 2) * (prompt_tokens + max_new_tokens)
    activations = prompt_tokens * shape.hidden * 2 * 8 + prompt_tokens * shape.intermediate * 2 * 3
    total = weights + kv + activations
    return {"weights_bytes": int(weights), "kv_cache_bytes": int(kv), "activation_bytes": int(activations),
            "total_bytes": int(total), "fake_quant_no_savings": fake, "params": params}
