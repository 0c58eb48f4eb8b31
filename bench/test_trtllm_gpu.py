"""TensorRT-LLM on a real GPU (not verified here: TensorRT-LLM cannot be installed on this project's
machines). Runs the tiny model end to end when tensorrt_llm and a CUDA GPU are present."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.conftest import make_frames
from core.backends import trtllm
from core.inputs.requests import EngineOptions, Request
from core.inputs.tasks import AnomalyTask
from core.inputs.video import VideoClip
from core.models import registry
from core.plan import device as devices
from core.plan.formats import get_format

# --- the real thing ---------------------------------------------------------------------------------

def _no_trtllm_gpu_reason() -> str:
    from core.plan import capability

    if not capability.installed("tensorrt_llm"):
        return "needs 'tensorrt-llm', which is not installed: " + capability.install_hint("tensorrt_llm")
    return devices.no_gpu_reason() and f"needs a CUDA GPU: {devices.no_gpu_reason()}"


@pytest.mark.trtllm
@pytest.mark.gpu
@pytest.mark.skipif(bool(_no_trtllm_gpu_reason()), reason=_no_trtllm_gpu_reason() or "runnable")
def test_tiny_model_runs_on_tensorrt_llm():
    clip = VideoClip(path=Path("synthetic.mp4"), id="synthetic")
    frames = make_frames(t=4, h=56, w=84)
    req = Request(clip=clip, frames=frames, messages=AnomalyTask().messages(clip),
                  candidates=["Normal", "Anomaly"], max_new_tokens=4)
    b = trtllm.TRTLLMBackend(registry.resolve("tiny"), get_format("bf16"), devices.primary(),
                             EngineOptions(ignore_eos=True))
    with b:
        gen = b.answer(req)
    assert len(gen.token_ids) == 4  # ignore_eos: always max_new_tokens
    assert set(gen.candidate_logprobs) == {"Normal", "Anomaly"}
    assert all(-math.inf < v <= 0.0 for v in gen.candidate_logprobs.values())
    assert gen.video_tokens == 12 and gen.prompt_tokens > gen.video_tokens  # grid 2x4x6 merged 2x2
    assert 0 < gen.timings["prefill_s"] <= gen.timings["generate_s"] <= gen.timings["total_s"]
    assert gen.extra["logprob_source"] == "generation_logits" and gen.extra["greedy_consistent"] is True
