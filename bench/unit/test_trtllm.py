"""The TensorRT-LLM backend without TensorRT-LLM: config mapping, the view directory, input building,
output parsing and load errors on the real tiny model; the backend's wiring against a fake
``tensorrt_llm``; and, where TensorRT-LLM is installed, the real thing (``-m trtllm``)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import types
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from bench.conftest import make_frames
from core.backends import trtllm
from core.base.errors import (
    ArtifactError,
    ConfigError,
    MissingDependency,
    NumericsError,
    Unsupported,
)
from core.inputs.requests import EngineOptions, Request
from core.inputs.tasks import AnomalyTask
from core.inputs.video import Frames, VideoClip
from core.models import registry
from core.plan import device as devices
from core.plan.device import DeviceInfo
from core.plan.formats import get_format

pytestmark = pytest.mark.cpu

FAKE_GPU = DeviceInfo(kind="cuda", index=0, name="fake H100", capability=(9, 0), memory_gib=80.0)
# Names TRT-LLM v1.1's enums accept (RotaryScalingType / PositionEmbeddingType in functional.py):
# "default" is not among them (seed 000), "mrope" is.
TRTLLM_V11_ROPE_NAMES = {"none", "linear", "dynamic", "longrope", "llama3", "yarn", "mrope",
                         "rope_gptj", "rope_gpt_neox", "long_rope"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """VQBENCH_CACHE for this module: the caller's if set (reuse a built tiny model), else a temp dir."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("VQBENCH_CACHE"):
            mp.setenv("VQBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield Path(os.environ["VQBENCH_CACHE"])


@pytest.fixture(scope="module")
def tiny_dir(cache) -> Path:
    pytest.importorskip("transformers", reason="building the tiny model needs transformers: pip install 'vqbench[hf]'")
    return registry.materialize(registry.resolve("tiny"))


@pytest.fixture(scope="module")
def tiny_config(tiny_dir) -> dict:
    return json.loads((tiny_dir / "config.json").read_text())


# --- config mapping ---------------------------------------------------------------------------------

def test_config_gets_the_mrope_scaling_trtllm_reads(tiny_config):
    before = json.dumps(tiny_config, sort_keys=True)
    out = trtllm.trtllm_config(tiny_config, vision_token_id=519)
    assert json.dumps(tiny_config, sort_keys=True) == before, "the input config was mutated"
    want = {"type": "mrope", "rope_type": "default", "mrope_section": [16, 24, 24]}
    for where in (out, out["text_config"]):
        assert where["rope_scaling"] == want
        assert where["rope_theta"] == 1_000_000.0
        assert where["torch_dtype"] == "bfloat16"
        # QwenAttention reads ["type"]; RopeParams.from_config reads "type" or "rope_type".
        scaling = where["rope_scaling"]
        assert (scaling.get("type") or scaling.get("rope_type")) in TRTLLM_V11_ROPE_NAMES
    assert out["vision_token_id"] == 519
    assert (out["hidden_size"], out["num_attention_heads"], out["vocab_size"]) == (256, 2, 640)
    assert out["model_type"] == "qwen2_5_vl" and out["text_config"]["model_type"] == "qwen2_5_vl_text"
    assert out["text_config"]["rope_parameters"] == tiny_config["text_config"]["rope_parameters"]


def test_config_mapping_is_idempotent_and_reads_hub_layout(tiny_config):
    once = trtllm.trtllm_config(tiny_config)
    assert trtllm.trtllm_config(once) == once
    assert once["vision_token_id"] == tiny_config["image_token_id"]  # no pad id given: a no-op in TRT-LLM's mask
    # A hub-style flat config written by transformers 4.x (its text config turned "mrope" into "default").
    hub = {"model_type": "qwen2_5_vl", "hidden_size": 3584, "num_attention_heads": 28, "image_token_id": 151655,
           "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [16, 24, 24]},
           "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "vision_token_id": 151654}
    out = trtllm.trtllm_config(hub)
    assert out["rope_scaling"]["type"] == "mrope" and out["vision_token_id"] == 151654
    assert "text_config" not in out


@pytest.mark.parametrize(("change", "message"), [
    ({"rope_type": "yarn", "factor": 4.0}, "scaled RoPE"),
    ({"mrope_section": None}, "no mrope_section"),
    ({"mrope_section": [16, 24, 16]}, "head_dim/2"),
])
def test_config_mapping_refuses_what_it_cannot_map(tiny_config, change, message):
    cfg = json.loads(json.dumps(tiny_config))
    cfg["text_config"]["rope_parameters"].update(change)
    with pytest.raises(ConfigError, match=message):
        trtllm.trtllm_config(cfg)


def test_tokenizer_config_moves_list_special_tokens():
    out = trtllm.trtllm_tokenizer_config({"extra_special_tokens": ["<|im_start|>", "<|video_pad|>"],
                                          "additional_special_tokens": ["<|im_start|>"], "eos_token": "<|im_end|>"})
    assert "extra_special_tokens" not in out
    assert out["additional_special_tokens"] == ["<|im_start|>", "<|video_pad|>"]
    assert out["eos_token"] == "<|im_end|>"
    as_dict = {"extra_special_tokens": {"image_token": "<|image_pad|>"}}
    assert trtllm.trtllm_tokenizer_config(as_dict) == as_dict  # the 4.x form is left alone


# --- the view directory -----------------------------------------------------------------------------

def test_view_rewrites_json_and_links_weights(tiny_dir, cache):
    view, record = trtllm.trtllm_view(tiny_dir)
    assert view.parent == cache / "trtllm-views"
    cfg = json.loads((view / "config.json").read_text())
    assert not (view / "config.json").is_symlink()
    assert cfg["rope_scaling"]["type"] == "mrope" and cfg["vision_token_id"] == 519  # <|vision_pad|>
    weights = view / "model.safetensors"
    assert weights.is_symlink() and weights.resolve() == (tiny_dir / "model.safetensors").resolve()
    tok = json.loads((view / "tokenizer_config.json").read_text())
    assert "extra_special_tokens" not in tok and "<|video_pad|>" in tok["additional_special_tokens"]
    video_proc = json.loads((view / "video_preprocessor_config.json").read_text())
    assert video_proc["video_processor_type"] == "Qwen2VLVideoProcessor"
    assert record["weights_layout"] == "legacy" and record["source"] == str(tiny_dir.resolve())
    assert not any(p.name == ".vqbench-complete.json" and p.is_symlink() for p in view.iterdir())


def test_view_is_built_once(tiny_dir):
    first, _ = trtllm.trtllm_view(tiny_dir)
    stamp = (first / "config.json").stat().st_mtime_ns
    second, _ = trtllm.trtllm_view(tiny_dir)
    assert second == first and (second / "config.json").stat().st_mtime_ns == stamp


def test_view_follows_the_source_config(tiny_dir, tmp_path):
    copy = tmp_path / "tiny-copy"
    copy.mkdir()
    for f in tiny_dir.iterdir():
        if not f.name.startswith("."):
            os.symlink(f.resolve(), copy / f.name)
    (copy / "config.json").unlink()
    cfg = json.loads((tiny_dir / "config.json").read_text())
    cfg["text_config"]["rope_parameters"]["rope_theta"] = 500_000.0
    (copy / "config.json").write_text(json.dumps(cfg))
    view, _ = trtllm.trtllm_view(copy)
    assert view != trtllm.trtllm_view(tiny_dir)[0]
    assert json.loads((view / "config.json").read_text())["rope_theta"] == 500_000.0


def test_view_still_loads_with_transformers(tiny_dir):
    transformers = pytest.importorskip("transformers")
    view, _ = trtllm.trtllm_view(tiny_dir)
    cfg = transformers.AutoConfig.from_pretrained(view, local_files_only=True)
    assert cfg.text_config.rope_parameters["mrope_section"] == [16, 24, 24]
    proc = transformers.AutoProcessor.from_pretrained(view, local_files_only=True)
    assert proc.tokenizer.convert_tokens_to_ids("<|video_pad|>") == cfg.video_token_id


def _transformers_4_reason() -> str:
    from core.plan import capability

    found = capability.version("transformers")
    if found and found.startswith("4."):
        return ""
    return f"needs transformers 4.x as TensorRT-LLM pins it (found {found}): run it under `tox -e trtllm`"


@pytest.mark.trtllm
@pytest.mark.skipif(bool(_transformers_4_reason()), reason=_transformers_4_reason() or "runnable")
def test_view_loads_as_transformers_4_reads_it(tiny_dir):
    """What TRT-LLM's Qwen2.5-VL path does with the view, under its transformers 4.x."""
    import torch
    import transformers

    view, _ = trtllm.trtllm_view(tiny_dir)
    cfg = transformers.AutoConfig.from_pretrained(view)
    cfg.rope_scaling["type"] = "mrope"  # Qwen2VLModelBase.__init__ (modeling_qwen2vl.py)
    assert cfg.text_config.rope_scaling["type"] == "mrope"  # what QwenAttention sees
    assert cfg.vision_token_id == 519 and cfg.text_config.torch_dtype == torch.bfloat16
    proc = transformers.AutoProcessor.from_pretrained(view)
    inputs = trtllm.build_inputs("<|vision_start|><|video_pad|><|vision_end|>Normal?", make_frames())
    out = proc(text=[inputs["prompt"]], videos=inputs["multi_modal_data"]["video"], do_rescale=False,
               return_tensors="pt", **inputs["mm_processor_kwargs"])
    assert out["video_grid_thw"].tolist() == [[2, 4, 6]]


# --- inputs -----------------------------------------------------------------------------------------

def test_build_inputs_gives_chw_float_frames():
    torch = pytest.importorskip("torch")
    frames = make_frames(t=4, h=56, w=84)
    inputs = trtllm.build_inputs("the prompt", frames)
    assert inputs["prompt"] == "the prompt"
    (video,) = inputs["multi_modal_data"]["video"]
    assert isinstance(video, list) and len(video) == 4
    for i, frame in enumerate(video):
        assert isinstance(frame, torch.Tensor) and frame.dtype == torch.float32
        assert tuple(frame.shape) == (3, 56, 84)
        assert float(frame[1, 10, 20]) == pytest.approx(frames.array[i, 10, 20, 1] / 255.0)
    assert 0.0 <= float(torch.stack(video).min()) and float(torch.stack(video).max()) <= 1.0
    assert inputs["mm_processor_kwargs"] == {"do_sample_frames": False, "do_resize": False, "fps": 1.0}


def test_build_inputs_wraps_frames_in_video_data_when_given():
    pytest.importorskip("torch")

    class VideoData:  # the shape of tensorrt_llm.inputs.VideoData
        def __init__(self, *, frames, metadata):
            self.frames, self.metadata = frames, metadata

    frames = make_frames()
    (video,) = trtllm.build_inputs("p", frames, video_data_cls=VideoData)["multi_modal_data"]["video"]
    assert isinstance(video, VideoData) and len(video.frames) == 4
    assert video.metadata == frames.metadata() and video.metadata["frames_indices"] == [0, 30, 60, 90]


def test_build_inputs_refuses_non_rgb_uint8():
    pytest.importorskip("torch")
    frames = make_frames()
    bad = Frames(**{**frames.__dict__, "array": frames.array.astype(np.float32)})
    with pytest.raises(ConfigError, match="uint8"):
        trtllm.build_inputs("p", bad)


# --- outputs ----------------------------------------------------------------------------------------

def fake_output(logits=None, *, token_ids=(3, 1), logprobs=None, prompt=(5, 9, 9, 9, 2), perf=None):
    completion = types.SimpleNamespace(text="Normal", token_ids=list(token_ids), generation_logits=logits,
                                       logprobs=logprobs or [], finish_reason="length", request_perf_metrics=perf)
    return types.SimpleNamespace(outputs=[completion], prompt_token_ids=list(prompt))


def log_softmax(row):
    row = np.asarray(row, dtype=np.float64)
    return row - row.max() - math.log(np.exp(row - row.max()).sum())


def test_parse_output_scores_candidates_over_the_full_vocabulary():
    logits = np.array([[0.0, 1.0, 2.0, 5.0, -1.0, 0.5, 0.0, 0.1],
                       [0.0, 4.0, 2.0, 1.0, -1.0, 0.5, 0.0, 0.1]], dtype=np.float32)
    perf = types.SimpleNamespace(timing_metrics=types.SimpleNamespace(
        arrival_time=timedelta(seconds=10.0), first_token_time=timedelta(seconds=10.25),
        last_token_time=timedelta(seconds=10.40)))
    got = trtllm.parse_output(fake_output(logits, perf=perf), {"Normal": 3, "Anomaly": 2}, top_k=3, vocab_size=8)
    first = log_softmax(logits[0])
    assert got["candidate_logprobs"] == pytest.approx({"Normal": first[3], "Anomaly": first[2]})
    assert [t for t, _ in got["top_logprobs"][0]] == [3, 2, 1]
    assert [t for t, _ in got["top_logprobs"][1]] == [1, 2, 3]
    assert got["top_logprobs"][1][0][1] == pytest.approx(log_softmax(logits[1])[1], abs=1e-6)
    assert got["token_ids"] == [3, 1] and got["greedy_consistent"] is True
    assert got["logprob_source"] == "generation_logits"
    assert (got["prompt_tokens"], got["video_tokens"]) == (5, 3)  # ids >= vocab_size are video tokens
    assert got["prefill_s"] == pytest.approx(0.25) and got["decode_s"] == pytest.approx(0.15)


def test_parse_output_accepts_torch_logits_with_a_beam_axis():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]]], dtype=torch.bfloat16)  # (1, T, V)
    got = trtllm.parse_output(fake_output(logits, token_ids=(1, 0)), {"a": 1, "b": 2}, top_k=2)
    assert got["candidate_logprobs"]["a"] == pytest.approx(log_softmax([0.0, 3.0, 1.0])[1], abs=1e-6)
    assert len(got["top_logprobs"]) == 2 and got["greedy_consistent"] is True
    assert got["prefill_s"] is None  # no request metrics


