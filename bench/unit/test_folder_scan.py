"""A folder scan decides by content: odd but playable files are videos, everything else is named
with the reason it was passed over, and probing reads headers only."""

from __future__ import annotations

import os
import shutil
import struct

import av
import numpy as np
import pytest

from core.base.errors import DatasetError, VideoError
from core.inputs import dataset, synth
from core.inputs.sampling import SamplingSpec
from core.inputs.video import load_frames, sniff

pytestmark = pytest.mark.cpu


def _write(path, frames, *, fmt=None, codec="libx264", pix_fmt="yuv420p", rate=12):
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for arr in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def frames():
    return synth.render_clip("pedestrian", 2, width=96, height=64, seconds=1.0)


@pytest.fixture
def odd_folder(tmp_path, frames):
    """A folder as users have them: videos under odd names, and files that are not videos."""
    d = tmp_path / "wild"
    (d / "sub").mkdir(parents=True)
    synth.encode(frames, d / "a.mp4")
    shutil.copy(d / "a.mp4", d / "a.mkv")  # same stem: both keep their suffix in the id
    _write(d / "dashcam.h264", frames, fmt="h264")  # a raw H.264 elementary stream
    _write(d / "loop.gif", frames, codec="gif", pix_fmt="rgb8")
    _write(d / "sub" / "old_camera.bin", frames, fmt="mpeg", codec="mpeg2video")  # MPEG-2 PS, no video suffix
    synth.encode(frames, d / "sub" / "named.mp4").rename(d / "sub" / "no_suffix")
    (d / "broken.mp4").write_text("this is not a video")  # a video name, no video inside
    (d / "notes.txt").write_text("camera 3 was facing the wrong way\n" * 20)
    (d / "empty.dat").write_bytes(b"")
    (d / ".DS_Store").write_bytes(b"\x00\x01hidden")  # hidden: passed over, not reported
    (d / ".cache").mkdir()
    synth.encode(frames, d / ".cache" / "thumb.mp4")
    _write(d / "frame.png", frames[:1], fmt="image2", codec="png", pix_fmt="rgb24")
    _write(d / "frame.jpg", frames[:1], fmt="image2", codec="mjpeg", pix_fmt="yuvj420p")
    with av.open(str(d / "tone.mp3"), "w") as out:
        s = out.add_stream("mp3", rate=44100)
        for i in range(8):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 44100, i * 1152
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    outside = tmp_path / "outside.mp4"
    synth.encode(frames, outside)
    (d / "link.mp4").symlink_to(outside)
    os.mkfifo(d / "pipe.mp4")  # opening a FIFO would block forever: it must be refused without opening
    return d


def test_every_file_is_a_clip_or_named_with_its_reason(odd_folder):
    scan = dataset.scan(odd_folder)
    ids = [c.id for c in scan.clips]
    assert ids == ["a.mkv", "a.mp4", "broken", "dashcam", "loop", "pipe", "sub__no_suffix", "sub__old_camera"]
    skipped = {s.path: s.reason for s in scan.skipped}
    assert set(skipped) == {"notes.txt", "empty.dat", "frame.png", "frame.jpg", "tone.mp3", "link.mp4"}
    assert "text file" in skipped["notes.txt"] and "empty" in skipped["empty.dat"]
    assert "still image" in skipped["frame.png"] and "still image" in skipped["frame.jpg"]
    assert "audio only" in skipped["tone.mp3"] and "outside the folder" in skipped["link.mp4"]
    # Every non-hidden file is accounted for, once.
    every = {str(p.relative_to(odd_folder)) for p in odd_folder.rglob("*")
             if not p.is_dir() and not any(part.startswith(".") for part in p.relative_to(odd_folder).parts)}
    used = {str(c.path.relative_to(odd_folder.resolve())) for c in scan.clips}
    assert used | set(skipped) == every and not used & set(skipped)
    # Files named like videos that are none stay clips carrying the probe's reason (they become errors).
    by_id = {c.id: c for c in scan.clips}
    assert "FFmpeg" in by_id["broken"].meta["probe_error"]
    assert "regular file" in by_id["pipe"].meta["probe_error"]
    assert all("probe_error" not in by_id[i].meta for i in ("dashcam", "loop", "sub__old_camera", "sub__no_suffix"))


@pytest.mark.parametrize("name", ["dashcam.h264", "loop.gif", "sub/old_camera.bin", "sub/no_suffix"])
def test_odd_videos_decode(odd_folder, name):
    probe = sniff(odd_folder / name)
    assert probe.video and probe.width == 96 and probe.height == 64, probe
    fr = load_frames(odd_folder / name, SamplingSpec(fps=4.0, resolution=(56, 56)))
    assert fr.array.shape[1:] == (56, 56, 3) and fr.array.shape[0] >= 2


def test_raw_stream_has_no_length_until_decoded(odd_folder):
    probe = sniff(odd_folder / "dashcam.h264")
    assert probe.container == "h264" and probe.total_frames is None
    assert load_frames(odd_folder / "dashcam.h264", SamplingSpec(nframes=4, resolution=(56, 56))).total_frames == 12


def test_probing_reads_headers_only(tmp_path, frames):
    """A 40 MB file whose video is a few kB (the rest a 'free' box): the probe reads a bounded amount
    (FFmpeg's probe size, 5 MB by default), not the file."""
    small = synth.encode(frames, tmp_path / "small.mp4").read_bytes()
    pad = 40 * 2**20
    big = tmp_path / "big.mp4"
    big.write_bytes(small + struct.pack(">I4s", 8 + pad, b"free") + bytes(pad))

    def read_bytes() -> int:
        with open("/proc/self/io") as fh:
            return int(next(line for line in fh if line.startswith("rchar")).split()[1])

    before = read_bytes()
    probe = sniff(big)
    taken = read_bytes() - before
    assert probe.video and probe.frames == 12
    assert taken < 6 * 2**20, f"the probe read {taken} bytes of a {big.stat().st_size}-byte file"


def test_video_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(VideoError("/v/a.mp4", "no frames", "re-encode it")))
    assert err.path == "/v/a.mp4" and err.problem == "no frames" and str(err) == "/v/a.mp4: no frames (re-encode it)"


def test_folder_without_videos_names_what_it_passed_over(tmp_path):
    (tmp_path / "readme.txt").write_text("hello\n")
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"no videos found; passed over .*data.json: not a media file"):
        dataset.scan(tmp_path)
