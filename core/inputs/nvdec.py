"""GPU video decoding (NVDEC) through NVIDIA's PyNvVideoCodec, opt-in with ``--decoder nvdec``.

Why PyNvVideoCodec and not torchcodec's CUDA decoder: its wheel on PyPI is self-contained (its own
demuxer libraries, NVDEC loaded from the driver), while torchcodec's CUDA build comes from another
package index and needs FFmpeg's shared libraries installed system-wide, which the GPU image lacks.

Same sampling as the CPU path (``core.inputs.video``: frame count from the container, the same indices,
the same target size); frames are decoded to RGB on the GPU, resized there (bicubic, antialiased)
and copied back as uint8. Pixels differ slightly from PyAV's (another YUV->RGB conversion and
resize); ``python -m core.tools.perf nvdec`` measures by how much. A clip NVDEC cannot take
(a raw elementary stream, a codec or size NVDEC does not support) is decoded by PyAV instead and
says so in ``Frames.decoder_note``.

Written against PyNvVideoCodec 2.2's documented ``SimpleDecoder`` API (``get_stream_metadata``,
``get_batch_frames_by_index``, ``reconfigure_decoder``, ``OutputColorType.RGB``, frames exported
through DLPack); not run on this project's CPU machines.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.base.errors import VideoError
from core.inputs import video
from core.inputs.sampling import SamplingSpec

MAX_SIZE = 4096
"""Largest frame side the cached decoder is set up for (reconfiguring to a larger one would fail)."""

_STATE: dict[str, Any] = {"decoder": None}


def check() -> str:
    """'' when NVDEC decodes here, else why not: torch or a GPU missing, PyNvVideoCodec missing, or
    the driver's NVDEC library missing (a test clip is decoded to find out)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError:
        return "PyNvVideoCodec is not installed (pip install pynvvideocodec)"
    except Exception as exc:  # noqa: BLE001 - a broken install is a reason, not a crash
        return f"PyNvVideoCodec failed to import: {type(exc).__name__}: {exc}"
    from core.inputs import synth

    with tempfile.TemporaryDirectory() as tmp:
        clip = synth.encode(synth.render_clip("normal", 0, width=160, height=128, seconds=0.5), Path(tmp) / "c.mp4")
        try:
            _decode(clip, SamplingSpec(nframes=2, resolution=(56, 56)), time.perf_counter(), "auto")
        except Exception as exc:  # noqa: BLE001
            text = f"{type(exc).__name__}: {exc}"
            if "nvcuvid" in text.lower():
                text += (" (the driver's NVDEC library libnvcuvid.so.1 is not in this container: it is mounted "
                         "only when NVIDIA_DRIVER_CAPABILITIES includes 'video')")
            return f"NVDEC could not decode a test clip: {text}"
    return ""


SEEK_COST_FRAMES = 30
"""Frames a seek costs on average (decoding from the keyframe before it: half of a one-second GOP at
60 fps). Random access pays it per sampled frame; decoding in order pays every frame once."""


def load_frames(path: Path | str, spec: SamplingSpec, *, threads: int = 0, fallback: bool = True,
                access: str = "auto") -> video.Frames:
    """Frames of ``path`` decoded by NVDEC; with ``fallback``, a clip NVDEC cannot decode is decoded
    by PyAV (its note says why), and a broken file fails with PyAV's ``VideoError``.

    ``access``: 'sequential' decodes every frame up to the last sampled one (as the PyAV path does);
    'random' seeks to each sampled frame; 'auto' seeks only when the sampled frames are sparse
    (fewer than one per ``SEEK_COST_FRAMES`` frames, e.g. 16 frames of a 10-minute video)."""
    path = Path(path)
    t0 = time.perf_counter()
    try:
        return _decode(path, spec, t0, access)
    except Exception as exc:  # NVDEC's refusal of one clip is no reason to lose it
        if not fallback:
            raise
        frames = video.load_frames(path, spec, threads=threads)
        return replace(frames, decoder_note=f"nvdec could not decode it ({type(exc).__name__}: {exc}); "
                                            "decoded by pyav", decode_s=time.perf_counter() - t0)


