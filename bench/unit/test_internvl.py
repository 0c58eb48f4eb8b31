"""InternVL3.5 through transformers' native classes: the tiny model, the 4B shape, the RoadBuddy fixture."""

from __future__ import annotations

import csv
import importlib.util
import json
import math

import pytest

from core.base import paths
from core.inputs import dataset
from core.inputs.requests import EngineOptions, Request
from core.inputs.sampling import SamplingSpec
from core.inputs.tasks import LETTERS, MultipleChoiceTask
from core.inputs.video import load_frames
from core.models import internvl, registry
from core.models.families import InternVL, family
from core.plan.device import CPU, DeviceInfo
from core.plan.formats import get_format

pytestmark = pytest.mark.cpu

ROADBUDDY = paths.FIXTURES_DIR / "questions_roadbuddy.json"
TINY_TOKENS_PER_FRAME = internvl.image_seq_length(internvl.TINY_IMAGE_SIZE)
NEEDS_BNB = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                               reason="bitsandbytes is not installed: pip install 'vqbench[bnb]'")


@pytest.fixture(scope="module")
def tiny_dir():
    return registry.materialize(registry.resolve("tiny-internvl"))


@pytest.fixture(scope="module")
def mcq_request():
    """The pedestrian RoadBuddy item, anchored on its support frames, 2 fps within the seed's 8-32 frames."""
    from core.inputs.sampling import anchor

    clip = next(c for c in dataset.load(ROADBUDDY) if c.id == "rb_en_pedestrian_01")
    frames = load_frames(clip.path, anchor(SamplingSpec(fps=2.0, min_frames=8, max_frames=32), clip))
    task = MultipleChoiceTask()
    return Request(clip=clip, frames=frames, messages=task.messages(clip), candidates=task.candidates(clip))


def test_tiny_internvl_builds_identically_twice(tmp_path, tiny_dir):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    ra, rb = internvl.build_tiny_internvl(a), internvl.build_tiny_internvl(b)
    assert ra["weights_sha256"] == rb["weights_sha256"]
    assert ra["weights_sha256"] == registry.build_record(tiny_dir)["weights_sha256"]
    assert internvl.build_tiny_internvl(c, seed=1)["weights_sha256"] != ra["weights_sha256"]