def test_parse_output_falls_back_to_returned_logprobs():
    lp = types.SimpleNamespace
    steps = [{3: lp(logprob=-0.1, rank=1), 2: lp(logprob=-2.5, rank=2), 7: lp(logprob=-4.0, rank=3)},
             {1: lp(logprob=-0.3, rank=1)}]
    got = trtllm.parse_output(fake_output(None, logprobs=steps), {"Normal": 3, "Anomaly": 2}, top_k=2)
    assert got["candidate_logprobs"] == {"Normal": -0.1, "Anomaly": -2.5}
    assert got["top_logprobs"][0] == [(3, -0.1), (2, -2.5)] and got["logprob_source"] == "logprobs"
    with pytest.raises(Unsupported, match="not among"):
        trtllm.parse_output(fake_output(None, logprobs=steps), {"Normal": 3, "Other": 5}, top_k=2)


def test_parse_output_raises_on_nan_logits():
    logits = np.array([[0.0, np.nan, 1.0, 2.0]], dtype=np.float32)
    with pytest.raises(NumericsError, match="non-finite"):
        trtllm.parse_output(fake_output(logits, token_ids=(3,)), {"x": 1, "y": 2}, top_k=2, where="tiny/fp8 on c1")


def test_parse_output_without_scores_says_what_to_request():
    with pytest.raises(Unsupported, match="return_generation_logits"):
        trtllm.parse_output(fake_output(None), {"x": 1}, top_k=2)


