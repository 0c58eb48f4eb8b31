"""Roofline floors: the arithmetic on a known shape (the measurement itself runs on GPUs only)."""

from __future__ import annotations

import pytest

from core.metrics.roofline import floors
from core.models.shape import ModelShape

pytestmark = pytest.mark.cpu

# Qwen2.5-VL-7B's text and vision dimensions (config.json)
CFG_7B = {"text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                          "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064},
          "vision_config": {"hidden_size": 1280, "intermediate_size": 3420, "depth": 32}}


def test_7b_language_model_params():
    s = ModelShape.from_config(CFG_7B)
    # per layer: q 3584^2, k/v 2 x 3584x512, o 3584^2, mlp 3 x 3584x18944 -> 6.53e9 over 28 layers
    assert s.lm_params == pytest.approx(6.53e9, rel=0.01)
    assert s.head_dim == 128


def test_floors_match_the_environment_notes():
    # ENVIRONMENT.md: 7B bf16 at 648 video tokens on an H200 has a roofline of roughly 40 ms
    # (15 GB of weights per decode step at ~4.3 TB/s; ~11 TFLOP of prefill at ~790 TFLOP/s).
    s = ModelShape.from_config(CFG_7B)
    f = floors(s, lm_weight_bytes=s.lm_params * 2, prompt_tokens=700, video_patches=648 * 4, new_tokens=7,
               peaks={"bandwidth_Bps": 4.3e12, "matmul_flops": 790e12})
    assert f["decode_floor_per_token_s"] == pytest.approx(0.0032, rel=0.1)
    assert 0.015 < f["prefill_floor_s"] < 0.03
    assert 0.03 < f["floor_s"] < 0.05


def test_half_the_weight_bytes_halves_the_decode_floor():
    s = ModelShape.from_config(CFG_7B)
    kw = dict(prompt_tokens=700, video_patches=2592, new_tokens=7, peaks={"bandwidth_Bps": 3e12, "matmul_flops": 5e14})
    bf16 = floors(s, lm_weight_bytes=s.lm_params * 2, **kw)
    fp8 = floors(s, lm_weight_bytes=s.lm_params * 1, **kw)
    head = s.lm_head_params * 2 / 3e12
    assert (fp8["decode_floor_per_token_s"] - head) == pytest.approx((bf16["decode_floor_per_token_s"] - head) / 2)
