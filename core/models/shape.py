"""A model's dimensions, parsed once from its ``config.json`` (Qwen2.5-VL or InternVL): what the
roofline floors, the memory estimate and the vLLM KV-cache sizing compute with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """Parameter counts and attention shape of a VLM's language model and vision tower."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_position_embeddings: int | None
    vision_params: int
    """Linear parameters of the vision tower's blocks (attention + MLP), from its config."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        text = config.get("text_config", config)
        heads = text["num_attention_heads"]
        vis = config.get("vision_config", {}) or {}
        vh = vis.get("hidden_size", 0)
        depth = vis.get("depth", vis.get("num_hidden_layers", 0))
        return cls(layers=text["num_hidden_layers"], hidden=text["hidden_size"],
                   intermediate=text.get("intermediate_size", 0), heads=heads,
                   kv_heads=text.get("num_key_value_heads", heads),
                   head_dim=text.get("head_dim") or text["hidden_size"] // heads, vocab=text["vocab_size"],
                   max_position_embeddings=text.get("max_position_embeddings") or config.get("max_position_embeddings"),
                   vision_params=depth * (4 * vh * vh + 3 * vh * vis.get("intermediate_size", 0)))

    @classmethod
    def from_dir(cls, directory: Path | str) -> ModelShape:
        return cls.from_config(json.loads((Path(directory) / "config.json").read_text()))

    @property
    def lm_params(self) -> int:
        """Parameters of the language model's linear layers (attention and MLP), embeddings excluded."""
        h, hd = self.hidden, self.head_dim
        per_layer = h * self.heads * hd + 2 * h * self.kv_heads * hd + self.heads * hd * h + 3 * h * self.intermediate
        return self.layers * per_layer

    @property
    def lm_head_params(self) -> int:
        return self.hidden * self.vocab

    def kv_bytes_per_token(self, dtype_bytes: float = 2.0) -> float:
        """KV-cache bytes one token takes over all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes
