"""Fuzzing the two parsers of untrusted input: the video decoder (mutated real files) and the
manifest readers (random CSV/JSON). Only the suite's own error types may escape, and nothing hangs."""

from __future__ import annotations

import json
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.base.errors import DatasetError, VideoError
from core.inputs import dataset, synth
from core.inputs.sampling import SamplingSpec
from core.inputs.video import Probe, load_frames, sniff

pytestmark = pytest.mark.cpu


@contextmanager
def no_hang(seconds: int):
    def boom(*_):
        raise AssertionError(f"hung for more than {seconds}s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def seed_video(tmp_path_factory):
    frames = synth.render_clip("collision", 5, width=96, height=64, seconds=1.0)
    return synth.encode(frames, tmp_path_factory.mktemp("fuzz") / "seed.mp4").read_bytes()


mutations = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutations, cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_mutated_videos_decode_or_fail_cleanly(tmp_path, seed_video, muts, cut):
    data = bytearray(seed_video)
    for pos, val in muts:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: int(len(data) * cut)]
    path = tmp_path / "m.mp4"
    path.write_bytes(bytes(data))
    with no_hang(20):
        try:
            fr = load_frames(path, SamplingSpec(fps=2.0, resolution=(56, 56)))
        except VideoError as exc:
            assert str(path) in str(exc)
            return
    assert fr.array.dtype == np.uint8 and fr.array.ndim == 4 and fr.array.shape[1:] == (56, 56, 3)
    assert fr.array.shape[0] >= 2 and len(fr.indices) == fr.array.shape[0]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutations, cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
       name=st.sampled_from(["m.mp4", "m.h264", "m.gif", "m.txt", "m", "m.bin", "m.ts", "m.png"]),
       junk=st.one_of(st.none(), st.binary(max_size=2000)))
def test_probing_any_file_answers_and_never_raises(tmp_path, seed_video, muts, cut, name, junk):
    """The folder scan's probe on mutated videos, truncations and raw junk under any name: always a
    Probe (a video, or a reason why not), never an exception, never a hang."""
    data = bytearray(seed_video if junk is None else junk or b"\x00")
    for pos, val in muts:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: int(len(data) * cut)]
    path = tmp_path / name
    path.write_bytes(bytes(data))
    with no_hang(20):
        probe = sniff(path)
    assert isinstance(probe, Probe) and probe.path == str(path)
    assert probe.video or probe.reason, "a file that is no video must say why"
    if probe.video:
        assert probe.width > 0 and probe.height > 0
        with no_hang(20):
            try:
                load_frames(path, SamplingSpec(fps=2.0, resolution=(56, 56)))
            except VideoError as exc:  # a probed video may still fail to decode, but only this way
                assert str(path) in str(exc)


cell_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cell_text, min_size=0, max_size=4), max_size=8),
       header=st.sampled_from(["video,label", "Video,Label,id", "path", "label", ""]))
def test_random_csv_manifests(tmp_path, rows, header):
    root = tmp_path / "ds"
    root.mkdir(exist_ok=True)
    manifest = root / "m.csv"
    manifest.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    with no_hang(10):
        try:
            clips = dataset.load(manifest)
        except DatasetError:
            return
    for c in clips:
        assert root.resolve() in c.path.parents or c.path == root.resolve()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | cell_text,
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(cell_text, kids, max_size=4),
                           max_leaves=20)
items = st.dictionaries(st.sampled_from(["id", "video_path", "video", "question", "choices", "options", "answer",
                                         "support_frames"]), json_values, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(st.lists(items, max_size=5), st.fixed_dictionaries({"data": st.lists(items, max_size=5)}),
                     json_values))
def test_random_roadbuddy_json(tmp_path, doc):
    root = tmp_path / "rb"
    root.mkdir(exist_ok=True)
    manifest = root / "q.json"
    manifest.write_text(json.dumps(doc), encoding="utf-8")
    with no_hang(10):
        try:
            clips = dataset.load(manifest)
        except DatasetError:
            return
    for c in clips:
        assert root.resolve() in c.path.parents
        assert c.options is None or all(isinstance(o, str) for o in c.options)
        assert c.question is None or isinstance(c.question, str)
        assert isinstance(c.id, str) and (c.label is None or isinstance(c.label, str))