# --- load errors ------------------------------------------------------------------------------------

@pytest.fixture
def fake_trtllm(monkeypatch):
    """A stand-in ``tensorrt_llm`` with the few names the backend uses; records what LLM was given and
    the SamplingParams of every request (``calls["requests"]``, in order). Like the real engine, it
    returns generation logits, log-probs and perf metrics only to a request that asks for them."""
    calls: dict = {"requests": []}

    class KvCacheConfig:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class SamplingParams:
        _greedy_decoding = True

        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, model, **kw):
            calls["model"], calls["kwargs"] = model, kw
            self.vocab = json.loads((Path(model) / "config.json").read_text())["vocab_size"]

        def generate(self, inputs, params, use_tqdm=True):
            calls["inputs"] = inputs
            calls["requests"].append(dict(params.kw))
            time.sleep(0.02)
            logits = np.zeros((2, self.vocab), dtype=np.float32)
            logits[0, 263], logits[1, 508] = 5.0, 5.0
            logprobs = None
            if params.kw.get("logprobs"):  # the sampled token's entry of each step
                logprobs = [{t: types.SimpleNamespace(logprob=float(log_softmax(row)[t]), rank=1)}
                            for row, t in zip(logits, (263, 508))]
            perf = types.SimpleNamespace(timing_metrics=types.SimpleNamespace(
                arrival_time=timedelta(seconds=1.0), first_token_time=timedelta(seconds=1.005),
                last_token_time=timedelta(seconds=1.008)))
            return fake_output(logits if params.kw.get("return_generation_logits") else None,
                               token_ids=(263, 508), prompt=[510, 641, 641, 641, 511], logprobs=logprobs,
                               perf=perf if params.kw.get("return_perf_metrics") else None)

        def shutdown(self):
            calls["shutdown"] = True

    root = types.ModuleType("tensorrt_llm")
    root.LLM, root.SamplingParams = LLM, SamplingParams
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.KvCacheConfig = KvCacheConfig
    monkeypatch.setitem(sys.modules, "tensorrt_llm", root)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", llmapi)
    return calls


