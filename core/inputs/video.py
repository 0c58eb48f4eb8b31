"""Decode a video file into model-ready frames with PyAV, and tell videos from other files.

One demux pass counts frames when the container does not say; one threaded decode pass converts
(and resizes, in C through swscale) only the sampled frames. Every failure is a ``VideoError``
that names the file. ``sniff`` decides whether a file is a video by opening it (headers only), so a
folder scan judges content, not names.
"""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.base.errors import ConfigError, VideoError
from core.inputs import sampling
from core.inputs.sampling import SamplingSpec

MAX_DECODE_PIXELS = 8192 * 8192  # larger than 8K UHD: refuse before swscale allocates it


@dataclass(frozen=True)
class VideoClip:
    """A video on disk, with an id, optional ground-truth label and free-form metadata."""

    path: Path
    id: str
    label: str | None = None
    question: str | None = None
    options: tuple[str, ...] | None = None
    support_frames: tuple[float, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Frames:
    """Sampled frames (uint8, T x H x W x 3, RGB) and where they came from."""

    array: np.ndarray
    source_fps: float
    total_frames: int
    indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    duration: float
    source_size: tuple[int, int]  # (height, width) after applying rotation
    rotation: int
    decode_s: float
    padded: bool = False
    variable_frame_rate: bool = False
    decoder: str = "pyav"
    """Which decoder made the frames: 'pyav' (FFmpeg on the CPU) or 'nvdec' (the GPU's decoder)."""
    decoder_note: str = ""
    """Why another decoder than the one asked for made them ('' when none)."""

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sampled sequence (qwen-vl-utils' ``sample_fps``)."""
        return len(self.indices) / max(self.total_frames, 1e-6) * self.source_fps

    def metadata(self) -> dict[str, Any]:
        """Frame metadata as HF processors and vLLM expect it."""
        n, h, w, _ = self.array.shape
        return {
            "fps": float(self.source_fps),
            "total_num_frames": int(self.total_frames),
            "frames_indices": [int(i) for i in self.indices],
            "duration": float(self.duration),
            "width": int(w),
            "height": int(h),
            "video_backend": self.decoder,
        }

    def summary(self) -> dict[str, Any]:
        """JSON-able description (for results and reports)."""
        n, h, w, _ = self.array.shape
        return {
            "frames": n, "height": h, "width": w, "source_fps": round(self.source_fps, 4),
            "sampled_fps": round(self.sampled_fps, 4), "total_frames": self.total_frames,
            "duration_s": round(self.duration, 4), "indices": list(self.indices),
            "rotation": self.rotation, "padded": self.padded,
            "variable_frame_rate": self.variable_frame_rate, "decoder": self.decoder,
            **({"decoder_note": self.decoder_note} if self.decoder_note else {}),
        }


def _av_open(path: Path):
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except TypeError:  # PyAV >= 19 dropped the option (and decodes metadata leniently itself)
        return av.open(str(path))


def _video_stream(container):
    """The first video stream that is not a cover picture (audio files and some MP4/MKV files carry
    their artwork as a one-frame 'attached picture' video stream); None when there is none."""
    for stream in container.streams.video:
        disposition = getattr(stream, "disposition", None)
        if disposition is not None and _has_flag(disposition, "attached_pic"):
            continue
        return stream
    return None


def _has_flag(disposition, name: str) -> bool:
    try:
        from av.stream import Disposition

        return bool(disposition & Disposition[name])
    except (ImportError, KeyError, TypeError):
        return False


def _open(path: Path):
    import av

    if not path.exists():
        raise VideoError(path, "file not found", "check the path or the manifest entry")
    if path.is_dir():
        raise VideoError(path, "is a directory, not a video file")
    if not stat.S_ISREG(path.stat().st_mode):
        raise VideoError(path, "is not a regular file (a pipe, socket or device)")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    try:
        container = _av_open(path)
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise VideoError(path, f"not a readable video container: {exc}") from None
    if _video_stream(container) is None:
        container.close()
        raise VideoError(path, "contains no video stream")
    return container


# --- telling videos from other files --------------------------------------------------------------

TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}
"""FFmpeg 'decodes' text files as ANSI art (the tty demuxer): a notes.txt is no video."""
ANIMATED_IMAGE_FORMATS = {"gif", "apng", "webp"}
"""Image formats that may hold an animation (a video) or a single picture (not one)."""


@dataclass(frozen=True)
class Probe:
    """What opening a file's headers says: whether it is a video (and why not), and its facts."""

    path: str
    video: bool
    reason: str = ""
    """Why it is not a video ('' when it is one)."""
    container: str = ""
    codec: str = ""
    width: int = 0
    height: int = 0
    fps: float | None = None
    frames: int = 0
    """Frame count the container declares (0 = it does not say)."""
    duration_s: float | None = None

    @property
    def total_frames(self) -> int | None:
        """Declared frame count, else duration x rate; None when neither is known (raw streams:
        the count is known only after decoding)."""
        if self.frames > 0:
            return self.frames
        if self.duration_s and self.fps:
            return max(1, int(round(self.duration_s * self.fps)))
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) if type(exc).__module__.startswith("av") else None
    text = (text or str(exc)).replace(chr(10), " ").strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def sniff(path: Path | str) -> Probe:
    """Is ``path`` a video? Opens the container and reads its headers only (FFmpeg's probe: the
    first few MB at most, no decoding of the whole stream), whatever the file is called: raw H.264
    streams, GIFs, MPEG-2 program streams and anything else FFmpeg demuxes count, text files, still
    images, audio and broken files do not. Never raises: any failure is a ``Probe`` with a reason."""
    path = Path(path)
    name = str(path)
    try:
        st = path.stat()
    except OSError as exc:
        return Probe(name, False, f"cannot be read ({exc.strerror or exc})")
    if stat.S_ISDIR(st.st_mode):
        return Probe(name, False, "a directory")
    if not stat.S_ISREG(st.st_mode):
        return Probe(name, False, "not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        return Probe(name, False, "empty file (0 bytes)")
    try:
        container = _av_open(path)
    except Exception as exc:  # noqa: BLE001 - a probe answers, it never raises: FFmpeg fails in many ways
        return Probe(name, False, f"not a media file FFmpeg can read ({_short(exc)})")
    try:
        return _judge(name, container)
    except Exception as exc:  # noqa: BLE001 - damaged headers can make any attribute read fail
        return Probe(name, False, f"unreadable media headers ({_short(exc)})")
    finally:
        try:
            container.close()
        except Exception:  # noqa: BLE001
            pass


def _judge(name: str, container) -> Probe:
    fmt = (container.format.name or "").split(",")[0]
    stream = _video_stream(container)
    if stream is None:
        if container.streams.video:
            return Probe(name, False, f"only a cover picture, no video ({fmt})", container=fmt)
        kinds = [k for k, streams in (("audio", container.streams.audio), ("subtitles", container.streams.subtitles))
                 if streams]
        what = f"{' and '.join(kinds)} only" if kinds else "no streams FFmpeg can use"
        return Probe(name, False, f"no video stream ({what}, {fmt})", container=fmt)
    ctx = stream.codec_context
    codec = ctx.name or ""
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    fps = float(stream.average_rate or stream.guessed_rate or 0) or None
    frames = int(stream.frames or 0)
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    facts: dict[str, Any] = dict(container=fmt, codec=codec, width=width, height=height, fps=fps, frames=frames,
                 duration_s=duration)
    if codec in TEXT_CODECS or fmt == "tty":
        return Probe(name, False, "a text file (FFmpeg would read it as ANSI art), not a video", **facts)
    if fmt.startswith("image2") or fmt.endswith("_pipe"):
        return Probe(name, False, f"a still image ({codec or fmt}), not a video", **facts)
    if fmt in ANIMATED_IMAGE_FORMATS and frames == 1:
        return Probe(name, False, f"a still image ({fmt}, one frame), not a video", **facts)
    if width < 1 or height < 1:
        return Probe(name, False, f"a {codec or 'video'} stream whose frame size FFmpeg could not read", **facts)
    if not _has_decoder(codec):
        return Probe(name, False, f"no decoder for its '{codec}' video in this FFmpeg build", **facts)
    return Probe(name, True, **facts)


def _has_decoder(codec: str) -> bool:
    import av

    try:
        av.Codec(codec, "r")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        return False
    return True


def _rotation(stream, first_frame) -> int:
    rot = getattr(first_frame, "rotation", 0) or 0
    return int(round(rot)) % 360


def _count_frames(container, stream, path: Path) -> int:
    """Count frames by demuxing packets (no decoding), for containers that do not say."""
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                count += 1
    except Exception as exc:  # noqa: BLE001 - PyAV raises many error types for broken files
        if count == 0:
            raise VideoError(path, f"cannot read packets: {exc}") from None
    return count


def _rewind(container, path: Path, threads: int):
    """Back to the first frame: a seek, or (raw streams such as .h264 cannot seek) a fresh open.
    Returns the container and its video stream, ready to decode."""
    import av

    try:
        container.seek(0)
        stream = _video_stream(container)
    except (av.FFmpegError, OSError, ValueError):
        container.close()
        container = _open(path)
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        if threads > 0:
            stream.codec_context.thread_count = threads
    return container, stream


def _decode_pass(container, stream, path: Path, wanted: set[int], size_fn):
    """Decode frames in order; convert those in ``wanted`` to RGB at ``size_fn(display_h, display_w)``.

    Returns (frames, timestamps, count, rotation, variable_frame_rate).
    """
    import av

    out: dict[int, np.ndarray] = {}
    stamps: dict[int, float] = {}
    count = 0
    rotation = 0
    size = (0, 0)
    last_pts = None
    deltas: set[int] = set()
    tb = float(stream.time_base) if stream.time_base else 0.0
    try:
        for frame in container.decode(stream):
            if count == 0:
                rotation = _rotation(stream, frame)
                if frame.width * frame.height > MAX_DECODE_PIXELS:
                    raise VideoError(path, f"frame size {frame.width}x{frame.height} is above the 8192x8192 limit")
                display = (frame.width, frame.height) if rotation in (90, 270) else (frame.height, frame.width)
                size = size_fn(*display)
            if frame.pts is not None:
                if last_pts is not None and len(deltas) < 8:
                    deltas.add(frame.pts - last_pts)
                last_pts = frame.pts
            if count in wanted:
                h, w = size
                if rotation in (90, 270):
                    h, w = w, h  # resize in storage orientation, then rotate for display
                rgb = frame.reformat(width=w, height=h, format="rgb24",
                                     interpolation="BICUBIC").to_ndarray()
                if rotation:
                    # frame.rotation is counter-clockwise degrees to apply for display
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
                out[count] = rgb
                stamps[count] = (frame.pts or 0) * tb if frame.pts is not None else float(frame.time or 0)
            count += 1
    except av.FFmpegError as exc:
        if count == 0:
            raise VideoError(path, f"no decodable frames: {exc}") from None
        # A truncated tail: keep what decoded; the caller re-samples on the real count.
    return out, stamps, count, rotation, size, len(deltas) > 1


def probe(path: Path) -> dict[str, Any]:
    """Container facts without decoding: fps, declared frame count, size, duration."""
    path = Path(path)
    container = _open(path)
    try:
        stream = _video_stream(container)
        fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        return {
            "codec": stream.codec_context.name, "width": stream.codec_context.width,
            "height": stream.codec_context.height, "fps": fps, "frames": int(stream.frames or 0),
            "duration_s": duration,
        }
    finally:
        container.close()


def load_frames(path: Path | str, spec: SamplingSpec, *, threads: int = 0) -> Frames:
    """Decode, sample and resize ``path`` according to ``spec`` (qwen-vl-utils semantics).

    ``threads``: FFmpeg decoding threads (0 = FFmpeg's choice: one per core; decode-ahead workers
    share the cores and pass their share). Every failure is a VideoError naming the file: FFmpeg's
    own errors (damaged streams, failed seeks) are translated, never leaked.
    """
    import av

    path = Path(path)
    try:
        return _load_frames(path, spec, threads)
    except VideoError:
        raise
    except (av.FFmpegError, ValueError, OSError, RuntimeError, IndexError, EOFError) as exc:
        raise VideoError(path, f"decoding failed: {type(exc).__name__}: {exc}") from None


def _load_frames(path: Path, spec: SamplingSpec, threads: int = 0) -> Frames:
    t0 = time.perf_counter()
    container = _open(path)
    try:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"
        if threads > 0:
            stream.codec_context.thread_count = threads
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if not fps > 0:
            fps = 30.0  # no rate in the container (e.g. raw streams): count-based sampling still works
        declared = int(stream.frames or 0)
        if declared > 0:
            total = declared
        else:
            total = _count_frames(container, stream, path)
            container, stream = _rewind(container, path, threads)
        if total == 0:
            raise VideoError(path, "no frames in the video stream")
        frames, stamps, indices, decoded, rotation, vfr = None, None, None, 0, 0, False
        display = (0, 0)
        for _attempt in range(2):
            indices = _plan(spec, total, fps, path)

            def size_fn(h: int, w: int, n: int = len(indices)) -> tuple[int, int]:
                nonlocal display
                display = (h, w)
                return _target_size(spec, (h, w), n, path)

            frames, stamps, decoded, rotation, _size, vfr = _decode_pass(
                container, stream, path, set(indices), size_fn
            )
            if decoded == 0:
                raise VideoError(path, "no decodable frames")
            if all(i in frames for i in indices):
                break
            total = decoded  # the container over-declared its frame count (truncated file)
            container, stream = _rewind(container, path, threads)
        else:
            raise VideoError(path, "frames vanished between decode passes")
    finally:
        container.close()
    arrays = [frames[i] for i in indices]
    padded = len(arrays) < sampling.FRAME_FACTOR
    while len(arrays) < sampling.FRAME_FACTOR:  # a one-frame video: repeat it, as qwen-vl-utils pads lists
        arrays.append(arrays[-1])
        indices = [*indices, indices[-1]]
    array = np.stack(arrays)
    return Frames(
        array=array, source_fps=fps, total_frames=total, indices=tuple(indices),
        timestamps=tuple(stamps.get(i, i / fps) for i in indices), duration=total / fps,
        source_size=display, rotation=rotation, decode_s=time.perf_counter() - t0,
        padded=padded, variable_frame_rate=vfr,
    )


def _plan(spec: SamplingSpec, total: int, fps: float, path: Path) -> list[int]:
    if total < sampling.FRAME_FACTOR:
        return [0]
    try:
        return sampling.sample_indices(spec, total_frames=total, video_fps=fps)
    except ConfigError as exc:
        raise VideoError(path, str(exc)) from None


def _target_size(spec: SamplingSpec, size: tuple[int, int], n: int, path: Path) -> tuple[int, int]:
    h, w = size
    if h < 1 or w < 1:
        raise VideoError(path, f"video stream reports an invalid frame size {w}x{h}")
    try:
        return sampling.frame_size(spec, height=h, width=w, nframes=max(n, sampling.FRAME_FACTOR))
    except ConfigError as exc:
        raise VideoError(path, str(exc)) from None
