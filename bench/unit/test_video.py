"""Video decoding: real files in several codecs and sizes, and every kind of broken input.

Bad files are generated in tmp_path (nothing large is committed). Each failure must be a
VideoError naming the file; nothing else may escape.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.base.errors import VideoError
from core.inputs import synth
from core.inputs.sampling import SamplingSpec
from core.inputs.video import load_frames, probe

pytestmark = pytest.mark.cpu

SEED_SPEC = SamplingSpec(fps=4.0, resolution=(250, 250))


@pytest.fixture(scope="module")
def clip_frames():
    return synth.render_clip("pedestrian", 7, width=176, height=144, seconds=2.0)


def test_fixture_clip_decodes_with_metadata(tmp_path, clip_frames):
    path = synth.encode(clip_frames, tmp_path / "a.mp4")
    fr = load_frames(path, SEED_SPEC)
    assert fr.array.dtype == np.uint8 and fr.array.shape == (8, 252, 252, 3)
    assert fr.total_frames == 24 and fr.source_fps == 12.0
    assert fr.indices[0] == 0 and fr.indices[-1] == 23
    assert fr.duration == pytest.approx(2.0)
    assert fr.sampled_fps == pytest.approx(4.0)
    meta = fr.metadata()
    assert meta["frames_indices"] == list(fr.indices) and meta["total_num_frames"] == 24
    # the decoded content resembles the source frame (lossy codec, resized): mean colour close
    src = clip_frames[fr.indices[3]].astype(float).mean(axis=(0, 1))
    got = fr.array[3].astype(float).mean(axis=(0, 1))
    assert np.abs(src - got).max() < 12


@pytest.mark.parametrize("codec,suffix,pix_fmt", [
    ("libx264", ".mp4", "yuv420p"), ("mpeg4", ".avi", "yuv420p"), ("libvpx-vp9", ".webm", "yuv420p"),
    ("libx265", ".mkv", "yuv420p"), ("mjpeg", ".mkv", "yuvj420p"), ("ffv1", ".mkv", "yuv420p"),
])
def test_other_codecs_and_containers(tmp_path, clip_frames, codec, suffix, pix_fmt):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = synth.encode(clip_frames, tmp_path / f"v{suffix}", codec=codec, pix_fmt=pix_fmt)
    fr = load_frames(path, SamplingSpec(nframes=6, resolution=(112, 112)))
    assert fr.array.shape == (6, 112, 112, 3)


def test_odd_frame_size_keeps_aspect_within_budget(tmp_path):
    frames = synth.render_clip("normal", 3, width=333, height=177, seconds=1.0)
    path = synth.encode(frames[:, :176, :332], tmp_path / "odd.mp4", codec="mpeg4")  # even dims for yuv420p
    fr = load_frames(path, SamplingSpec(fps=2.0))
    h, w = fr.array.shape[1:3]
    assert h % 28 == 0 and w % 28 == 0 and w > h


def test_tiny_1x1ish_and_large_frames(tmp_path):
    tiny = np.full((4, 2, 2, 3), 128, np.uint8)
    fr = load_frames(synth.encode(tiny, tmp_path / "t.mkv", codec="ffv1"), SamplingSpec(fps=2.0))
    assert fr.array.shape[1] * fr.array.shape[2] >= 128 * 28 * 28  # scaled up to the minimum budget
    big = np.zeros((2, 2160, 3840, 3), np.uint8)
    fr = load_frames(synth.encode(big, tmp_path / "4k.mp4"), SamplingSpec(fps=2.0))
    assert fr.array.shape[1] * fr.array.shape[2] <= 768 * 28 * 28


def test_single_frame_video_is_padded(tmp_path, clip_frames):
    path = synth.encode(clip_frames[:1], tmp_path / "one.mp4")
    fr = load_frames(path, SamplingSpec(fps=2.0, resolution=(112, 112)))
    assert fr.array.shape[0] == 2 and fr.padded


def _set_mp4_rotation_90cw(path):
    """Write a 90-degree clockwise display matrix into the mp4's tkhd box (as phones do)."""
    import struct

    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    assert data[i + 4] == 0, "expects a version-0 tkhd box"
    off = i + 44  # 'tkhd' + version/flags + 5 x 4-byte fields + 8 reserved + 4 x 2-byte fields
    assert struct.unpack(">9i", data[off:off + 36]) == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
    data[off:off + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


def test_rotated_video_is_shown_upright(tmp_path):
    frames = np.zeros((4, 96, 160, 3), np.uint8)
    frames[:, :, :80] = (255, 0, 0)  # left half red
    path = synth.encode(frames, tmp_path / "rot.mp4")
    _set_mp4_rotation_90cw(path)
    fr = load_frames(path, SamplingSpec(nframes=2))
    assert fr.rotation == 270  # 90 degrees clockwise
    h, w = fr.array.shape[1:3]
    assert h > w, "a 90-degree rotated landscape video must come out portrait"
    assert fr.source_size == (160, 96)
    # rotated clockwise, the red left half is now the top half
    assert fr.array[0, : h // 3, :, 0].mean() > 200 and fr.array[0, -h // 3:, :, 0].mean() < 50


def test_variable_frame_rate_is_detected(tmp_path):
    from fractions import Fraction

    import av

    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.time_base = Fraction(1, 1000)
        pts = 0
        for i in range(12):
            vf = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            pts += 33 if i % 2 else 100
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    fr = load_frames(path, SamplingSpec(nframes=4))
    assert fr.variable_frame_rate
    assert len(fr.timestamps) == 4 and fr.timestamps == tuple(sorted(fr.timestamps))


# ---- broken inputs: each a VideoError naming the file --------------------------------------

def _assert_video_error(path, match):
    with pytest.raises(VideoError, match=match) as info:
        load_frames(path, SEED_SPEC)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    _assert_video_error(tmp_path / "nope.mp4", "not found")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    _assert_video_error(p, "empty")


def test_not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is a text file, not a video\n" * 50)
    _assert_video_error(p, "not a readable video|no video stream|no decodable")


def test_directory_instead_of_file(tmp_path):
    _assert_video_error(tmp_path, "directory")


def test_audio_only_file(tmp_path):
    import av

    p = tmp_path / "audio.mka"
    with av.open(str(p), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for pk in s.encode(frame):
            out.mux(pk)
        for pk in s.encode():
            out.mux(pk)
    _assert_video_error(p, "no video stream")


def test_truncated_file_decodes_what_is_there_or_errors_clearly(tmp_path, clip_frames):
    whole = synth.encode(clip_frames, tmp_path / "whole.mp4").read_bytes()
    p = tmp_path / "trunc.mp4"
    p.write_bytes(whole[: len(whole) // 2])
    try:
        fr = load_frames(p, SEED_SPEC)
    except VideoError as exc:
        assert str(p) in str(exc)
    else:
        assert fr.array.shape[0] >= 2


def test_corrupt_payload(tmp_path, clip_frames):
    data = bytearray(synth.encode(clip_frames, tmp_path / "ok.mp4").read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(200, len(data), 400):
        data[i] = rng.integers(0, 256)
    p = tmp_path / "corrupt.mp4"
    p.write_bytes(bytes(data))
    try:
        fr = load_frames(p, SEED_SPEC)
    except VideoError as exc:
        assert str(p) in str(exc)
    else:  # FFmpeg conceals errors in a damaged H.264 stream: the frames come back, shaped right
        assert fr.array.dtype == np.uint8 and fr.array.shape[1:] == (252, 252, 3)


def test_probe_reports_container_facts(tmp_path, clip_frames):
    p = synth.encode(clip_frames, tmp_path / "p.mp4")
    info = probe(p)
    assert info["codec"] == "h264" and info["width"] == 176 and info["height"] == 144
    assert info["fps"] == pytest.approx(12.0)
