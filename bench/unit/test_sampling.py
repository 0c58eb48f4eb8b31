"""The frame sampler and sizer: hand-computed cases and agreement with qwen-vl-utils itself."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.base.errors import ConfigError
from core.inputs import sampling
from core.inputs.sampling import SamplingSpec, frame_size, linspace_indices, sample_indices, smart_nframes, smart_resize

pytestmark = pytest.mark.cpu


def test_seed_setting_4fps_250px_on_a_4s_12fps_clip():
    # 48 frames at 12 fps = 4 s; 4 fps -> 16 frames, spread over 0..47; 250 -> 252 (9 x 28).
    spec = SamplingSpec(fps=4.0, resolution=(250, 250))
    idx = sample_indices(spec, total_frames=48, video_fps=12.0)
    assert len(idx) == 16
    assert idx[0] == 0 and idx[-1] == 47
    assert idx == [0, 3, 6, 9, 13, 16, 19, 22, 25, 28, 31, 34, 38, 41, 44, 47]
    assert frame_size(spec, height=240, width=320, nframes=16) == (252, 252)


def test_frame_count_is_rounded_down_to_a_multiple_of_two():
    # 5 s at 30 fps sampled at 1.5 fps -> 7.5 frames -> floor to 6
    assert smart_nframes(SamplingSpec(fps=1.5), total_frames=150, video_fps=30.0) == 6


def test_min_and_max_frame_bounds():
    # a 1 s clip at 2 fps wants 2 frames; min_frames 4 lifts it to 4
    assert smart_nframes(SamplingSpec(fps=2.0), total_frames=30, video_fps=30.0) == 4
    # a 100 s clip at 2 fps wants 200; max_frames 31 -> floor(31) to even = 30
    assert smart_nframes(SamplingSpec(fps=2.0, max_frames=31), total_frames=3000, video_fps=30.0) == 30


def test_short_video_is_capped_by_its_own_frame_count():
    # 3 frames in total: max_frames = floor(min(768, 3)) to even = 2
    assert smart_nframes(SamplingSpec(fps=2.0), total_frames=3, video_fps=30.0) == 2


def test_nframes_is_rounded_to_nearest_even_and_checked():
    assert smart_nframes(SamplingSpec(nframes=9), total_frames=100, video_fps=25.0) in (8, 10)
    with pytest.raises(ConfigError, match="frame count"):
        smart_nframes(SamplingSpec(nframes=50), total_frames=20, video_fps=25.0)


def test_fps_and_nframes_are_exclusive():
    with pytest.raises(ConfigError, match="either fps or nframes"):
        SamplingSpec(fps=2.0, nframes=8)


def test_window_restricts_indices():
    spec = SamplingSpec(fps=2.0, start=1.0, end=3.0)
    idx = sample_indices(spec, total_frames=100, video_fps=10.0)
    assert idx[0] == 10 and idx[-1] == 30


def test_empty_window_is_a_clear_error():
    with pytest.raises(ConfigError, match="empty"):
        sample_indices(SamplingSpec(fps=2.0, start=5.0, end=4.0), total_frames=100, video_fps=10.0)


def test_smart_resize_hand_cases():
    assert smart_resize(240, 320) == (252, 308)  # 8.57 -> 9 x 28, 11.43 -> 11 x 28
    assert smart_resize(250, 250) == (252, 252)
    # 1080p within the video budget (768 tokens x 28 x 28 px): scaled down, aspect kept
    h, w = smart_resize(1080, 1920, min_pixels=sampling.VIDEO_MIN_PIXELS, max_pixels=sampling.VIDEO_MAX_PIXELS)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= sampling.VIDEO_MAX_PIXELS
    assert abs(w / h - 1920 / 1080) < 0.1
    # a 1x1 video is scaled up to the minimum budget
    h, w = smart_resize(1, 1, min_pixels=sampling.VIDEO_MIN_PIXELS, max_pixels=sampling.VIDEO_MAX_PIXELS)
    assert h * w >= sampling.VIDEO_MIN_PIXELS


def test_extreme_aspect_ratio_is_refused():
    with pytest.raises(ConfigError, match="aspect ratio"):
        smart_resize(10, 4000)


def test_parse_resolution():
    assert sampling.parse_resolution("320x240") == (240, 320)
    for bad in ("250", "x250", "0x10", "axb"):
        with pytest.raises(ConfigError):
            sampling.parse_resolution(bad)


@given(st.integers(0, 500), st.integers(1, 400))
def test_linspace_matches_torch(start, n):
    torch = pytest.importorskip("torch")
    end = start + st_span(n)
    expected = torch.linspace(start, end, n).round().long().tolist()
    assert linspace_indices(start, end, n) == expected


def st_span(n: int) -> int:
    return 3 * n + 7


@pytest.fixture(scope="module")
def qv():
    """qwen-vl-utils' sampling module (only the tests that compare with it skip without it)."""
    return pytest.importorskip("qwen_vl_utils.vision_process",
                               reason="qwen-vl-utils not installed: pip install qwen-vl-utils")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(total=st.integers(2, 2000), video_fps=st.sampled_from([5.0, 12.0, 23.976, 25.0, 29.97, 30.0, 60.0]),
       fps=st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0]), max_frames=st.integers(4, 800))
def test_frame_choice_matches_qwen_vl_utils(qv, total, video_fps, fps, max_frames):
    import torch

    ele = {"fps": fps, "max_frames": max_frames}
    spec = SamplingSpec(fps=fps, max_frames=max_frames)
    try:
        n_ref = qv.smart_nframes(ele, total_frames=total, video_fps=video_fps)
    except ValueError:
        with pytest.raises(ConfigError):
            smart_nframes(spec, total_frames=total, video_fps=video_fps)
        return
    assert smart_nframes(spec, total_frames=total, video_fps=video_fps) == n_ref
    ref_idx = torch.linspace(0, total - 1, n_ref).round().long().tolist()
    assert sample_indices(spec, total_frames=total, video_fps=video_fps) == ref_idx


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(28, 4320), w=st.integers(28, 7680), nframes=st.sampled_from([2, 8, 16, 64, 256]))
def test_frame_size_matches_qwen_vl_utils(qv, h, w, nframes):
    if max(h, w) / min(h, w) > 200:
        return
    spec = SamplingSpec(fps=2.0)
    factor = 28
    min_pixels = qv.VIDEO_MIN_TOKEN_NUM * factor * factor
    total_pixels = qv.MODEL_SEQ_LEN * factor * factor * 0.9
    max_pixels = max(min(qv.VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / nframes * 2), int(min_pixels * 1.05))
    ref = qv.smart_resize(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    assert frame_size(spec, height=h, width=w, nframes=nframes) == tuple(ref)


def test_fixed_resolution_matches_qwen_vl_utils(qv):
    for h, w in [(250, 250), (360, 640), (100, 3000), (27, 29)]:
        spec = SamplingSpec(fps=2.0, resolution=(h, w))
        assert frame_size(spec, height=1080, width=1920, nframes=16) == tuple(qv.smart_resize(h, w, factor=28))
