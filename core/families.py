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
        kwargs: dict[str, Any] = {}
        if hasattr(getattr(processor, "video_processor", None), "cap_pixels_per_frame"):
            kwargs["cap_pixels_per_frame"] = False  # frames are sized already; silences a 5.17+ notice
        return processor(
            text=[self.prompt(processor, request)],
            videos=[request.frames.array],
            video_metadata=[request.frames.metadata()],
            do_sample_frames=False,
            do_resize=False,
            return_tensors="pt",
            **kwargs,
        )

    def video_token_id(self, model) -> int:
        """The placeholder id the processor repeats once per video token (HF)."""
        return model.config.video_token_id

    def vllm_video_token_id(self, tokenizer) -> int:
        """The placeholder id in vLLM's processed prompt."""
        return tokenizer.convert_tokens_to_ids("<|video_pad|>")

    def vllm_inputs(self, processor, request: Request) -> dict[str, Any]:
        """vLLM prompt dict: frames (T, H, W, 3 uint8) with the metadata its processor needs."""
        return {
            "prompt": self.prompt(processor, request),
            "multi_modal_data": {"video": [(request.frames.array, request.frames.metadata())]},
            "mm_processor_kwargs": {"do_sample_frames": False, "do_resize": False},
        }


class InternVL:
    """InternVL3.5 in the HF format (``InternVLForConditionalGeneration``): one tile per video frame.

    transformers' InternVL video processor resizes every (already sampled) frame to one square
    ``image_size`` tile (448 for the real models; no dynamic tiling, no thumbnail: the seed's
    ``--max-num`` tiles per frame would need frames passed as images) and the processor expands the
    prompt's ``<video>`` into ``FrameN: <img>`` + ``<IMG_CONTEXT>`` x 256 + ``</img>`` per frame.
    Video frames therefore use the image token: there is no ``config.video_token_id``.
    """

    name = "internvl"

    def prompt(self, processor, request: Request) -> str:
        return processor.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    def hf_inputs(self, processor, request: Request) -> dict[str, Any]:
        """Processor outputs for HF ``generate``: all given frames kept (no resampling), one tile each."""
        return processor(
            text=[self.prompt(processor, request)],
            videos=[request.frames.array],
            video_metadata=[request.frames.metadata()],
            do_sample_frames=False,
            return_tensors="pt",
        )

    def video_token_id(self, model) -> int:
        """The token that video frames occupy in HF ``input_ids``: ``<IMG_CONTEXT>``."""
        return int(model.config.image_token_id)

    def vllm_video_token_id(self, tokenizer) -> int:
        """The token video frames occupy in vLLM's prompt ids: ``<video>`` (see ``vllm_inputs``)."""
        return int(tokenizer.convert_tokens_to_ids(getattr(tokenizer, "video_token", None) or "<video>"))

    def vllm_inputs(self, processor, request: Request) -> dict[str, Any]:
        """vLLM prompt dict; checked against HF on CPU by ``bench/test_parity.py`` (not yet run on a GPU).

        vLLM serves ``InternVLForConditionalGeneration`` checkpoints with its ``interns1`` model: it
        finds ``<video>`` in the prompt, runs the HF video processor (resized to the image
        processor's size) and expands each frame to ``<img>`` + ``<video>`` x 256 + ``</img>``, so
        there the frames occupy the ``<video>`` token. Original-format ``InternVLChatModel``
        checkpoints (trust_remote_code) take ``<image>`` placeholders instead and are not covered.
        """
        return {
            "prompt": self.prompt(processor, request),
            "multi_modal_data": {"video": [(request.frames.array, request.frames.metadata())]},
            "mm_processor_kwargs": {"do_sample_frames": False},
        }


FAMILIES: dict[str, Any] = {"qwen2_5_vl": QwenVL(), "internvl": InternVL()}


def family(name: str):
    """The input builder of a model family."""
    if name not in FAMILIES:
        raise unknown_name("model family", name, FAMILIES)
    return FAMILIES[name]
