"""An offline byte-level BPE tokenizer with the Qwen special tokens and chat template.

Trained deterministically on a small built-in corpus, so the embedded model needs no hub access.
The special tokens and the chat template follow Qwen2.5-VL's, so prompts built for the real
models build the same way for the tiny one.
"""

from __future__ import annotations

import json
from pathlib import Path

# Qwen2.5-VL's special tokens, in Qwen's order (the real ids differ; models read them from config).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL's chat template, reduced to what video/image/text prompts use.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_CORPUS_LINES = [
    "You are a helpful assistant.",
    "You are watching a video from a car's dashboard camera.",
    "Is the traffic in this video Normal or is there an Anomaly?",
    "Answer with exactly one word: Normal or Anomaly.",
    "Normal", "Anomaly", "Normal.", "Anomaly.", "The answer is Normal.", "The answer is Anomaly.",
    "Answer with the letter of the correct option: A, B, C or D.",
    "A", "B", "C", "D", "A.", "B.", "C.", "D.", "The answer is A.", "The answer is B.",
    "Question: What is the vehicle in front doing? Options:",
    "A. turning left B. going straight C. stopping D. reversing",
    "Đáp án: B", "答案是B", "The correct option is C.",
    "A pedestrian crosses the road in front of the car.",
    "A vehicle drives the wrong way down the lane.",
    "Two cars collide at the intersection.",
    "Cars drive along their lanes at a steady speed.",
    "a road, a lane, a car, a truck, a bicycle, a dog, a person, traffic light, red, green",
]


def _corpus() -> list[str]:
    # Repetition weights the answer words so they become single tokens.
    lines = list(_CORPUS_LINES) * 4
    lines += ["Normal", "Anomaly", "Normal or Anomaly"] * 40
    return lines


def train_vocab(vocab_size: int = 960) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train the byte-level BPE (deterministic) and return ``(vocab, merges)`` without specials."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_tokenizer(vocab_size: int = 960):
    """A transformers ``Qwen2Tokenizer`` with the Qwen special tokens and the chat template."""
    from transformers import AddedToken, Qwen2Tokenizer

    vocab, merges = train_vocab(vocab_size)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True) for t in SPECIAL_TOKENS]}
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def special_token_ids(tokenizer) -> dict[str, int]:
    """The ids of the vision/chat special tokens, as a model config needs them."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def save_tokenizer(tokenizer, directory: Path) -> None:
    """Save with the chat template also as a standalone file (what vLLM and TRT-LLM read)."""
    tokenizer.save_pretrained(directory)
    (Path(directory) / "chat_template.jinja").write_text(CHAT_TEMPLATE)
