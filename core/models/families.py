"""Model-family specifics: the prompt, the processor arguments, the video token and the token counts
of a family, which every engine's input builder reads.

Only prompt and input building differ between families; loading, timing and scoring are shared.
``Family`` holds what every family does alike; a family overrides only its differences. How a request
becomes one engine's inputs lives with that engine (``core.backends.vllm.prompt_inputs``; HF's
processor call is ``hf_inputs`` here because the suite's fingerprints and vision drift read it too), so
adding an engine adds nothing to the families.
"""

from __future__ import annotations

from typing import Any, ClassVar

from core.base.errors import unknown_name
from core.inputs.requests import Request


class Family:
    """A model family: the chat prompt, processor arguments, HF processor inputs for a request."""

    name: ClassVar[str]
    processor_kwargs: ClassVar[dict[str, Any]] = {"do_sample_frames": False}
    """Processor arguments for frames that arrive sampled (and, for some families, sized): every engine
    hands them to the family's processor, so no engine samples or resizes the suite's frames again."""

    def prompt(self, processor, request: Request) -> str:
        return processor.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    def _hf_extra(self, processor) -> dict[str, Any]:
        return {}

    def hf_inputs(self, processor, request: Request) -> dict[str, Any]:
        """Processor outputs for HF ``generate``: the given frames, no resampling."""
        return processor(text=[self.prompt(processor, request)], videos=[request.frames.array],
                         video_metadata=[request.frames.metadata()], return_tensors="pt",
                         **self.processor_kwargs, **self._hf_extra(processor))

    def video_token_id(self, model) -> int:
        """The token video frames occupy in HF ``input_ids``."""
        raise NotImplementedError

    def video_tokens(self, config: dict[str, Any], frames: int, height: int, width: int) -> int:
        """Prompt tokens ``frames`` sampled frames of ``height`` x ``width`` become (for the memory and
        context budget before anything is decoded)."""
        raise NotImplementedError

    def vision_patches(self, config: dict[str, Any], frames: int, height: int, width: int) -> int:
        """Patches the vision tower processes for those frames (its activations scale with these)."""
        raise NotImplementedError

    def prompt_video_token_id(self, tokenizer) -> int:
        """The token video frames occupy in the prompt ids an engine's own processing writes (vLLM's)."""
        raise NotImplementedError

    def vision_embeddings(self, model, inputs) -> tuple[Any, list[int]]:
        """The vision tower's output embeddings (tokens, dim) for HF ``inputs`` and the tokens of
        each frame group, in order."""
        raise NotImplementedError


