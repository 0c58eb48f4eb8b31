"""InternVL3.5 recipes in the Hugging Face format (transformers' ``InternVLForConditionalGeneration``).

The embedded tiny model is architecture-true (InternViT + pixel-shuffle MLP projector + Qwen3) with
random weights from a seed; the shape-only spec carries InternVL3.5-4B's real dimensions and is
instantiated with random weights on the GPU. Both share an offline tokenizer with InternVL's special
tokens, so token ids only index the embedding: speed and memory are those of the real model.

Video path (transformers 5.17 ``InternVLProcessor``): every frame is resized to one square
``image_size`` tile (no dynamic tiling, no thumbnail) and becomes
``FrameN: <img>`` + ``<IMG_CONTEXT>`` x image_seq_length + ``</img>`` in the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.models import tokenizer as tok
from core.models.qwen_vl import weights_digest

PATCH_SIZE = 14
DOWNSAMPLE_RATIO = 0.5  # pixel shuffle: 2x2 patches -> 1 token (1024 -> 256 per 448 tile)
REAL_IMAGE_SIZE = 448
# 224 keeps the architecture (patch 14, pixel shuffle 0.5; position embeddings are sized from it)
# at 64 tokens per frame: an 8-frame clip runs in well under a second on 2 CPU cores, where 448
# (256 tokens per frame, 1025 ViT tokens) took about 1 s for the vision tower and prefill alone.
TINY_IMAGE_SIZE = 224
# InternVL normalizes with ImageNet statistics (model card's build_transform; transformers'
# convert_internvl_weights_to_hf.py writes the same into the image processor).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
MAX_TILES = 12  # images only: GotOcr2 crop_to_patches, max_patches 12 (InternVL3.5 max_dynamic_patch)

# InternVL's tokens after Qwen's, in the order the HF conversion adds them
# (convert_internvl_weights_to_hf.py: <img>, </img>, <IMG_CONTEXT>, <quad>...</box>; <video> is the
# processor's video placeholder and must be one token for vLLM's InternVL processor).
INTERNVL_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>",
                   "<box>", "</box>", "<video>"]
# The names InternVLProcessor reads from the tokenizer (tokenizer.start_image_token ...).
NAMED_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}

# The chat template transformers' InternVL conversion script writes (no default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{'<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)

TINY_TEXT: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 128,  # Qwen3's head_dim; vLLM's CPU attention rejects small head dims
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
}
TINY_VISION: dict[str, Any] = {
    "hidden_size": 128,  # x4 after pixel shuffle: projector 512 -> 256 -> 256, all multiples of 128
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 256,
}

# InternViT-300M-448px-V2_5, the vision tower of InternVL3.5 up to 30B: 24 layers, hidden 1024,
# 16 heads, MLP 4096, GELU, LayerNorm eps 1e-6, qkv bias, no qk-norm, 448 px / patch 14
# (InternVL3-1B module dump "(qkv): Linear(1024, 3072, bias=True)", "fc1 ... 4096";
# MindSpeed-MM examples/qwen3vl_dev/model_internvit_qwen3.json; transformers' InternVLVisionConfig
# defaults, checkpoint OpenGVLab/InternVL3-1B-hf).
REAL_VISION: dict[str, Any] = {
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
}

SHAPES: dict[str, dict[str, Any]] = {
    "internvl3.5-4b": {
        # Qwen3-4B (InternVL3.5 initializes its LLM from the Qwen3 series, docs/en/internvl3.5/
        # introduction.md): Qwen3-4B config.json hidden 2560, 36 layers, 32 heads, 8 KV heads,
        # head_dim 128, MLP 9728, vocab 151936, rope_theta 1e6, 40960 positions.
        # Untied lm_head: InternVL3.5-4B lists 4.4B language / 4.7B total parameters (introduction.md;
        # 4.732B for the -HF checkpoint); Qwen3-4B with a tied head is 4.02B, untied 4.41B. This
        # config instantiates to 4,732,489,216 parameters.
        "text": {
            "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
            "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
        },
        "vision": REAL_VISION,
        # force_image_size 448, down_sample_ratio 0.5, 8-32 frames: InternVL's
        # internvl_chat_gpt_oss/shell/internvl3_5_qwen3/internvl3_5_4b_sft.sh
        "image_size": REAL_IMAGE_SIZE,
        "description": "OpenGVLab/InternVL3_5-4B-HF dimensions (InternViT-300M + Qwen3-4B), random weights",
    },
}


def image_seq_length(image_size: int) -> int:
    """LLM tokens per tile: (image_size / patch)^2 patches, pixel-shuffled by 0.5 in each axis."""
    side = image_size // PATCH_SIZE
    if image_size % PATCH_SIZE or (side * DOWNSAMPLE_RATIO) % 1:
        raise ValueError(f"image_size {image_size} must be a multiple of {PATCH_SIZE * 2} for pixel shuffle")
    return int((side * DOWNSAMPLE_RATIO) ** 2)


def build_tokenizer(vocab_size: int = 960):
    """The offline byte-level BPE (tokenizer.py's trainer) with Qwen's and InternVL's special tokens."""
    from transformers import AddedToken, Qwen2Tokenizer

    vocab, merges = tok.train_vocab(vocab_size)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        model_max_length=32768, extra_special_tokens=dict(NAMED_TOKENS),
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True) for t in tok.SPECIAL_TOKENS + INTERNVL_TOKENS]}
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def special_token_ids(tokenizer) -> dict[str, int]:
    """The ids a config needs: <IMG_CONTEXT> (image and video frames alike), bos/eos/pad."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tok.SPECIAL_TOKENS + INTERNVL_TOKENS}
    return {
        "image_token_id": ids["<IMG_CONTEXT>"],
        "video_token_id": ids["<video>"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def make_config(text: dict[str, Any], vision: dict[str, Any], *, image_size: int, token_ids: dict[str, int]):
    """An ``InternVLConfig`` (Qwen3 text model, InternViT vision tower) from dimension overrides."""
    from transformers import InternVLConfig

    text = dict(text)
    tie = text.pop("tie_word_embeddings")
    theta = text.pop("rope_theta")
    text.update(model_type="qwen3", hidden_act="silu", attention_bias=False, tie_word_embeddings=tie,
                rope_parameters={"rope_type": "default", "rope_theta": theta},
                bos_token_id=token_ids["bos_token_id"], eos_token_id=token_ids["eos_token_id"],
                pad_token_id=token_ids["pad_token_id"])
    vision = {**vision, "image_size": image_size, "patch_size": PATCH_SIZE, "hidden_act": "gelu",
              "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "attention_bias": True, "use_qk_norm": False,
              "use_absolute_position_embeddings": True}
    return InternVLConfig(
        text_config=text, vision_config=vision, image_token_id=token_ids["image_token_id"],
        image_seq_length=image_seq_length(image_size), downsample_ratio=DOWNSAMPLE_RATIO,
        projector_hidden_act="gelu", vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=tie,
    )


def make_processor(tokenizer, *, image_size: int):
    """An ``InternVLProcessor``: GotOcr2 tiling for images, one square tile per video frame."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    size = {"height": image_size, "width": image_size}
    common = {"size": size, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD}
    image = GotOcr2ImageProcessor(**common, crop_to_patches=True, min_patches=1, max_patches=MAX_TILES)
    video = InternVLVideoProcessor(**common)
    return InternVLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                             image_seq_length=image_seq_length(image_size), chat_template=CHAT_TEMPLATE)


