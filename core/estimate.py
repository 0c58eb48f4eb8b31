"""A memory estimate before loading: weights as the backend will store them, plus the KV cache
and the vision encoder's activations for the prompt length. Printed by ``vqbench run`` so a user
sees that a cell will not fit before waiting for it to fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.formats import QuantFormat

# Bytes per language-model linear weight as each backend stores it (fake-quant stores bf16).
LM_BYTES_PER_WEIGHT = {"bf16": 2.0, "fp8": 1.0, "nvfp4": 0.5625, "int8_sq": 1.0, "int4_awq": 0.53, "w4a8_awq": 0.53,
             "bnb_int8": 1.0, "bnb_nf4": 0.53, "fp8_dynamic": 1.0, "int8_weight_only": 1.0,
             "int4_weight_only": 0.53}


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
    cfg = json.loads((Path(config_dir) / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    params = count_params(config_dir)
    fake = backend == "hf" and fmt.tool == "modelopt"
    per = 2.0 if fake else LM_BYTES_PER_WEIGHT.get(fmt.name, 2.0)
    weights = params["lm_linear"] * per + params["other"] * 2.0
    layers = text.get("num_hidden_layers", 0)
    kv_heads = text.get("num_key_value_heads", text.get("num_attention_heads", 1))
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    kv_bytes = 1 if fmt.kv_cache == "fp8" else 2
    kv = 2 * layers * kv_heads * head_dim * (prompt_tokens + max_new_tokens) * kv_bytes
    activations = prompt_tokens * text["hidden_size"] * 2 * 8 + prompt_tokens * text.get("intermediate_size", 0) * 2 * 3
    total = weights + kv + activations
    return {"weights_bytes": int(weights), "kv_cache_bytes": int(kv), "activation_bytes": int(activations),
            "total_bytes": int(total), "fake_quant_no_savings": fake, "params": params}
