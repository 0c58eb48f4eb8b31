"""llm-compressor as a quantizer, tested without llm-compressor: recipes as data, the ignore fix, the
artifact cache (keys, reuse, atomicity) through a stand-in for its environment's python, failure
messages, capability verdicts on CPU/A100/H200/B200, the config-only checkpoints of shape-only
models, and the environment recipe's bookkeeping."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from core.base.errors import ArtifactError
from core.inputs.requests import EngineOptions
from core.plan import capability, device
from core.plan.device import DeviceInfo
from core.plan.formats import get_format
from core.quant import llmcompressor_q as llmc

pytestmark = pytest.mark.cpu

A100 = DeviceInfo(kind="cuda", name="NVIDIA A100", capability=(8, 0), memory_gib=80)
H200 = DeviceInfo(kind="cuda", name="NVIDIA H200", capability=(9, 0), memory_gib=141)
B200 = DeviceInfo(kind="cuda", name="NVIDIA B200", capability=(10, 0), memory_gib=180)
CT_FORMATS = ("ct_w8a8", "ct_w4a16", "ct_fp8_dynamic", "ct_nvfp4")

# A stand-in for the llm-compressor environment's python: answers the version probe and plays the
# worker (writes a checkpoint, fails, or is killed), logging every job it is given.
FAKE_PYTHON = r'''#!{python}
import json, os, signal, sys
from pathlib import Path
args = sys.argv[1:]
if args[0] == "-c":
    print(json.dumps({{"python": "3.11", "llmcompressor_found": True, "llmcompressor": "0.14.0.1",
                       "compressed-tensors": os.environ.get("FAKE_CT_VERSION", "0.20.0"),
                       "transformers": "5.23.0", "torch": "2.14.1"}}))
    sys.exit(0)
assert args[:2] == ["-m", "core.quant.llmcompressor_worker"], args
job = json.loads(Path(args[2]).read_text())
with open(os.environ["FAKE_CALLS"], "a") as fh:
    fh.write(json.dumps(job) + "\n")
mode = os.environ.get("FAKE_MODE", "ok")
print("loading the model ...", flush=True)
if mode == "fail":
    print("Traceback (most recent call last):\nValueError: tensor column shape must be divisible by 128", flush=True)
    sys.exit(3)
if mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
out = Path(job["out"])
ignore = ["lm_head"] + (["re:.*visual.*"] if mode != "no-fix" else [])
(out / "config.json").write_text(json.dumps({{"model_type": "qwen2_5_vl", "quantization_config": {{
    "quant_method": "compressed-tensors", "format": "int-quantized", "ignore": ignore}}}}))
(out / "model.safetensors").write_bytes(b"packed weights")
(out / "vqbench-export.json").write_text(json.dumps({{"format": job["format"], "layers": {{"language_model": 14}}}}))
'''


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """A cache in tmp, a stand-in model directory and a stand-in llm-compressor python; returns the
    file its jobs are logged to."""
    from core.models import registry

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (model / "model.safetensors").write_bytes(b"bf16 weights")
    monkeypatch.setattr(registry, "materialize", lambda spec: model)
    python = tmp_path / "llmc-env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON.format(python=sys.executable))
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(llmc.PYTHON_ENV, str(python))
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    llmc.probe.cache_clear()
    yield calls
    llmc.probe.cache_clear()


def export(fmt: str, **options):
    from core.models import registry

    return llmc.export(registry.resolve("tiny-trained"), get_format(fmt), options=EngineOptions(**options),
                       device=device.CPU)


def jobs(calls: Path) -> list[dict]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


# --- recipes as data ---------------------------------------------------------------------------------

def test_recipes_keep_vision_and_lm_head_high_precision_and_scope_smoothquant_to_the_language_model():
    for name in CT_FORMATS:
        rec = llmc.recipe(get_format(name))
        modifiers = rec.document()["quant_stage"]["quant_modifiers"]
        quantizing = [m for m in modifiers.values() if "scheme" in m]
        assert len(quantizing) == 1 and quantizing[0]["targets"] == ["Linear"], name
        assert {"lm_head", "re:visual.*", "re:model.visual.*"} <= set(quantizing[0]["ignore"]), name
    w8a8 = llmc.recipe(get_format("ct_w8a8")).document()["quant_stage"]["quant_modifiers"]
    assert list(w8a8) == ["SmoothQuantModifier", "GPTQModifier"]  # smoothing first, then GPTQ
    assert w8a8["GPTQModifier"]["scheme"] == "W8A8"
    for balance, smooth in w8a8["SmoothQuantModifier"]["mappings"]:
        assert all("language_model" in b for b in balance) and "language_model" in smooth
    assert llmc.recipe(get_format("ct_w4a16")).document()["quant_stage"]["quant_modifiers"]["GPTQModifier"][
        "scheme"] == "W4A16"
    assert not llmc.recipe(get_format("ct_fp8_dynamic")).calibrated
    assert llmc.recipe(get_format("ct_nvfp4")).calibrated  # its activation global scale needs data


def test_recipe_documents_are_copies_and_other_tools_are_refused():
    rec = llmc.recipe(get_format("ct_w8a8"))
    rec.document()["quant_stage"]["quant_modifiers"]["GPTQModifier"]["ignore"].append("oops")
    assert "oops" not in rec.document()["quant_stage"]["quant_modifiers"]["GPTQModifier"]["ignore"]
    with pytest.raises(ArtifactError, match="not an llm-compressor format"):
        llmc.recipe(get_format("int8_sq"))


def test_job_carries_recipe_calibration_and_sequential_targets(tmp_path):
    from core.models import registry
    from core.quant import calibration

    spec = registry.resolve("tiny-trained")
    calib = calibration.make("captions", 4)
    job = llmc.job_for(spec, get_format("ct_w4a16"), directory=tmp_path, calib=calib, out=tmp_path / "out")
    assert job["calibration"] == calib.describe() and job["sequential_targets"] == ["Qwen2_5_VLDecoderLayer"]
    assert job["recipe"] == llmc.RECIPES["W4A16_GPTQ"].document() and job["family"] == "qwen2_5_vl"
    json.dumps(job)  # the worker reads it as JSON
    assert llmc.job_for(spec, get_format("ct_fp8_dynamic"), directory=tmp_path, calib=None,
                        out=tmp_path)["calibration"] is None


# --- the ignore fix ------------------------------------------------------------------------------------

def test_ignore_fix_is_added_once_without_touching_the_input():
    config = {"quantization_config": {"ignore": ["visual.blocks.0.attn.qkv", "lm_head"]}}
    fixed = llmc.with_ignore_fix(config)
    assert fixed["quantization_config"]["ignore"] == ["visual.blocks.0.attn.qkv", "lm_head", "re:.*visual.*"]
    assert config["quantization_config"]["ignore"] == ["visual.blocks.0.attn.qkv", "lm_head"]
    assert llmc.with_ignore_fix(fixed) == fixed
    with pytest.raises(ArtifactError, match="no quantization_config"):
        llmc.with_ignore_fix({"model_type": "qwen2_5_vl"})


def test_checkpoint_check_refuses_a_checkpoint_without_the_ignore_fix(fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "no-fix")
    with pytest.raises(ArtifactError, match=r"lacks 're:\.\*visual\.\*'"):
        export("ct_w8a8")
    assert not list((Path(llmc.paths.cache_dir()) / "artifacts").glob("[0-9a-f]*"))  # nothing half-made stays


# --- the artifact cache ---------------------------------------------------------------------------------

def test_checkpoint_is_made_once_then_reused(fake_env):
    path, first = export("ct_w8a8", calibration="captions", calib_size=4)
    assert not first["cached"] and (path / "model.safetensors").is_file()
    assert first["versions"]["llmcompressor"] == "0.14.0.1" and first["calibration"]["size"] == 4
    again, second = export("ct_w8a8", calibration="captions", calib_size=4)
    assert again == path and second["cached"] and second["artifact_key"] == first["artifact_key"]
    assert len(jobs(fake_env)) == 1  # the second run did not start the tool
    assert (path / "vqbench-job.json").is_file() and (path / "llmcompressor.log").is_file()


def test_the_job_tells_the_worker_whether_pickle_weights_are_allowed(fake_env):
    export("ct_fp8_dynamic")
    export("ct_w8a8", calibration="captions", calib_size=4, allow_pickle=True)
    assert [job["allow_pickle"] for job in jobs(fake_env)] == [False, True]


def test_cache_key_follows_calibration_format_and_tool_versions(fake_env, monkeypatch):
    base = export("ct_w8a8", calibration="captions", calib_size=4)[1]["artifact_key"]
    assert export("ct_w8a8", calibration="captions", calib_size=8)[1]["artifact_key"] != base
    assert export("ct_w4a16", calibration="captions", calib_size=4)[1]["artifact_key"] != base
    monkeypatch.setenv("FAKE_CT_VERSION", "0.21.0")
    llmc.probe.cache_clear()
    newer = export("ct_w8a8", calibration="captions", calib_size=4)
    assert newer[1]["artifact_key"] != base and not newer[1]["cached"]
    assert len(jobs(fake_env)) == 4


def test_data_free_recipe_ignores_the_calibration_options(fake_env):
    a = export("ct_fp8_dynamic", calibration="captions", calib_size=4)
    b = export("ct_fp8_dynamic", calibration="clips", calib_size=2)
    assert a[0] == b[0] and b[1]["cached"]
    assert [j["calibration"] for j in jobs(fake_env)] == [None]


def test_checkpoint_for_dispatches_on_the_tools_exporter(fake_env):
    from core.backends.exports import checkpoint_for
    from core.models import registry
    from core.quant import quantizer_info

    assert quantizer_info("modelopt").exporter == "core.backends.modelopt_export:export"
    path, report = checkpoint_for(registry.resolve("tiny-trained"), get_format("ct_w4a16"),
                                  options=EngineOptions(calib_size=2), device=device.CPU)
    assert report["tool"] == "llmcompressor" and path.is_dir()
    with pytest.raises(ArtifactError, match="writes no checkpoint"):
        checkpoint_for(registry.resolve("tiny-trained"), get_format("bnb_nf4"), options=EngineOptions(),
                       device=device.CPU)


# --- failures say what happened and how to reproduce it --------------------------------------------------

def test_a_failing_tool_reports_its_log_tail_and_how_to_reproduce(fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "fail")
    with pytest.raises(ArtifactError) as err:
        export("ct_w4a16", calib_size=2)
    msg = str(err.value)
    assert "llm-compressor failed making ct_w4a16 of tiny-trained: exit 3" in msg
    assert "divisible by 128" in msg and "Reproduce with: PYTHONPATH=" in msg
    kept_job = Path(msg.rsplit(" ", 1)[-1])
    assert kept_job.name == "vqbench-job.json" and json.loads(kept_job.read_text())["format"] == "ct_w4a16"
    assert (kept_job.parent / "llmcompressor.log").is_file()
    assert not list((Path(llmc.paths.cache_dir()) / "artifacts").glob("[0-9a-f]*"))


def test_a_killed_tool_points_at_memory(fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "kill")
    with pytest.raises(ArtifactError, match="exit -9 .*out-of-memory killer"):
        export("ct_nvfp4", calib_size=2)


def test_missing_environment_says_how_to_build_it(tmp_path, monkeypatch):
    from core.models import registry

    monkeypatch.setenv(llmc.PYTHON_ENV, str(tmp_path / "nowhere" / "bin" / "python"))
    llmc.probe.cache_clear()
    why = llmc.unavailable(registry.resolve("tiny-trained"))
    assert "pins transformers <=5.17" in why and "tox -e llmcompressor" in why and llmc.PYTHON_ENV in why
    with pytest.raises(ArtifactError, match="tox -e llmcompressor"):
        llmc.export(registry.resolve("tiny-trained"), get_format("ct_w8a8"), options=EngineOptions(),
                    device=device.CPU)
    assert llmc.unavailable(registry.resolve("qwen2.5-vl-7b")) is None  # config-only: no run of the tool
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'ImportError: libfoo.so' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv(llmc.PYTHON_ENV, str(broken))
    llmc.probe.cache_clear()
    assert "does not run: ImportError: libfoo.so;" in llmc.unavailable()
    llmc.probe.cache_clear()


# --- capability ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,fmt,dev,runnable,mode,reason", [
    ("hf", "ct_w8a8", device.CPU, True, "emulated", "weights unpacked to bf16"),
    ("hf", "ct_w4a16", H200, True, "emulated", "weights unpacked to bf16"),
    ("hf", "ct_nvfp4", device.CPU, True, "emulated", "fake-quantized"),
    ("hf", "ct_fp8_dynamic", B200, True, "emulated", "bf16 speed and memory"),
    ("vllm", "ct_w8a8", device.CPU, True, "native", ""),
    ("vllm", "ct_w4a16", device.CPU, True, "native", ""),
    ("vllm", "ct_fp8_dynamic", device.CPU, True, "emulated", "AMX-FP8"),
    ("vllm", "ct_nvfp4", device.CPU, False, "native", "CUDA and ROCm entries only"),
    ("vllm", "ct_w8a8", A100, True, "native", ""),
    ("vllm", "ct_w4a16", A100, True, "native", ""),
    ("vllm", "ct_fp8_dynamic", A100, True, "emulated", "FP8 Marlin"),
    ("vllm", "ct_nvfp4", A100, True, "emulated", "FP4 Marlin"),
    ("vllm", "ct_w8a8", H200, True, "native", ""),
    ("vllm", "ct_w4a16", H200, True, "native", ""),
    ("vllm", "ct_fp8_dynamic", H200, True, "native", ""),
    ("vllm", "ct_nvfp4", H200, True, "emulated", "needs sm_100+"),
    ("vllm", "ct_nvfp4", B200, True, "native", ""),
    ("vllm", "ct_fp8_dynamic", B200, True, "native", ""),
    ("trtllm", "ct_w8a8", H200, False, "native", "ModelOpt exports"),
])
def test_verdicts(backend, fmt, dev, runnable, mode, reason):
    v = capability.check(backend, get_format(fmt), dev, check_packages=False)
    assert v.runnable is runnable, v
    assert reason in v.reason, v
    if runnable:
        assert v.mode == mode and v.real_kernels is (mode == "native"), v


def test_verdicts_that_depend_on_the_model(monkeypatch):
    from core.models import registry

    monkeypatch.setattr(capability, "installed", lambda p: True)
    monkeypatch.setattr(llmc, "unavailable", lambda spec=None: None if spec and spec.kind == "shape" else "no env")
    seven_b = registry.resolve("qwen2.5-vl-7b")
    assert capability.check("vllm", get_format("ct_w4a16"), H200, spec=seven_b).mode == "native"
    hf = capability.check("hf", get_format("ct_w4a16"), H200, spec=seven_b)
    assert not hf and "shape-only" in hf.reason and "dummy" in hf.reason
    internvl = capability.check("vllm", get_format("ct_w8a8"), device.CPU, spec=registry.resolve("tiny-internvl"))
    assert not internvl and "written for qwen2_5_vl" in internvl.reason
    missing = capability.check("vllm", get_format("ct_w8a8"), device.CPU, spec=registry.resolve("tiny-trained"))
    assert not missing and missing.reason == "no env"


def test_hf_route_needs_compressed_tensors_and_says_how(monkeypatch):
    monkeypatch.setattr(capability, "installed", lambda p: p != "compressed_tensors")
    v = capability.check("hf", get_format("ct_w8a8"), device.CPU)
    assert not v and "compressed-tensors" in v.reason and "pip install 'vqbench[ct]'" in v.reason


def test_storage_width_and_drift_tiers_follow_the_bits():
    from core.metrics.verdict import EIGHT_BIT, FOUR_BIT, thresholds_for

    for name in CT_FORMATS:
        fmt = get_format(name)
        assert fmt.stored_bytes_per_weight("hf") == 2.0  # decompressed to bf16
        assert fmt.stored_bytes_per_weight("vllm") < 1.01
    assert thresholds_for("ct_w8a8") == thresholds_for("ct_fp8_dynamic") == EIGHT_BIT
    assert thresholds_for("ct_w4a16") == thresholds_for("ct_nvfp4") == FOUR_BIT


# --- shape-only models: config-only checkpoints ----------------------------------------------------------

def test_committed_configs_come_from_real_checkpoints_of_every_recipe():
    data = llmc.quantization_configs()
    assert set(data["configs"]) == set(llmc.RECIPES) and data["source"]["versions"]["llmcompressor"]
    expected = {"W8A8_SQ_GPTQ": "int-quantized", "W4A16_GPTQ": "pack-quantized", "FP8_DYNAMIC": "float-quantized",
                "NVFP4": "nvfp4-pack-quantized"}
    for recipe_name, qcfg in data["configs"].items():
        assert qcfg["quant_method"] == "compressed-tensors" and qcfg["format"] == expected[recipe_name]
        assert {"lm_head", llmc.HF_IGNORE_FIX} <= set(qcfg["ignore"])
        (group,) = qcfg["config_groups"].values()
        assert group["targets"] == ["Linear"]
    w8a8 = data["configs"]["W8A8_SQ_GPTQ"]["config_groups"]["group_0"]
    assert w8a8["input_activations"]["dynamic"] is True and w8a8["input_activations"]["strategy"] == "token"
    assert data["configs"]["W4A16_GPTQ"]["config_groups"]["group_0"]["weights"]["group_size"] == 128


def test_shape_only_model_gets_a_config_only_checkpoint_for_dummy_weights(tmp_path, monkeypatch):
    pytest.importorskip("transformers", reason="building the shape config needs transformers")
    from core.backends.vllm import VLLMBackend, _weights
    from core.models import registry

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(llmc.PYTHON_ENV, str(tmp_path / "no-env"))  # the tool is not needed for this
    spec, fmt = registry.resolve("qwen2.5-vl-7b"), get_format("ct_w4a16")
    path, report = llmc.export(spec, fmt, options=EngineOptions(), device=H200)
    config = json.loads((path / "config.json").read_text())
    assert config["quantization_config"] == llmc.quantization_configs()["configs"]["W4A16_GPTQ"]
    assert config["text_config"]["hidden_size"] == 3584 and not list(path.glob("*.safetensors"))
    assert (path / "tokenizer.json").is_file() and report["dummy_weights"] and not report["cached"]
    assert llmc.export(spec, fmt, options=EngineOptions(), device=H200)[1]["cached"]
    kwargs = VLLMBackend(spec, fmt, H200, EngineOptions()).engine_kwargs(path, "compressed-tensors", dummy=True)
    assert kwargs["load_format"] == "dummy" and kwargs["quantization"] == "compressed-tensors"
    bf16_dir = registry.materialize(spec)
    assert _weights(path, spec, fmt)[0] < 0.6 * _weights(bf16_dir, spec, get_format("bf16"))[0]


def test_dummy_weights_are_labelled_estimates(tmp_path, monkeypatch):
    """A config-only or shape-only checkpoint has no weight files: its weights figure is an estimate
    (params x nominal bytes per weight) and says so; a checkpoint with files is measured from them."""
    pytest.importorskip("transformers", reason="building the shape config needs transformers")
    from core.backends.vllm import _weights
    from core.models import registry

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(llmc.PYTHON_ENV, str(tmp_path / "no-env"))
    spec, fmt = registry.resolve("qwen2.5-vl-7b"), get_format("ct_w4a16")
    config_only, _ = llmc.export(spec, fmt, options=EngineOptions(), device=H200)
    shape_only = registry.materialize(spec)
    for directory, f in ((config_only, fmt), (shape_only, get_format("bf16"))):
        size, source = _weights(directory, spec, f)
        assert source == "estimate" and size > 2**30, (directory, size, source)
    files = tmp_path / "with-files"
    files.mkdir()
    (files / "model.safetensors").write_bytes(b"\0" * 4096)
    assert _weights(files, spec, get_format("bf16")) == (4096, "checkpoint files")


# --- the HF side -----------------------------------------------------------------------------------------

def test_hf_apply_refuses_a_quantized_vision_tower(tmp_path):
    torch = pytest.importorskip("torch", reason="needs torch")
    from core.quant.base import QuantContext

    class Scheme:
        input_activations = None

    def model_with(names):
        model = torch.nn.Module()
        for name in names:
            parent = model
            *path, last = name.split(".")
            for part in path:
                if not hasattr(parent, part):
                    parent.add_module(part, torch.nn.Module())
                parent = getattr(parent, part)
            layer = torch.nn.Linear(4, 4)
            layer.quantization_scheme, layer.quantization_status = Scheme(), "compressed"
            parent.add_module(last, layer)
        return model

    ctx = QuantContext(spec=None, directory=tmp_path, processor=None, device=device.CPU, options=EngineOptions())
    quantizer = llmc.LLMCompressorQuantizer()
    with pytest.raises(ArtifactError, match="vision-tower layers were loaded quantized"):
        quantizer.apply(model_with(["model.visual.blocks.0.qkv", "model.language_model.q_proj"]),
                        get_format("ct_w8a8"), ctx)
    applied = quantizer.apply(model_with(["model.language_model.q_proj"]), get_format("ct_w4a16"), ctx)
    assert applied.report["runs"] == "decompressed" and applied.report["layers"] == {"language_model": 1}
    assert "activations in bf16" in applied.report["how"]


# --- the environment recipe ------------------------------------------------------------------------------

def test_env_recipe_keeps_the_projects_torch_and_transformers(monkeypatch):
    from core.tools.envs import llmcompressor as recipe

    reqs = ["loguru>=0.7.2", "torch<=2.14.0,>=2.10.0", "transformers<=5.17.0,>=5.15.0", "datasets>=4.8.4",
            "auto-round<=0.15.1,>=0.14.1", "compressed-tensors==0.19.0", 'pytest>=6.0.0; extra == "dev"',
            "transformers>=4.38", "accelerate", "accelerate"]
    monkeypatch.setattr(recipe, "run", lambda cmd, capture=False: json.dumps(reqs))
    assert recipe.tool_requirements(Path("python")) == ["loguru>=0.7.2", "datasets>=4.8.4", "accelerate"]
    state = {"llmcompressor": "0.14.0.1", "compressed-tensors": "0.20.0", "auto-round": "0.15.1",
             "torch": "2.14.1", "transformers": "5.23.0", "datasets": "5.2.0"}
    assert recipe.ready(state, {"recipe": recipe.RECIPE})
    assert not recipe.ready({**state, "transformers": "5.17.0"}, {"recipe": recipe.RECIPE})  # the video bug
    assert not recipe.ready(state, None) and not recipe.ready({**state, "llmcompressor": None}, {"recipe": "1"})


def test_goldens_record_the_versions_of_the_environment_that_made_the_checkpoint(fake_env):
    from core.plan.golden import recorded_with

    versions = recorded_with("vllm", "llmcompressor")
    assert versions["llmcompressor"] == "0.14.0.1"
    assert versions["llmcompressor env"] == "compressed-tensors 0.20.0, transformers 5.23.0, torch 2.14.1"


def test_worker_dataset_rows_round_trip_to_the_samples_the_model_would_see():
    """The worker stores each calibration sample as lists (a datasets row) and its collator turns a
    batch of one back into the tensors ``calibration.samples`` yielded."""
    torch = pytest.importorskip("torch", reason="needs torch")
    pytest.importorskip("transformers", reason="the tokenizer needs transformers")
    from core.models.families import family
    from core.models.tokenizer import build_tokenizer
    from core.quant import calibration
    from core.quant.llmcompressor_worker import collate

    samples = list(calibration.samples(calibration.make("captions", 2), processor=build_tokenizer(),
                                       family=family("qwen2_5_vl")))
    assert len(samples) == 2 and set(samples[0]) == {"input_ids", "attention_mask"}
    for sample in samples:
        row = {k: v.tolist() for k, v in sample.items()}
        back = collate([row])
        assert all(torch.equal(back[k], sample[k]) for k in sample)
    with pytest.raises(ValueError):
        collate([row, row])  # one sample per batch: video samples differ in length and keys