def backend(fmt: str = "bf16", device: DeviceInfo = FAKE_GPU) -> trtllm.TRTLLMBackend:
    return trtllm.TRTLLMBackend(registry.resolve("tiny"), get_format(fmt), device, EngineOptions())


def test_load_without_tensorrt_llm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)  # makes `import tensorrt_llm` fail
    with pytest.raises(MissingDependency, match="tensorrt-llm") as err:
        backend().load()
    assert "tox -e trtllm" in str(err.value)


def test_load_refuses_the_cpu(fake_trtllm):
    with pytest.raises(Unsupported, match="needs a CUDA GPU"):
        backend(device=devices.CPU).load()


def test_load_refuses_formats_trtllm_cannot_load(fake_trtllm):
    with pytest.raises(Unsupported, match="bitsandbytes"):
        backend("bnb_int8").load()


def test_modelopt_format_without_export_explains_how_to_make_it(fake_trtllm, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trtllm, "export_dir", lambda *a: tmp_path / "not-exported-yet")
    with pytest.raises(ArtifactError, match="python -m core.backends.trtllm export --model tiny --format fp8"):
        backend("fp8").load()


def test_export_check_matches_the_format(tmp_path):
    assert trtllm.expected_quant_algo(get_format("int4_awq")) == "W4A16_AWQ"
    assert trtllm.expected_quant_algo(get_format("bf16")) is None
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(
        {"quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": None}}))
    assert trtllm.check_export(tmp_path, get_format("fp8"))["quant_algo"] == "FP8"
    with pytest.raises(ArtifactError, match="needs NVFP4"):
        trtllm.check_export(tmp_path, get_format("nvfp4"))
    with pytest.raises(ArtifactError, match="needs FP8, FP8"):
        trtllm.check_export(tmp_path, get_format("fp8+kv_fp8"))