def _generation_config(ids: dict[str, int]) -> dict[str, Any]:
    return {"bos_token_id": ids["bos_token_id"], "eos_token_id": ids["eos_token_id"],
            "pad_token_id": ids["pad_token_id"], "do_sample": False}


def build_tiny_internvl(directory: Path, *, seed: int = 0, dtype: str = "bfloat16") -> dict[str, Any]:
    """Build the embedded tiny InternVL3.5 into ``directory`` (config, weights, tokenizer, processor)."""
    import torch
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    tokenizer = build_tokenizer()
    ids = special_token_ids(tokenizer)
    text = {**TINY_TEXT, "vocab_size": -(-len(tokenizer) // 128) * 128}
    config = make_config(text, TINY_VISION, image_size=TINY_IMAGE_SIZE, token_ids=ids)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = InternVLForConditionalGeneration(config).to(getattr(torch, dtype))
    model.eval()
    model.generation_config = GenerationConfig(**_generation_config(ids))
    model.save_pretrained(directory, safe_serialization=True)
    make_processor(tokenizer, image_size=TINY_IMAGE_SIZE).save_pretrained(directory)
    return {"recipe": "tiny-internvl3.5", "seed": seed, "dtype": dtype,
            "weights_sha256": weights_digest(directory)}


def build_shape_internvl(directory: Path, name: str = "internvl3.5-4b") -> dict[str, Any]:
    """Write a weightless model directory with InternVL3.5's real config (random weights made on GPU)."""
    spec = SHAPES[name]
    tokenizer = build_tokenizer()
    ids = special_token_ids(tokenizer)
    config = make_config(spec["text"], spec["vision"], image_size=spec["image_size"], token_ids=ids)
    config.dtype = "bfloat16"
    config.save_pretrained(directory)
    (Path(directory) / "generation_config.json").write_text(json.dumps(_generation_config(ids), indent=2))
    make_processor(tokenizer, image_size=spec["image_size"]).save_pretrained(directory)
    return {"recipe": f"shape:{name}", "description": spec["description"]}
