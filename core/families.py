"""Model-family specifics: how a request becomes each engine's inputs.

Only prompt and input building differ between families; loading, timing and scoring are shared.
"""

from __future__ import annotations

from typing import Any

from core.backends.base import Request
from core.errors import unknown_name


class QwenVL:
    """Qwen2.5-VL (and Cosmos-Reason1): one video placeholder expanded by the processor."""

    name = "qwen2_5_vl"

    def prompt(self, processor, request: Request) -> str:
        return processor.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    def hf_inputs(self, processor, request: Request) -> dict[str, Any]:
        """Processor outputs for HF ``generate``: frames are already sampled and sized on the grid."""
        return processor(
            text=[self.prompt(processor, request)],
            videos=[request.frames.array],
            video_metadata=[request.frames.metadata()],
            do_sample_frames=False,
            do_resize=False,
            return_tensors="pt",
        )

    def vllm_inputs(self, processor, request: Request) -> dict[str, Any]:
        """vLLM prompt dict: frames (T, H, W, 3 uint8) with the metadata its processor needs."""
        return {
            "prompt": self.prompt(processor, request),
            "multi_modal_data": {"video": [(request.frames.array, request.frames.metadata())]},
            "mm_processor_kwargs": {"do_sample_frames": False, "do_resize": False},
        }


FAMILIES: dict[str, Any] = {"qwen2_5_vl": QwenVL()}


def family(name: str):
    """The input builder of a model family."""
    if name not in FAMILIES:
        raise unknown_name("model family", name, FAMILIES)
    return FAMILIES[name]