def _no_modelopt_reason() -> str:
    from core.plan import capability

    return capability.missing_reason(["torch", "transformers", "modelopt"], "a ModelOpt export") or ""


@pytest.mark.slow
@pytest.mark.skipif(bool(_no_modelopt_reason()), reason=_no_modelopt_reason() or "runnable")
def test_modelopt_export_is_what_the_backend_loads(fake_trtllm, tiny_dir):
    fp8 = get_format("fp8")
    path = trtllm.export_for_trtllm(registry.resolve("tiny"), fp8, EngineOptions(), devices.CPU)
    assert path == trtllm.export_dir(registry.resolve("tiny"), fp8, EngineOptions())
    quant = trtllm.check_export(path, fp8)
    assert quant["quant_algo"] == "FP8" and "lm_head" in quant["exclude_modules"]
    assert trtllm.weights_layout(path) == "legacy"
    info = backend("fp8").load()
    assert info.details["source"] == "modelopt export" and info.details["quant_algo"] == "FP8"
    view = Path(fake_trtllm["model"])
    assert (view / "hf_quant_config.json").is_symlink()  # where ModelConfig.from_pretrained looks
    assert json.loads((view / "config.json").read_text())["rope_scaling"]["type"] == "mrope"


def test_backend_wiring_with_a_fake_tensorrt_llm(fake_trtllm, tiny_dir):
    pytest.importorskip("torch")
    b = backend()
    info = b.load()
    assert Path(fake_trtllm["model"]).parent.name == "trtllm-views"
    kw = fake_trtllm["kwargs"]
    assert kw["backend"] == "pytorch" and kw["attn_backend"] == "TRTLLM" and kw["gather_generation_logits"]
    assert kw["kv_cache_config"].enable_block_reuse is False and info.weight_bytes > 0
    clip = VideoClip(path=Path("clip.mp4"), id="clip0")
    req = Request(clip=clip, frames=make_frames(), messages=AnomalyTask().messages(clip),
                  candidates=["Normal", "Anomaly"], max_new_tokens=2)
    gen = b.answer(req)
    assert "<|video_pad|>" in fake_trtllm["inputs"]["prompt"]
    assert [r["max_tokens"] for r in fake_trtllm["requests"]] == [2, 2]  # the timed request, then scoring
    assert gen.token_ids == [263, 508] and gen.predicted == "Normal"
    assert gen.candidate_logprobs["Normal"] > gen.candidate_logprobs["Anomaly"]
    assert (gen.prompt_tokens, gen.video_tokens) == (5, 3)
    t = gen.timings
    assert t["prefill_s"] == pytest.approx(0.005) and 0 < t["prefill_s"] <= t["generate_s"] <= t["total_s"]
    assert gen.extra["timing_source"] == "request_perf_metrics"
    b.close()
    assert fake_trtllm["shutdown"] and not hasattr(b, "llm")


