"""Long and large inputs: video tokens and frames are counted from header probes before loading, and
a clip over the context or memory budget fails alone, saying which option to lower."""

from __future__ import annotations

import json
import shutil

import av
import pytest

from core import cli
from core.inputs import dataset, synth
from core.inputs.sampling import SamplingSpec
from core.models.families import family
from core.plan import estimate

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]

QWEN = {"vision_config": {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                          "hidden_size": 1280, "intermediate_size": 3420}}


def test_a_two_minute_clip_at_4_fps_is_480_frames_and_19440_tokens():
    spec = SamplingSpec(fps=4.0, resolution=(250, 250))
    n, h, w = estimate.expected_frames(spec, total_frames=120 * 30, fps=30.0, height=1080, width=1920)
    assert (n, h, w) == (480, 252, 252)
    cost = estimate.clip_cost("long", n, h, w, family=family("qwen2_5_vl"), config=QWEN)
    assert cost.video_tokens == 19440 and cost.prompt_tokens == 19440 + estimate.TEXT_TOKENS
    assert cost.frame_bytes == 480 * 252 * 252 * 3
    assert cost.vision_patches == 4 * 19440
    # the default cap: --max-frames 768 bounds a long clip, whatever its length
    assert estimate.expected_frames(spec, total_frames=3600 * 30, fps=30.0, height=1080, width=1920)[0] == 768
    # a raw stream's length is unknown until decoded
    assert estimate.expected_frames(spec, total_frames=None, fps=25.0, height=1080, width=1920) is None


def test_internvl_counts_one_tile_per_frame():
    cfg = {"vision_config": {"image_size": [448, 448], "patch_size": [14, 14]}, "downsample_ratio": 0.5}
    assert family("internvl").video_tokens(cfg, 16, 252, 252) == 16 * (256 + 8)


def _budget(**kw):
    base = dict(backend="vllm", device="NVIDIA H200", context_tokens=8192, context_option="--max-model-len",
                memory_bytes=None, settings_note="--fps 4, --max-frames 768, --resolution 250x250")
    return estimate.Budget(**{**base, **kw})


def test_over_the_context_says_which_options_to_lower():
    long = estimate.clip_cost("long", 480, 252, 252, family=family("qwen2_5_vl"), config=QWEN)
    short = estimate.clip_cost("short", 24, 252, 252, family=family("qwen2_5_vl"), config=QWEN)
    assert _budget().check(short) is None
    msg = _budget().check(long)
    assert "8192-token context (--max-model-len)" in msg and "19696 prompt tokens" in msg
    assert "lower --fps, --max-frames or --resolution (now --fps 4, --max-frames 768, --resolution 250x250)" in msg
    assert msg.endswith("or raise --max-model-len")
    hf = _budget(backend="hf", context_tokens=128000, context_option="the model's max_position_embeddings",
                 memory_bytes=20 * 2**30, device="host memory")
    assert hf.check(long, need_bytes=10 * 2**30) is None
    msg = hf.check(long, need_bytes=30 * 2**30)
    assert "needs about 30.0 GiB" in msg and "over the 20.0 GiB of host memory" in msg and "--max-frames" in msg


def test_the_estimate_grows_with_the_clip(tmp_path):
    from core.models import registry
    from core.plan.formats import get_format

    config_dir = registry.materialize(registry.resolve("tiny"))
    cfg = json.loads((config_dir / "config.json").read_text())
    fam = family("qwen2_5_vl")
    params = {"lm_linear": 10**6, "other": 10**6}
    small = estimate.estimate(config_dir, get_format("bf16"), backend="hf", params=params,
                              clip=estimate.clip_cost("s", 16, 252, 252, family=fam, config=cfg))
    big = estimate.estimate(config_dir, get_format("bf16"), backend="hf", params=params,
                            clip=estimate.clip_cost("b", 480, 252, 252, family=fam, config=cfg))
    assert big["prompt_tokens"] > 20 * small["prompt_tokens"] // 2
    assert big["kv_cache_bytes"] > 10 * small["kv_cache_bytes"] and big["frame_bytes"] == 30 * small["frame_bytes"]
    assert big["activations"]["vision"] > 10 * small["activations"]["vision"]
    assert big["total_bytes"] > small["total_bytes"]


def _raw_h264(frames, path):
    """A raw H.264 stream: no container, so no length and no rate (readers assume 25 fps)."""
    with av.open(str(path), "w", format="h264") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for arr in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.mark.slow
