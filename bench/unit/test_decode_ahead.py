"""Decode ahead: outcomes in job order, each clip's error its own, a bounded number of clips in
flight (counted, never timed), a worker that dies fails only its clip, and the pool's sizing."""

from __future__ import annotations

import numpy as np
import pytest

from bench.unit import _decode_jobs
from core.base.errors import VideoError
from core.inputs import decode, synth
from core.inputs.sampling import SamplingSpec
from core.inputs.video import load_frames

pytestmark = pytest.mark.cpu

SPEC = SamplingSpec(fps=4.0, resolution=(56, 56))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ahead")
    for i, kind in enumerate(["normal", "collision", "object", "wrong_way", "pedestrian", "normal"]):
        synth.encode(synth.render_clip(kind, i, width=96, height=64, seconds=1.0), d / f"c{i}.mp4")
    (d / "c2_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 500)
    return d


def _jobs(paths):
    return [decode.Job(str(p), SPEC, threads=1) for p in paths]


def test_order_frames_and_errors_stay_per_clip(clip_dir):
    paths = sorted(clip_dir.glob("c*.mp4"))
    assert paths[3].name == "c2_broken.mp4"
    outs = list(decode.DecodeAhead(_jobs(paths), workers=2, ahead=3))
    assert [o.index for o in outs] == list(range(len(paths)))
    for path, out in zip(paths, outs):
        if path.name.startswith("c2_broken"):
            assert isinstance(out.error, VideoError) and out.error.path == str(path) and out.frames is None
            continue
        assert out.error is None
        serial = load_frames(path, SPEC)
        np.testing.assert_array_equal(out.frames.array, serial.array)  # the same frames as decoding here
        assert out.frames.decode_s > 0 and out.wait_s >= 0  # the worker's own decode time comes back


@pytest.mark.parametrize("workers, ahead", [(1, 1), (2, 2), (3, 4)])
def test_at_most_ahead_clips_in_flight(tmp_path, clip_dir, workers, ahead):
    """When clip i is handed out, no clip after i + ahead - 1 has been started by any worker."""
    paths = []
    for i, src in enumerate(sorted(clip_dir.glob("c[0-9].mp4")) * 2):
        dst = tmp_path / f"{i:02d}.mp4"
        dst.write_bytes(src.read_bytes())
        paths.append(dst)
    ahead_pool = decode.DecodeAhead(_jobs(paths), workers=workers, ahead=ahead, fn=_decode_jobs.marked)
    seen = []
    for out in ahead_pool:
        assert out.error is None, out.error
        started = {int(p.stem) for p in (tmp_path / "started").iterdir()}
        assert max(started) <= out.index + ahead - 1, (out.index, sorted(started))
        assert ahead_pool.in_flight <= ahead
        seen.append(out.index)
    assert seen == list(range(len(paths)))
    assert ahead_pool.max_in_flight == ahead  # it did decode ahead, up to the bound


def test_a_worker_that_dies_fails_only_its_clip(tmp_path, clip_dir):
    src = sorted(clip_dir.glob("c[0-9].mp4"))
    names = ["a0", "a1", "crash", "a3", "a4", "a5"]
    paths = []
    for name, s in zip(names, src):
        (tmp_path / f"{name}.mp4").write_bytes(s.read_bytes())
        paths.append(tmp_path / f"{name}.mp4")
    pool = decode.DecodeAhead(_jobs(paths), workers=2, ahead=3, fn=_decode_jobs.crashy)
    outs = list(pool)
    assert [o.index for o in outs] == list(range(6))
    assert isinstance(outs[2].error, VideoError) and "died" in str(outs[2].error) and "crash.mp4" in str(outs[2].error)
    assert all(o.error is None and o.frames.array.shape[1:] == (56, 56, 3) for k, o in enumerate(outs) if k != 2)
    assert pool.restarts >= 1


def test_no_workers_decodes_in_this_process(clip_dir):
    paths = sorted(clip_dir.glob("c*.mp4"))[:3]
    pool = decode.DecodeAhead(_jobs(paths), workers=0, ahead=1)
    outs = list(pool)
    assert [o.index for o in outs] == [0, 1, 2] and pool.max_in_flight == 1
    assert all(o.frames is not None for o in outs)


def test_plan_sizes_the_pool_to_cores_and_the_budget():
    mib = 2**20
    gpu = decode.plan(clips=100, clip_bytes=100 * mib, budget_bytes=1000 * mib, ncores=16, device="cuda")
    assert (gpu.workers, gpu.ahead, gpu.threads) == (10, 10, 1)  # 10 clips fit the budget: 10 in flight
    roomy = decode.plan(clips=100, clip_bytes=4 * mib, budget_bytes=2048 * mib, ncores=16, device="cuda")
    assert (roomy.workers, roomy.ahead) == (14, 28)  # every core but two; two clips per worker at most
    cpu = decode.plan(clips=100, clip_bytes=4 * mib, ncores=16, device="cpu")
    assert (cpu.workers, cpu.ahead, cpu.threads) == (1, 2, 16)  # a CPU engine keeps its cores
    huge = decode.plan(clips=5, clip_bytes=3000 * mib, budget_bytes=2048 * mib, ncores=16, device="cuda")
    assert (huge.workers, huge.ahead) == (1, 1)  # larger than the budget: one at a time, never zero
    few = decode.plan(clips=2, clip_bytes=mib, ncores=16, device="cuda")
    assert few.ahead == 2 and few.workers == 2
    off = decode.plan(clips=5, clip_bytes=mib, workers=0, ncores=16)
    assert off.workers == 0 and "main process" in off.describe()
    nv = decode.plan(clips=50, clip_bytes=mib, ncores=16, decoder="nvdec")
    assert nv.workers == decode.NVDEC_WORKERS == 4 and nv.threads == 1
    assert "worker processes" in gpu.describe() and "in flight" in gpu.describe()


def test_nvdec_falls_back_with_a_reason_here():
    """No GPU on the CPU machines: asking for NVDEC says why not and decodes with PyAV."""
    used, why = decode.resolve_decoder("nvdec")
    assert (used, bool(why)) in {("pyav", True), ("nvdec", False)}, (used, why)
    from core.plan import device

    if device.primary().kind != "cuda":
        assert used == "pyav" and "GPU" in why or "not installed" in why, why
    assert decode.resolve_decoder("pyav") == ("pyav", "")
