"""Qwen2.5-VL recipes: the embedded tiny model (built offline from a seed) and shape-only specs.

Shape-only specs carry the real models' dimensions (Qwen2.5-VL-3B/7B, Cosmos-Reason1-7B, which is
a Qwen2.5-VL-7B fine-tune) and are instantiated with random weights straight on the GPU, for
latency and memory work without downloads. They share the tiny tokenizer: token ids only index
the embedding, so speed and memory are those of the real model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from core.models import tokenizer as tok

PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH = 2

TINY_TEXT: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,  # head_dim 128: vLLM's CPU attention rejects small head dims
    "num_key_value_heads": 1,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
TINY_VISION: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_heads": 2,
    "fullatt_block_indexes": [1],
    "window_size": 112,
}

# Real dimensions (from the published config.json files).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-vl-3b": {
        "text": {
            "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
            "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
            "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        },
        "vision": {"out_hidden_size": 2048},
        "description": "Qwen/Qwen2.5-VL-3B-Instruct dimensions, random weights",
    },
    "qwen2.5-vl-7b": {
        "text": {
            "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
            "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
        },
        "vision": {"out_hidden_size": 3584},
        "description": "Qwen/Qwen2.5-VL-7B-Instruct dimensions, random weights",
    },
}
SHAPES["cosmos-reason1-7b"] = copy.deepcopy(SHAPES["qwen2.5-vl-7b"])
SHAPES["cosmos-reason1-7b"]["description"] = (
    "nvidia/Cosmos-Reason1-7B dimensions (a Qwen2.5-VL-7B fine-tune), random weights"
)
REAL_VISION: dict[str, Any] = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
    "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112,
}


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def make_config(text: dict[str, Any], vision: dict[str, Any], token_ids: dict[str, int]):
    """A ``Qwen2_5_VLConfig`` from text/vision overrides and the tokenizer's special ids."""
    from transformers import Qwen2_5_VLConfig

    text = dict(text)
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    # mrope sections (temporal, height, width) sum to head_dim / 2; Qwen uses [16, 24, 24] at 128.
    temporal = head_dim // 8
    height = (head_dim // 2 - temporal) // 2
    mrope = [temporal, height, head_dim // 2 - temporal - height]
    text.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": 1000000.0,
                                        "mrope_section": mrope})
    text["bos_token_id"] = token_ids["bos_token_id"]
    text["eos_token_id"] = token_ids["eos_token_id"]
    text["pad_token_id"] = token_ids["pad_token_id"]
    vision = {**REAL_VISION, **vision}
    vision.setdefault("out_hidden_size", text["hidden_size"])
    vision.update(patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE,
                  temporal_patch_size=TEMPORAL_PATCH, in_channels=3, hidden_act="silu")
    tie = text.pop("tie_word_embeddings", False)
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["image_token_id"],
        video_token_id=token_ids["video_token_id"],
        vision_start_token_id=token_ids["vision_start_token_id"],
        vision_end_token_id=token_ids["vision_end_token_id"],
        tie_word_embeddings=tie,
    )


def make_processor(tokenizer):
    """A Qwen2.5-VL processor over ``tokenizer`` (image + video processors, Qwen defaults)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    common = {"patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": TEMPORAL_PATCH}
    image = Qwen2VLImageProcessor(**common)
    video = Qwen2VLVideoProcessor(**common)
    return Qwen2_5_VLProcessor(
        image_processor=image, tokenizer=tokenizer, video_processor=video,
        chat_template=tok.CHAT_TEMPLATE,
    )


def save_support_files(directory: Path, tokenizer, processor) -> None:
    """Tokenizer, processor and generation config: what AutoProcessor and vLLM read."""
    processor.save_pretrained(directory)
    tok.save_tokenizer(tokenizer, directory)


def build_tiny(directory: Path, *, seed: int = 0, dtype: str = "bfloat16") -> dict[str, Any]:
    """Build the embedded tiny Qwen2.5-VL into ``directory`` (config, weights, tokenizer, processor)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tok.build_tokenizer()
    ids = tok.special_token_ids(tokenizer)
    text = {**TINY_TEXT, "vocab_size": _round_up(len(tokenizer), 128)}
    config = make_config(text, TINY_VISION, ids)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = Qwen2_5_VLForConditionalGeneration(config).to(getattr(torch, dtype))
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"], do_sample=False,
    )
    model.save_pretrained(directory, safe_serialization=True)
    save_support_files(directory, tokenizer, make_processor(tokenizer))
    return {"recipe": "tiny-qwen2.5-vl", "seed": seed, "dtype": dtype,
            "weights_sha256": weights_digest(directory)}


def build_shape(directory: Path, name: str) -> dict[str, Any]:
    """Write a weightless model directory with a real model's config (for random or dummy weights)."""
    spec = SHAPES[name]
    tokenizer = tok.build_tokenizer()
    ids = tok.special_token_ids(tokenizer)
    config = make_config(spec["text"], spec["vision"], ids)
    config.dtype = "bfloat16"
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]  # engines pick the model class from it
    config.save_pretrained(directory)
    gen = {"bos_token_id": ids["bos_token_id"], "eos_token_id": ids["eos_token_id"],
           "pad_token_id": ids["pad_token_id"], "do_sample": False}
    (Path(directory) / "generation_config.json").write_text(json.dumps(gen, indent=2))
    save_support_files(directory, tokenizer, make_processor(tokenizer))
    return {"recipe": f"shape:{name}", "description": spec["description"]}


def weights_digest(directory: Path) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (file-layout free)."""
    import hashlib

    import torch
    from safetensors import safe_open

    h = hashlib.sha256()
    files = sorted(Path(directory).glob("*.safetensors"))
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in sorted(st.keys()):
                t = st.get_tensor(key)
                h.update(key.encode())
                h.update(str(t.dtype).encode())
                h.update(str(tuple(t.shape)).encode())
                h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