def test_tiny_internvl_dimensions_suit_every_backend(tiny_dir):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    text, vision = cfg["text_config"], cfg["vision_config"]
    assert cfg["model_type"] == "internvl" and text["model_type"] == "qwen3"
    assert registry.FAMILIES[cfg["model_type"]] == "internvl"
    assert text["head_dim"] == 128  # vLLM's CPU attention rejects small head dims
    assert text["hidden_size"] == text["num_attention_heads"] * text["head_dim"]
    projector_in = vision["hidden_size"] * int(1 / cfg["downsample_ratio"]) ** 2
    for dim in (text["hidden_size"], text["intermediate_size"], text["vocab_size"], vision["hidden_size"],
                vision["intermediate_size"], projector_in):
        assert dim % 128 == 0, dim  # ModelOpt INT4 AWQ blocks of 128
    size, patch = vision["image_size"], vision["patch_size"]
    assert patch == [14, 14] and cfg["downsample_ratio"] == 0.5
    assert cfg["image_seq_length"] == (size[0] // patch[0]) ** 2 // 4 == TINY_TOKENS_PER_FRAME
    spec = registry.resolve("tiny-internvl")
    assert spec.kind == "embedded" and spec.family == "internvl" and isinstance(family(spec.family), InternVL)


def test_shape_spec_has_real_internvl35_4b_dimensions(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    internvl.build_shape_internvl(tmp_path, "internvl3.5-4b")
    cfg = json.loads((tmp_path / "config.json").read_text())
    t, v = cfg["text_config"], cfg["vision_config"]
    assert (t["model_type"], t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"],
            t["num_key_value_heads"], t["head_dim"], t["intermediate_size"], t["vocab_size"]) == (
        "qwen3", 2560, 36, 32, 8, 128, 9728, 151936)
    assert (v["hidden_size"], v["num_hidden_layers"], v["num_attention_heads"], v["intermediate_size"]) == (
        1024, 24, 16, 4096)
    assert v["image_size"] == [448, 448] and v["patch_size"] == [14, 14] and v["attention_bias"]
    assert cfg["downsample_ratio"] == 0.5 and cfg["image_seq_length"] == 256
    assert not list(tmp_path.glob("*.safetensors"))  # shape only: random weights are made on the GPU
    spec = registry.resolve("internvl3.5-4b")
    assert spec.needs_gpu and spec.family == "internvl"
    # InternVL3.5-4B is published as 4.7B parameters (0.3B vision + 4.4B language: untied lm_head).
    config = transformers.AutoConfig.from_pretrained(tmp_path, local_files_only=True)
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(config)
    assert 4.730e9 < sum(p.numel() for p in model.parameters()) < 4.735e9  # 4.732B for the -HF checkpoint
    proc = transformers.AutoProcessor.from_pretrained(tmp_path, local_files_only=True)
    assert proc.video_processor.size.height == 448 and proc.image_seq_length == 256


H200 = DeviceInfo(kind="cuda", name="NVIDIA H200", capability=(9, 0), memory_gib=141)


def test_vllm_names_the_hf_internvl_class_for_the_shape_config(tmp_path, monkeypatch):
    """The 4B shape's config.json (written from InternVLConfig) names no architecture: vLLM is told the
    HF-format InternVL class (its registry serves InternVLForConditionalGeneration with the interns1
    model; InternVLChatModel is the remote-code format). Built without starting vLLM or needing a GPU."""
    pytest.importorskip("transformers", reason="building the shape config needs transformers")
    from core.backends.vllm import VLLMBackend

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    spec = registry.resolve("internvl3.5-4b")
    directory = registry.materialize(spec)
    cfg = json.loads((directory / "config.json").read_text())
    assert cfg["model_type"] == "internvl" and not cfg.get("architectures")
    kwargs = VLLMBackend(spec, get_format("bf16"), H200, EngineOptions()).engine_kwargs(directory, None)
    assert kwargs["hf_overrides"]["architectures"] == ["InternVLForConditionalGeneration"]
    assert kwargs["load_format"] == "dummy"
    assert kwargs["gpu_memory_utilization"] == EngineOptions().gpu_memory_utilization


def test_vllm_refuses_a_family_it_has_no_class_for_in_words(tmp_path):
    import dataclasses

    from core.backends.vllm import ARCHITECTURES, VLLMBackend
    from core.base.errors import Unsupported
    from core.models.families import FAMILIES

    assert set(FAMILIES) <= set(ARCHITECTURES)  # every family a shape-only spec can have
    text = {"num_attention_heads": 8, "num_hidden_layers": 2, "hidden_size": 256, "vocab_size": 1024,
            "max_position_embeddings": 40960}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": text}))
    spec = dataclasses.replace(registry.resolve("internvl3.5-4b"), family="llava")
    with pytest.raises(Unsupported, match="no vLLM model class for its family 'llava'.*known: internvl, qwen2_5_vl"):
        VLLMBackend(spec, get_format("bf16"), H200, EngineOptions()).engine_kwargs(tmp_path, None)


def test_roadbuddy_fixture_loads_and_every_truth_resolves():
    clips = dataset.load(ROADBUDDY)
    task = MultipleChoiceTask()
    assert len(clips) == 15
    for clip in clips:
        assert clip.path.is_file() and clip.path.parent.name == "clips"
        assert task.candidates(clip) == list("ABCD")
        assert task.truth(clip) in LETTERS[:4]
        assert clip.support_frames and max(clip.support_frames) <= 4.0
    langs = {c.id.split("_")[1] for c in clips}
    assert langs == {"en", "vi", "zh"}
    # The truth names the clip's event: the option text of the truth letter is the kind's text.
    spec = importlib.util.spec_from_file_location("make_roadbuddy", paths.FIXTURES_DIR / "make_roadbuddy.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    manifest = (paths.FIXTURES_DIR / "clips" / "manifest.csv").read_text().splitlines()
    kinds = {row["video"]: row["kind"] for row in csv.DictReader(manifest)}
    for clip in clips:
        lang = clip.id.split("_")[1]
        body = clip.options[LETTERS.index(task.truth(clip))].split(". ", 1)[1]
        assert body == gen.OPTIONS[lang][kinds[clip.path.name]], clip.id
    assert gen.render(gen.build()) == ROADBUDDY.read_text(encoding="utf-8"), "run fixtures/make_roadbuddy.py"


@pytest.mark.parametrize("reply,expected", [("Đáp án: B", "B"), ("答案是C", "C"), ("The answer is D.", "D")])
def test_multilingual_replies_parse(reply, expected):
    clip = next(c for c in dataset.load(ROADBUDDY) if c.id.startswith("rb_vi_"))
    assert MultipleChoiceTask().parse(reply, clip) == expected


def _run(fmt_name: str, request: Request):
    from core.backends.hf import HFBackend

    backend = HFBackend(registry.resolve("tiny-internvl"), get_format(fmt_name), CPU, EngineOptions())
    with backend:
        gen = backend.answer(request)
        modules = {name: type(m).__name__ for name, m in backend.model.named_modules()}
    return backend.load_info, gen, modules


def test_hf_backend_runs_tiny_internvl_on_a_roadbuddy_clip(mcq_request):
    info, gen, _ = _run("bf16", mcq_request)
    assert set(gen.candidate_logprobs) == set("ABCD")
    assert all(math.isfinite(v) and v <= 0 for v in gen.candidate_logprobs.values())
    assert gen.predicted in "ABCD"
    n_frames = mcq_request.frames.array.shape[0]
    assert n_frames == 8 and gen.video_tokens == n_frames * TINY_TOKENS_PER_FRAME
    assert gen.prompt_tokens > gen.video_tokens
    assert 1 <= gen.new_tokens <= mcq_request.max_new_tokens
    assert set(gen.timings) == {"processor_s", "prefill_s", "decode_s", "generate_s", "total_s"}
    assert all(v >= 0 for v in gen.timings.values()) and gen.timings["prefill_s"] <= gen.timings["total_s"]
    # bf16, or float32 on a CPU without bf16 arithmetic (--cpu-dtype auto)
    assert info.details["dtype"] == CPU.dtype and info.weight_bytes > 0


@NEEDS_BNB
def test_bnb_nf4_quantizes_only_the_language_model(mcq_request):
    info, gen, modules = _run("bnb_nf4", mcq_request)
    assert all(math.isfinite(v) for v in gen.candidate_logprobs.values())
    linear = info.details["quantization"]["linear_modules"]
    four_bit = {n for n, cls in modules.items() if cls == "Linear4bit"}
    cfg = json.loads((registry.materialize(registry.resolve("tiny-internvl")) / "config.json").read_text())
    per_layer = 7  # q, k, v, o, gate, up, down
    assert sum(n for k, n in linear.items() if k.startswith("Linear4bit")) == len(four_bit)
    assert len(four_bit) == per_layer * cfg["text_config"]["num_hidden_layers"]
    assert all(n.startswith("model.language_model.layers.") for n in four_bit)
    for part in ("model.vision_tower.", "model.multi_modal_projector.", "lm_head"):
        assert any(n.startswith(part) and cls == "Linear" for n, cls in modules.items()), part