def test_timed_request_is_plain_and_scoring_is_a_separate_request(fake_trtllm, tiny_dir):
    """Audit finding 14: the timed request asks for no logits and no log-probs (as vLLM's timed request),
    so its latency holds no full-vocabulary logits copy; the candidates' scores come from a second,
    untimed request that asks for them, and the record says so."""
    pytest.importorskip("torch")
    b = backend()
    b.load()
    clip = VideoClip(path=Path("clip.mp4"), id="clip0")
    req = Request(clip=clip, frames=make_frames(), messages=AnomalyTask().messages(clip),
                  candidates=["Normal", "Anomaly"], max_new_tokens=2)
    try:
        gen = b.generate(req)
        (timed,) = fake_trtllm["requests"]
        assert not timed.get("return_generation_logits") and timed.get("logprobs") is None, timed
        assert not timed.get("return_context_logits")
        assert timed["max_tokens"] == 2 and timed["return_perf_metrics"]
        assert gen.token_ids == [263, 508] and not gen.scored and gen.top_logprobs == []
        assert "logprob_source" not in gen.extra and "candidate_scoring" not in gen.extra

        gen = b.score(req, gen)
        assert len(fake_trtllm["requests"]) == 2
        scoring = fake_trtllm["requests"][1]
        assert scoring["return_generation_logits"] and scoring["logprobs"] == EngineOptions().top_k
        assert scoring["max_tokens"] == 2
        assert gen.predicted == "Normal" and len(gen.top_logprobs) == 2
        assert gen.candidate_logprobs["Normal"] > gen.candidate_logprobs["Anomaly"]
        assert gen.extra["candidate_scoring"] == "untimed scoring request (generation_logits)"
        assert gen.extra["logprob_source"] == "generation_logits" and gen.extra["greedy_consistent"] is True
        assert "scoring_tokens_differ" not in gen.extra
        assert gen.timings["prefill_s"] == pytest.approx(0.005)  # the timed request's, untouched by scoring
    finally:
        b.close()