def test_a_clip_over_the_budget_fails_alone(capsys, tmp_path):
    """The tiny model's context is 8192 positions: a minute at 4 fps (240 frames, 9720 video tokens)
    fails alone, before decoding when the header gives its length, after decoding when it does not
    (a raw stream); the short clip beside them is answered."""
    d = tmp_path / "v"
    d.mkdir()
    shutil.copy(dataset.fixture_clips()[0].path, d / "short.mp4")
    long = synth.render_clip("normal", 1, width=64, height=48, fps=4, seconds=60)
    synth.encode(long, d / "long.mp4", fps=4)
    _raw_h264(synth.render_clip("normal", 2, width=64, height=48, fps=25, seconds=60), d / "long_raw.h264")
    out = tmp_path / "o.json"
    code = cli.main(["run", "--device", "cpu", "--videos", str(d), "--output", str(out), "--decode-workers", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "longest clip, long: 240 frames at 252x252 = 9720 video tokens" in err
    assert "1 video of unknown length" in err
    by_id = {r["video"]: r for r in json.loads(out.read_text())["results"]}
    assert by_id["short"]["status"] == "ok"
    for vid in ("long", "long_raw"):
        r = by_id[vid]
        assert r["status"] == "error" and r["error_type"] == "BudgetError", r
        assert "9720 video tokens" in r["error"] and "lower --fps, --max-frames or --resolution" in r["error"]


@pytest.mark.slow
def test_a_clip_over_the_budget_fails_alone_in_the_suite_too(pytester, tmp_path):
    """The pytest cells check the same budget (``run_cell``): the long clip's cell fails with the same
    BudgetError, the short one passes."""
    from core.base import paths, results

    d = tmp_path / "v"
    d.mkdir()
    shutil.copy(dataset.fixture_clips()[0].path, d / "short.mp4")
    synth.encode(synth.render_clip("normal", 1, width=64, height=48, fps=4, seconds=60), d / "long.mp4", fps=4)
    out = tmp_path / "r.jsonl"
    res = pytester.runpytest_subprocess(
        str(paths.PROJECT_ROOT / "bench" / "test_cells.py"), "-m", "cpu", "-p", "no:cacheprovider",
        "--rootdir", str(paths.PROJECT_ROOT), "-c", str(paths.PROJECT_ROOT / "pyproject.toml"), "--videos", str(d),
        "--model", "tiny", "--backend", "hf", "--format", "bf16", "--rounds", "1", "--warmup-rounds", "0",
        "--results", str(out))
    res.assert_outcomes(passed=1, failed=1)
    by_id = {r["video"]: r for r in results.load(out).answers()}
    assert by_id["short"]["status"] == "ok"
    assert by_id["long"]["error_type"] == "BudgetError" and "9720 video tokens" in by_id["long"]["error"]


def test_an_engine_that_cannot_fit_is_refused_before_it_loads(monkeypatch):
    """Weights over the device's memory: ``EnginePool`` refuses the engine (``DoesNotFit``, which the suite
    turns into a skip with the reason) before any backend code runs."""
    import core.cells.runner as runner
    from core.base.errors import DoesNotFit
    from core.models import registry
    from core.plan import device as devices
    from core.plan.capability import CapabilityVerdict
    from core.plan.formats import get_format
    from core.plan.matrix import Engine, EnginePlan
    from core.plan.settings import Settings

    small = devices.DeviceInfo(kind="cuda", name="NVIDIA T4-ish", capability=(9, 0), memory_gib=1)
    monkeypatch.setattr(devices, "primary", lambda: small)
    real = estimate.estimate
    monkeypatch.setattr(estimate, "estimate", lambda *a, **k: {**real(*a, **k), "weights_bytes": 3 * 2**30})
    monkeypatch.setattr(runner, "backend_class", lambda name: pytest.fail("the backend was built"))
    spec = registry.resolve("tiny")
    plan = EnginePlan(Engine(spec.name, "hf", "bf16", "cuda"), spec, get_format("bf16"), CapabilityVerdict(True),
                      device_class="sm90")
    pool = runner.EnginePool(Settings())
    for _ in range(2):  # worked out once, refused every time
        with pytest.raises(DoesNotFit, match=r"needs ~3\.0 GiB for its weights alone; .*NVIDIA T4-ish"):
            pool.get(plan)
    assert list(pool.budgets) == [plan.engine.id] and not pool.loads