def _decoder(path: Path):
    """One decoder per process, reconfigured for each file (what PyNvVideoCodec's samples do)."""
    import PyNvVideoCodec as nvc

    dec = _STATE["decoder"]
    if dec is None:
        dec = nvc.SimpleDecoder(str(path), gpu_id=0, use_device_memory=True, max_width=MAX_SIZE,
                                max_height=MAX_SIZE, output_color_type=nvc.OutputColorType.RGB)
        _STATE["decoder"] = dec
    else:
        dec.reconfigure_decoder(str(path))
    return dec


def _rotation(path: Path) -> int:
    """Display rotation from the first frame (PyAV exposes it per frame only)."""
    container = video._open(path)
    try:
        stream = video._video_stream(container)
        for frame in container.decode(stream):
            return video._rotation(stream, frame)
    finally:
        container.close()
    return 0


def _decode(path: Path, spec: SamplingSpec, t0: float, access: str) -> video.Frames:
    import torch
    import torch.nn.functional as F

    if not path.is_file():
        raise VideoError(path, "file not found")
    rotation = _rotation(path)
    dec = _decoder(path)
    meta = dec.get_stream_metadata()
    total = len(dec)
    if total < 1:
        raise VideoError(path, "NVDEC found no frames (a raw elementary stream?)")
    fps = float(meta.average_fps or 0) or 30.0
    indices = video._plan(spec, total, fps, path)
    h, w = int(meta.height), int(meta.width)
    display = (w, h) if rotation in (90, 270) else (h, w)
    size = video._target_size(spec, display, len(indices), path)
    wanted = sorted(set(indices))

    def small(frame) -> torch.Tensor:
        """One decoded frame (H x W x 3 uint8 on the GPU, DLPack) rotated and resized: 3 x h x w float."""
        rgb = torch.from_dlpack(frame)
        if rgb.dim() != 3 or rgb.shape[-1] != 3:
            raise VideoError(path, f"NVDEC returned a frame of shape {tuple(rgb.shape)}, expected H x W x 3")
        x = rgb.permute(2, 0, 1).unsqueeze(0).float()
        if rotation:
            x = torch.rot90(x, k=rotation // 90, dims=(2, 3))
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)[0]

    if access == "random" or (access == "auto" and len(wanted) * SEEK_COST_FRAMES < wanted[-1] + 1):
        got = dec.get_batch_frames_by_index(wanted)
        if len(got) != len(wanted):
            raise VideoError(path, f"NVDEC returned {len(got)} of {len(wanted)} frames")
        kept = {i: small(f) for i, f in zip(wanted, got)}
    else:  # in order, every frame up to the last one sampled; each kept frame is resized at once
        kept, want, k = {}, set(wanted), 0
        dec.seek_to_index(0)
        while k <= wanted[-1]:
            batch = dec.get_batch_frames(min(64, wanted[-1] + 1 - k))
            if not batch:
                break
            for f in batch:
                if k in want:
                    kept[k] = small(f)
                k += 1
        if len(kept) != len(wanted):
            raise VideoError(path, f"NVDEC decoded {k} frames, fewer than the {wanted[-1] + 1} the container "
                                   "declares (a truncated file?)")
    out = torch.stack([kept[i] for i in wanted]).clamp_(0, 255).round_().to(torch.uint8)
    out = out.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    row = {idx: k for k, idx in enumerate(wanted)}
    arrays = [out[row[i]] for i in indices]
    padded = len(arrays) < 2
    while len(arrays) < 2:
        arrays.append(arrays[-1])
        indices = [*indices, indices[-1]]
    return video.Frames(
        array=np.stack(arrays), source_fps=fps, total_frames=total, indices=tuple(indices),
        timestamps=tuple(i / fps for i in indices), duration=total / fps, source_size=display, rotation=rotation,
        decode_s=time.perf_counter() - t0, padded=padded, decoder="nvdec")