class QwenVL(Family):
    """Qwen2.5-VL (and Cosmos-Reason1): one video placeholder expanded by the processor. Frames
    arrive sampled and sized on the 28-pixel grid, so the processor neither resamples nor resizes."""

    name = "qwen2_5_vl"
    processor_kwargs = {"do_sample_frames": False, "do_resize": False}

    def _hf_extra(self, processor) -> dict[str, Any]:
        if hasattr(getattr(processor, "video_processor", None), "cap_pixels_per_frame"):
            return {"cap_pixels_per_frame": False}  # frames are sized already; silences a 5.17+ notice
        return {}

    def video_token_id(self, model) -> int:
        """The placeholder id the processor repeats once per video token (HF)."""
        return model.config.video_token_id

    def prompt_video_token_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids("<|video_pad|>")

    def vision_embeddings(self, model, inputs) -> tuple[Any, list[int]]:
        """The merged video embeddings the language model receives; a group is one temporal patch
        (``temporal_patch_size`` frames): grid h x w patches merged 2x2 (``spatial_merge_size``)."""
        grid = inputs["video_grid_thw"]
        out = model.model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=grid)
        emb = out.pooler_output[0] if hasattr(out, "pooler_output") else out[0]
        t, h, w = (int(x) for x in grid[0])
        merge = model.model.visual.spatial_merge_size ** 2
        return emb, [h * w // merge] * t

    @staticmethod
    def _grid(config: dict[str, Any]) -> tuple[int, int, int]:
        vis = config.get("vision_config") or {}
        return (int(vis.get("patch_size") or 14), int(vis.get("spatial_merge_size") or 2),
                int(vis.get("temporal_patch_size") or 2))

    def vision_patches(self, config: dict[str, Any], frames: int, height: int, width: int) -> int:
        """Qwen2-VL's grid: ``temporal_patch_size`` frames x ``patch_size``-pixel squares."""
        patch, _, temporal = self._grid(config)
        return -(-frames // temporal) * (height // patch) * (width // patch)

    def video_tokens(self, config: dict[str, Any], frames: int, height: int, width: int) -> int:
        """One token per ``spatial_merge_size``^2 patches: 480 frames at 252x252 -> 240 x 9 x 9 = 19440."""
        _, merge, _ = self._grid(config)
        return self.vision_patches(config, frames, height, width) // (merge * merge)


class InternVL(Family):
    """InternVL3.5 in the HF format (``InternVLForConditionalGeneration``): one tile per video frame.

    transformers' InternVL video processor resizes every (already sampled) frame to one square
    ``image_size`` tile (448 for the real models; no dynamic tiling, no thumbnail: the seed's
    ``--max-num`` tiles per frame would need frames passed as images) and the processor expands the
    prompt's ``<video>`` into ``FrameN: <img>`` + ``<IMG_CONTEXT>`` x 256 + ``</img>`` per frame.
    Video frames therefore use the image token in HF: there is no ``config.video_token_id``.

    vLLM serves ``InternVLForConditionalGeneration`` checkpoints with its ``interns1`` model: it
    finds ``<video>`` in the prompt, runs the HF video processor (resized to the image processor's
    size) and expands each frame to ``<img>`` + ``<video>`` x 256 + ``</img>``, so there the frames
    occupy the ``<video>`` token (checked against HF on CPU by ``bench/test_parity.py``).
    Original-format ``InternVLChatModel`` checkpoints (trust_remote_code) take ``<image>``
    placeholders instead and are not covered.
    """

    name = "internvl"

    def video_token_id(self, model) -> int:
        return int(model.config.image_token_id)

    def prompt_video_token_id(self, tokenizer) -> int:
        return int(tokenizer.convert_tokens_to_ids(getattr(tokenizer, "video_token", None) or "<video>"))

    def vision_embeddings(self, model, inputs) -> tuple[Any, list[int]]:
        """The projected image features of every frame tile; a group is one frame."""
        pixels = inputs.get("pixel_values_videos", inputs.get("pixel_values"))
        out = model.model.get_image_features(pixel_values=pixels)
        emb = out.pooler_output if hasattr(out, "pooler_output") else out
        if isinstance(emb, (list, tuple)):
            emb = emb[0]
        frames = emb.shape[0] if emb.dim() == 3 else 1
        emb = emb.reshape(-1, emb.shape[-1])
        return emb, [emb.shape[0] // frames] * frames

    FRAME_TEXT_TOKENS = 8
    """``FrameN: <img>`` ... ``</img>`` around each frame's image tokens."""

    @staticmethod
    def _tile(config: dict[str, Any]) -> tuple[int, int, float]:
        vis = config.get("vision_config") or {}
        size, patch = vis.get("image_size") or 448, vis.get("patch_size") or 14
        size = size[0] if isinstance(size, (list, tuple)) else size
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        return int(size), int(patch), float(config.get("downsample_ratio") or 0.5)

    def vision_patches(self, config: dict[str, Any], frames: int, height: int, width: int) -> int:
        """Every frame is resized to one ``image_size`` tile, whatever its size."""
        size, patch, _ = self._tile(config)
        return frames * (size // patch) ** 2

    def video_tokens(self, config: dict[str, Any], frames: int, height: int, width: int) -> int:
        size, patch, ratio = self._tile(config)
        return frames * (int((size // patch) ** 2 * ratio * ratio) + self.FRAME_TEXT_TOKENS)


FAMILIES: dict[str, Family] = {f.name: f for f in (QwenVL(), InternVL())}


def family(name: str) -> Family:
    """The input builder of a model family."""
    if name not in FAMILIES:
        raise unknown_name("model family", name, FAMILIES)
    return FAMILIES[name]
