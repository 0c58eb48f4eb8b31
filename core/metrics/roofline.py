"""Roofline floors per cell: how fast could this model possibly run on this GPU?

Measured once per session on the device itself: memory bandwidth (a large device-to-device copy)
and bf16 matrix throughput (a large matmul). Then, per cell,

* decode floor per token = bytes of language-model weights read per step / bandwidth
  (weights as stored: fake-quant formats store bf16, so their floor is bf16's)
* prefill floor = (2 x LM params x prompt tokens + 2 x vision params x patches
  + attention FLOPs) / matrix throughput
* floor = prefill floor + (new tokens - 1) x decode floor, and ratio = measured / floor.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from core.models.shape import ModelShape


@functools.lru_cache(maxsize=8)
def measure_peaks(device_index: int = 0, *, gib: float = 2.0, n: int = 8192) -> dict[str, float]:
    """Achieved bandwidth (bytes/s) and bf16 matmul throughput (FLOP/s) on this GPU, best of 10."""
    import torch

    dev = torch.device(f"cuda:{device_index}")

    def best(fn, reps: int = 10) -> float:
        fn()
        torch.cuda.synchronize(dev)
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        return min(times)

    def copy_bandwidth() -> float:
        src = torch.empty(int(gib * 2**30) // 2, dtype=torch.bfloat16, device=dev)
        dst = torch.empty_like(src)
        return 2 * src.numel() * 2 / best(lambda: dst.copy_(src))  # read + write

    def matmul_flops() -> float:
        a = torch.randn(n, n, dtype=torch.bfloat16, device=dev)
        b = torch.randn(n, n, dtype=torch.bfloat16, device=dev)
        return 2 * n**3 / best(lambda: torch.matmul(a, b))

    peaks = {"bandwidth_Bps": copy_bandwidth(), "matmul_flops": matmul_flops()}
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    return peaks


def floors(shape: ModelShape, *, lm_weight_bytes: float, prompt_tokens: int, video_patches: int,
           new_tokens: int, peaks: dict[str, float]) -> dict[str, float]:
    """The physical floors of one cell (seconds)."""
    bw, fl = peaks["bandwidth_Bps"], peaks["matmul_flops"]
    head_bytes = shape.lm_head_params * 2
    decode_step = (lm_weight_bytes + head_bytes) / bw
    attn = 4 * shape.layers * prompt_tokens**2 * shape.heads * shape.head_dim / 2  # causal
    prefill_flops = (2 * (shape.lm_params + shape.lm_head_params / max(prompt_tokens, 1)) * prompt_tokens
                     + 2 * shape.vision_params * video_patches + attn)
    prefill = prefill_flops / fl
    return {"prefill_floor_s": prefill, "decode_floor_per_token_s": decode_step,
            "floor_s": prefill + max(new_tokens - 1, 0) * decode_step, "prefill_flops": prefill_flops,
            "bandwidth_GBps": bw / 1e9, "matmul_TFLOPs": fl / 1e12}


def annotate(record: Mapping[str, Any], *, shape: ModelShape, lm_weight_bytes: float,
             peaks: dict[str, float]) -> dict[str, Any]:
    """The ``roofline`` of a finished cell record: floors and measured/floor ratios."""
    tok = record["tokens"]
    patches = tok["video"] * 4  # 2x2 spatial merge: each video token covers four patches
    f: dict[str, Any] = floors(shape, lm_weight_bytes=lm_weight_bytes, prompt_tokens=tok["prompt"],
                               video_patches=patches, new_tokens=tok["new"], peaks=peaks)
    t = record["timings"]
    f["ratio"] = t["generate_s"] / f["floor_s"] if f["floor_s"] else None
    f["prefill_ratio"] = t["prefill_s"] / f["prefill_floor_s"] if f["prefill_floor_s"] else None
    per_tok = t.get("decode_per_token_s")
    f["decode_ratio"] = per_tok / f["decode_floor_per_token_s"] if per_tok else None
    return f
