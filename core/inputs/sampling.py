"""Frame sampling and frame sizing with qwen-vl-utils' semantics, as pure functions.

These mirror ``qwen_vl_utils.vision_process`` (``smart_nframes``, ``smart_resize`` and the frame
index choice of its readers), so a clip sampled here gets the same frame indices and the same frame
size as in a user's production ``process_vision_info`` pipeline. The test suite checks that
against qwen-vl-utils itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.base.errors import ConfigError

PATCH_FACTOR = 28  # patch 14 x spatial merge 2
FRAME_FACTOR = 2
DEFAULT_FPS = 2.0
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
VIDEO_MIN_PIXELS = 128 * PATCH_FACTOR * PATCH_FACTOR
VIDEO_MAX_PIXELS = 768 * PATCH_FACTOR * PATCH_FACTOR
IMAGE_MIN_PIXELS = 4 * PATCH_FACTOR * PATCH_FACTOR
IMAGE_MAX_PIXELS = 16384 * PATCH_FACTOR * PATCH_FACTOR
MODEL_SEQ_LEN = 128000
MAX_RATIO = 200


def round_by_factor(number: float, factor: int) -> int:
    """The multiple of ``factor`` closest to ``number`` (Python's round: halves go to even)."""
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    """The smallest multiple of ``factor`` >= ``number``."""
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    """The largest multiple of ``factor`` <= ``number``."""
    return math.floor(number / factor) * factor


@dataclass(frozen=True, kw_only=True)
class SamplingSpec:
    """How to turn a video into model frames: how many frames and at what size.

    Exactly one of ``fps`` / ``nframes`` chooses the frame count (qwen-vl-utils: ``fps`` defaults
    to 2.0). ``resolution`` (height, width) asks for a fixed size, rounded to the 28-pixel grid as
    ``resized_height/resized_width`` are; otherwise the size keeps the aspect ratio within the
    ``min_pixels``/``max_pixels``/``total_pixels`` budget. ``start``/``end`` (seconds) restrict the
    window, as ``video_start``/``video_end`` do.
    """

    fps: float | None = None
    nframes: int | None = None
    min_frames: int = FPS_MIN_FRAMES
    max_frames: int = FPS_MAX_FRAMES
    resolution: tuple[int, int] | None = None
    min_pixels: int = VIDEO_MIN_PIXELS
    max_pixels: int | None = None
    total_pixels: int = int(MODEL_SEQ_LEN * PATCH_FACTOR * PATCH_FACTOR * 0.9)
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.fps is not None and self.nframes is not None:
            raise ConfigError("give either fps or nframes, not both (qwen-vl-utils semantics)")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if self.nframes is not None and self.nframes < 1:
            raise ConfigError(f"nframes must be >= 1, got {self.nframes}")
        if self.min_frames < 1 or self.max_frames < self.min_frames:
            raise ConfigError(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.resolution is not None and min(self.resolution) < 1:
            raise ConfigError(f"resolution must be positive, got {self.resolution}")
        if self.max_pixels is not None and self.max_pixels < self.min_pixels:
            raise ConfigError(
                f"max_pixels ({self.max_pixels}) is below min_pixels ({self.min_pixels}); "
                "qwen-vl-utils asserts on this too"
            )

    @property
    def target_fps(self) -> float:
        return DEFAULT_FPS if self.fps is None else self.fps

    def key(self) -> str:
        """A short stable string for cache keys and ids."""
        count = f"n{self.nframes}" if self.nframes is not None else f"fps{self.target_fps:g}"
        size = f"{self.resolution[0]}x{self.resolution[1]}" if self.resolution else f"px{self.max_pixels}"
        window = f"@{self.start}-{self.end}" if (self.start is not None or self.end is not None) else ""
        return f"{count}-{size}-f{self.min_frames}-{self.max_frames}{window}"


def smart_nframes(spec: SamplingSpec, *, total_frames: int, video_fps: float) -> int:
    """How many frames to sample: qwen-vl-utils' ``smart_nframes``, raising ConfigError instead."""
    if spec.nframes is not None:
        n = round_by_factor(spec.nframes, FRAME_FACTOR)
    else:
        min_frames = ceil_by_factor(spec.min_frames, FRAME_FACTOR)
        max_frames = floor_by_factor(min(spec.max_frames, total_frames), FRAME_FACTOR)
        want = total_frames / video_fps * spec.target_fps
        want = min(min(max(want, min_frames), max_frames), total_frames)
        n = floor_by_factor(want, FRAME_FACTOR)
    if not (FRAME_FACTOR <= n <= total_frames):
        raise ConfigError(f"frame count must lie in [{FRAME_FACTOR}, {total_frames}], got {n}")
    return n


def frame_window(spec: SamplingSpec, *, total_frames: int, video_fps: float) -> tuple[int, int]:
    """First and last frame index of the sampling window (``video_start``/``video_end``)."""
    if spec.start is None and spec.end is None:
        return 0, total_frames - 1
    duration = total_frames / video_fps
    start = 0 if spec.start is None else math.ceil(max(0.0, min(spec.start, duration)) * video_fps)
    end = total_frames - 1
    if spec.end is not None:
        end = min(math.floor(max(0.0, min(spec.end, duration)) * video_fps), total_frames - 1)
    if start >= end:
        raise ConfigError(
            f"sampling window {spec.start}-{spec.end}s is empty for a {duration:.2f}s video "
            f"({total_frames} frames at {video_fps:g} fps)"
        )
    return start, end


def linspace_indices(start: int, end: int, n: int) -> list[int]:
    """``torch.linspace(start, end, n).round()`` without torch (round half to even, as torch)."""
    if n == 1:
        return [start]
    step = (end - start) / (n - 1)
    # torch.linspace computes the second half from the end, which keeps the last value exact.
    half = n // 2
    vals = [start + step * i if i < half else end - step * (n - 1 - i) for i in range(n)]
    return [int(round(v)) for v in vals]


def sample_indices(spec: SamplingSpec, *, total_frames: int, video_fps: float) -> list[int]:
    """The frame indices qwen-vl-utils' readers pick for this video."""
    start, end = frame_window(spec, total_frames=total_frames, video_fps=video_fps)
    window_frames = end - start + 1
    n = smart_nframes(spec, total_frames=window_frames, video_fps=video_fps)
    return linspace_indices(start, end, n)


def smart_resize(
    height: int, width: int, *, factor: int = PATCH_FACTOR, min_pixels: float | None = None,
    max_pixels: float | None = None,
) -> tuple[int, int]:
    """qwen-vl-utils' ``smart_resize``: both sides multiples of ``factor``, pixels within bounds."""
    max_pixels = IMAGE_MAX_PIXELS if max_pixels is None else max_pixels
    min_pixels = IMAGE_MIN_PIXELS if min_pixels is None else min_pixels
    if max_pixels < min_pixels:
        raise ConfigError(f"max_pixels {max_pixels} is below min_pixels {min_pixels}")
    if min(height, width) < 1:
        raise ConfigError(f"frame size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ConfigError(
            f"aspect ratio {max(height, width) / min(height, width):.0f} of a {width}x{height} "
            f"frame exceeds {MAX_RATIO}"
        )
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = floor_by_factor(height / beta, factor)
        w_bar = floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def frame_size(spec: SamplingSpec, *, height: int, width: int, nframes: int) -> tuple[int, int]:
    """The (height, width) every sampled frame is resized to, as qwen-vl-utils' ``fetch_video``."""
    if spec.resolution is not None:
        return smart_resize(spec.resolution[0], spec.resolution[1])
    max_pixels = max(
        min(VIDEO_MAX_PIXELS, spec.total_pixels / nframes * FRAME_FACTOR), int(spec.min_pixels * 1.05)
    )
    if spec.max_pixels is not None:
        max_pixels = min(spec.max_pixels, max_pixels)
    return smart_resize(height, width, min_pixels=spec.min_pixels, max_pixels=max_pixels)


def parse_resolution(text: str) -> tuple[int, int]:
    """Parse ``'250x250'`` (width x height, as the seeds' ``--target_resolution``) to (height, width)."""
    try:
        w, h = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"resolution must look like 250x250 (WIDTHxHEIGHT), got '{text}'") from None
    if w < 1 or h < 1:
        raise ConfigError(f"resolution must be positive, got '{text}'")
    return h, w


ANCHOR_MARGIN_S = 2.0


def anchor(spec: SamplingSpec, clip, *, margin_s: float = ANCHOR_MARGIN_S) -> SamplingSpec:
    """``spec`` restricted to [first support frame - margin, last + margin] when ``clip`` (a
    ``VideoClip``) has support frames (RoadBuddy's annotated timestamps) and no window is set."""
    from dataclasses import replace

    support = getattr(clip, "support_frames", None)
    if not support or spec.start is not None or spec.end is not None:
        return spec
    lo, hi = min(support), max(support)
    return replace(spec, start=max(0.0, lo - margin_s), end=hi + margin_s)
