"""What went into a model, fingerprinted: the decoded frames, the processor's outputs, and the
decoder and processor versions that made them. Goldens store it, so a failing golden first says
whether its inputs changed (a new FFmpeg, a new processor) or only the model's outputs did."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

HASH_CHARS = 16
"""Hex characters kept of each SHA-256 (64 bits: collisions are not a concern for a diff)."""


def pixels_sha256(array) -> str:
    """SHA-256 of decoded frames (uint8 T x H x W x 3) with their shape, truncated."""
    h = hashlib.sha256(f"{array.dtype}{tuple(array.shape)}".encode())
    import numpy as np

    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:HASH_CHARS]


def processor_sha256(inputs: Mapping[str, Any]) -> str:
    """SHA-256 of a processor's outputs (every tensor's name, dtype, shape and bytes), truncated."""
    import torch

    h = hashlib.sha256()
    for name in sorted(inputs):
        value = inputs[name]
        if not hasattr(value, "detach"):
            continue
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:HASH_CHARS]


@functools.lru_cache(maxsize=1)
def decoder_versions() -> dict[str, str]:
    """PyAV's version and the FFmpeg libraries it runs on (the decoder of ``core.inputs.video``)."""
    try:
        import av
    except ImportError:
        return {}
    out = {"av": av.__version__}
    if getattr(av, "ffmpeg_version_info", None):
        out["ffmpeg"] = str(av.ffmpeg_version_info)
    out.update({lib: ".".join(map(str, v)) for lib, v in sorted(getattr(av, "library_versions", {}).items())
                if lib in ("libavcodec", "libavformat", "libswscale", "libavutil")})
    return out


def processor_versions(processor) -> dict[str, str]:
    """The processor's classes and the transformers version that built its outputs."""
    from core.plan.capability import version

    out = {"class": type(processor).__name__, "transformers": version("transformers") or "?"}
    for part in ("video_processor", "image_processor"):
        obj = getattr(processor, part, None)
        if obj is not None:
            out[part] = type(obj).__name__
    return out
