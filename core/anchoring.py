"""Support-frame anchoring: narrow the sampling window around a clip's annotated timestamps."""

from __future__ import annotations

from dataclasses import replace

from core.sampling import SamplingSpec
from core.video import VideoClip

DEFAULT_MARGIN_S = 2.0


def anchor(spec: SamplingSpec, clip: VideoClip, *, margin_s: float = DEFAULT_MARGIN_S) -> SamplingSpec:
    """``spec`` restricted to [first support frame - margin, last + margin] when the clip has them."""
    if not clip.support_frames or spec.start is not None or spec.end is not None:
        return spec
    lo, hi = min(clip.support_frames), max(clip.support_frames)
    return replace(spec, start=max(0.0, lo - margin_s), end=hi + margin_s)
