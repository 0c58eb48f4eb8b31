"""Pre-quantized checkpoints as models: their format read from their files, never quantized again,
verdicts per backend and device, drift against a --reference-model, goldens keyed by model and format.
The checkpoints are made here, in the hub's directory layout (``bench/unit/_hub_checkpoints.py``)."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.unit import _hub_checkpoints as hub
from core.base.errors import ConfigError, ModelError
from core.models import prequantized, registry
from core.plan import capability, device
from core.plan.device import DeviceInfo
from core.plan.formats import get_format

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]

H100 = DeviceInfo(kind="cuda", name="NVIDIA H100", capability=(9, 0), memory_gib=80)
A100 = DeviceInfo(kind="cuda", name="NVIDIA A100", capability=(8, 0), memory_gib=80)
B200 = DeviceInfo(kind="cuda", name="NVIDIA B200", capability=(10, 0), memory_gib=180)

CONFIG_ONLY = {  # name -> (quantization_config, detected format)
    "ct-w8a8": (lambda: hub.ct_config("W8A8_SQ_GPTQ"), "ct_w8a8"),
    "ct-w4a16": (lambda: hub.ct_config("W4A16_GPTQ"), "ct_w4a16"),
    "ct-fp8-dynamic": (lambda: hub.ct_config("FP8_DYNAMIC"), "ct_fp8_dynamic"),
    "ct-nvfp4": (lambda: hub.ct_config("NVFP4"), "ct_nvfp4"),
    "awq": (lambda: dict(hub.AWQ), "awq"),
    "gptq": (lambda: dict(hub.GPTQ), "gptq"),
    "fp8-block": (lambda: dict(hub.FP8_BLOCK), "fp8_block"),
}


@pytest.fixture(scope="module")
def tiny_dir():
    pytest.importorskip("transformers", reason="building the tiny model needs transformers")
    return registry.materialize(registry.resolve("tiny"))


@pytest.fixture(scope="module")
def checkpoints(tiny_dir, tmp_path_factory):
    """Config-level checkpoints of every non-ModelOpt, non-bitsandbytes method, in the hub layout."""
    pytest.importorskip("safetensors")
    root = tmp_path_factory.mktemp("hub")
    return {name: hub.config_only(tiny_dir, root / f"Qwen2.5-VL-tiny-{name}", make())
            for name, (make, _) in CONFIG_ONLY.items()}


def _modelopt_dir(tmp_path, quant: dict, config: dict | None = None):
    d = tmp_path / "ckpt"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(config or {"model_type": "qwen2_5_vl"}))
    (d / "model.safetensors").write_bytes(b"")
    (d / "hf_quant_config.json").write_text(json.dumps({"producer": {"name": "modelopt", "version": "0.47.0"},
                                                        "quantization": quant}))
    return d


# --- detection ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("algo, kv, fmt", [
    ("FP8", None, "fp8"), ("NVFP4", None, "nvfp4"), ("W8A8_SQ_PER_CHANNEL", None, "int8_sq"),
    ("W4A16_AWQ", None, "int4_awq"), ("W4A8_AWQ", None, "w4a8_awq"), ("FP8", "FP8", "fp8+kv_fp8"),
    ("W8A8_SQ_PER_CHANNEL", "FP8", "int8_sq+kv_fp8"),
])
def test_modelopt_exports_are_read_from_hf_quant_config(tmp_path, algo, kv, fmt):
    d = _modelopt_dir(tmp_path, {"quant_algo": algo, "kv_cache_quant_algo": kv, "exclude_modules": ["lm_head"]})
    spec = registry.checkpoint_spec(d)
    assert spec.detected_format == fmt and spec.prequantized.method == "modelopt"
    assert "hf_quant_config.json" in spec.prequantized.source and fmt in spec.description
    get_format(fmt)  # every detected id is a format the suite knows


@pytest.mark.parametrize("quant, expected", [
    ({"quant_algo": "MXFP8"}, "quant_algo 'MXFP8' maps to no format here"),
    ({"quant_algo": "FP8", "kv_cache_quant_algo": "INT8"}, "kv_cache_quant_algo 'INT8'"),
])
def test_unknown_modelopt_algorithms_are_errors_naming_them(tmp_path, quant, expected):
    with pytest.raises(ModelError, match=expected):
        registry.checkpoint_spec(_modelopt_dir(tmp_path, quant))


def test_a_broken_hf_quant_config_is_an_error_naming_the_file(tmp_path):
    d = _modelopt_dir(tmp_path, {})
    (d / "hf_quant_config.json").write_text("{not json")
    with pytest.raises(ModelError, match="hf_quant_config.json is not valid JSON"):
        registry.checkpoint_spec(d)
    (d / "hf_quant_config.json").write_text(json.dumps({"producer": {}}))
    with pytest.raises(ModelError, match="no 'quantization' block"):
        registry.checkpoint_spec(d)


def test_config_level_checkpoints_in_the_hub_layout_are_detected(checkpoints):
    for name, d in checkpoints.items():
        files = {p.name for p in d.iterdir()}
        assert {"model.safetensors.index.json", "model-00001-of-00002.safetensors", "preprocessor_config.json",
                "video_preprocessor_config.json", "chat_template.jinja", "tokenizer.json"} <= files, files
        spec = registry.resolve(str(d))
        assert spec.kind == "checkpoint" and spec.detected_format == CONFIG_ONLY[name][1], name
        assert spec.prequantized.fingerprint == prequantized.detect(d, json.loads(
            (d / "config.json").read_text())).fingerprint


def test_a_plain_checkpoint_is_not_prequantized(tiny_dir, tmp_path):
    spec = registry.resolve(str(hub.config_only(tiny_dir, tmp_path / "plain", None)))
    assert not spec.is_prequantized and spec.detected_format is None


def _qcfg(tmp_path, qcfg):
    d = tmp_path / "c"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "quantization_config": qcfg}))
    (d / "model.safetensors").write_bytes(b"")
    return d


@pytest.mark.parametrize("qcfg, fmt", [
    ({**hub.ct_config("W8A8_SQ_GPTQ"), "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor",
                                                            "dynamic": False, "symmetric": True}}, "ct_w8a8+kv_fp8"),
    ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bnb_int8"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "bnb_nf4"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "kv_cache_quant_algo": None}, "nvfp4"),
])
def test_quantization_configs_map_to_formats(tmp_path, qcfg, fmt):
    assert registry.checkpoint_spec(_qcfg(tmp_path, qcfg)).detected_format == fmt


def _ct(weights: dict, acts: dict | None) -> dict:
    return {"quant_method": "compressed-tensors", "format": "pack-quantized",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": acts}}}


@pytest.mark.parametrize("qcfg, expected", [
    ({"quant_method": "hqq"}, "quant_method 'hqq' is not one vqbench reads"),
    ({"quant_method": "compressed-tensors"}, "without config_groups"),
    (_ct({"num_bits": 4, "type": "int", "strategy": "group", "group_size": 64}, None),
     "weights int4 group group_size 64 static, input activations none maps to no format"),
    (_ct({"num_bits": 8, "type": "float", "strategy": "tensor"},
         {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False}),
     "weights float8 tensor static, input activations float8 tensor static maps to no format"),
    ({**_ct({"num_bits": 8, "type": "int", "strategy": "channel"}, None),
      "config_groups": {"a": {"weights": {"num_bits": 8, "type": "int", "strategy": "channel"}},
                        "b": {"weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128}}}},
     "mixed precision"),
    ({"quant_method": "awq", "bits": 3, "group_size": 128}, "AWQ with bits=3"),
    ({"quant_method": "gptq", "bits": 8}, "GPTQ with bits=8"),
    ({"quant_method": "fp8", "activation_scheme": "static"}, "FP8 with weight_block_size=None"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "fp4"}, "4-bit 'fp4'"),
    ("awq", "is not a JSON object"),
])
def test_unmapped_or_broken_quantization_configs_are_errors_naming_what_was_found(tmp_path, qcfg, expected):
    with pytest.raises(ModelError, match=expected.replace("(", r"\(").replace("[", r"\[")):
        registry.checkpoint_spec(_qcfg(tmp_path, qcfg))


# --- verdicts -----------------------------------------------------------------------------------------

def _spec(tmp_path, fmt_id: str):
    """A spec as a checkpoint detected as ``fmt_id`` would have (no files needed for verdicts)."""
    det = prequantized.Detected(format=fmt_id, method="test", source="test", config={"f": fmt_id})
    return registry.ModelSpec("ckpt", "checkpoint", "qwen2_5_vl", "test", approx_params_b=0.01, path=tmp_path,
                              prequantized=det)


@pytest.mark.parametrize("fmt, backend, dev, runnable, reason, mode", [
    # ModelOpt exports: vLLM (FP8/NVFP4) and TensorRT-LLM load them; transformers cannot, CPU vLLM neither
    ("fp8", "hf", device.CPU, False, "no loader for ModelOpt exports", None),
    ("fp8", "vllm", device.CPU, False, "CPU backend has no kernels", None),
    ("fp8", "vllm", H100, True, "", "native"),
    ("fp8", "vllm", A100, False, "needs sm_89", None),
    ("fp8", "trtllm", H100, True, "", "native"),
    ("int8_sq", "vllm", H100, False, "only FP8 and NVFP4", None),
    ("int8_sq", "trtllm", H100, True, "", "native"),
    ("nvfp4", "vllm", H100, True, "emulates", "emulated"),
    # compressed-tensors: vLLM with its kernels (CPU: W8A8, W4A16), transformers decompressed
    ("ct_w8a8", "vllm", device.CPU, True, "", "native"),
    ("ct_w8a8", "hf", device.CPU, True, "decompressed", "emulated"),
    ("ct_w4a16", "trtllm", H100, False, "TensorRT-LLM", None),
    # AWQ / GPTQ: vLLM's kernels on GPU and CPU; HF needs packages (see the package test)
    ("awq", "vllm", device.CPU, True, "", "native"),
    ("awq", "vllm", H100, True, "", "native"),
    ("gptq", "vllm", device.CPU, True, "", "native"),
    ("awq", "trtllm", H100, False, "ModelOpt layouts only", None),
    # FP8 block: vLLM sm_89+ (weight-only Marlin below), not on vLLM's CPU; transformers dequantizes on CPU
    ("fp8_block", "vllm", H100, True, "", "native"),
    ("fp8_block", "vllm", A100, True, "FP8 Marlin", "emulated"),
    ("fp8_block", "vllm", device.CPU, False, "no kernels for FP8 checkpoints", None),
    ("fp8_block", "hf", device.CPU, True, "dequantizes", "emulated"),
    ("fp8_block", "hf", H100, True, "", "native"),
    # bitsandbytes: transformers only
    ("bnb_int8", "hf", device.CPU, True, "", "native"),
    ("bnb_nf4", "vllm", H100, False, "bitsandbytes", None),
])
def test_capability_of_prequantized_checkpoints(tmp_path, fmt, backend, dev, runnable, reason, mode):
    v = capability.check(backend, get_format(fmt), dev, spec=_spec(tmp_path, fmt), check_packages=False)
    assert v.runnable is runnable and reason in v.reason, v
    if runnable:
        assert v.mode == mode, v


def test_a_prequantized_checkpoint_runs_in_its_own_format_only(tmp_path):
    spec = _spec(tmp_path, "ct_w8a8")
    for other in ("bf16", "ct_w4a16", "fp8"):
        v = capability.check("vllm", get_format(other), device.CPU, spec=spec, check_packages=False)
        assert not v and "quantized as ct_w8a8" in v.reason and "never quantized again" in v.reason


def test_checkpoint_only_formats_need_a_checkpoint(tmp_path):
    v = capability.check("vllm", get_format("awq"), device.CPU, spec=registry.resolve("tiny"), check_packages=False)
    assert not v and "--model PATH" in v.reason


def test_the_tool_that_made_a_checkpoint_is_not_needed_to_run_it(tmp_path, monkeypatch):
    """A ModelOpt export on vLLM needs vLLM, not ModelOpt; transformers' AWQ loader names its packages."""
    monkeypatch.setattr(capability, "installed", lambda p: p not in {"modelopt", "gptqmodel", "optimum"})
    v = capability.check("vllm", get_format("fp8"), H100, spec=_spec(tmp_path, "fp8"))
    assert v, v
    v = capability.check("hf", get_format("awq"), H100, spec=_spec(tmp_path, "awq"))
    assert not v and "gptqmodel" in v.reason
    v = capability.check("hf", get_format("gptq"), H100, spec=_spec(tmp_path, "gptq"))
    assert not v and "optimum" in v.reason


# --- the matrix, ids and goldens ----------------------------------------------------------------------

def _plans(**kw):
    from core.plan.matrix import plan_engines
    from core.plan.settings import Settings

    return plan_engines(Settings(gpu_models=[], **kw))


def test_the_matrix_plans_only_the_detected_format(checkpoints):
    d = str(checkpoints["ct-w8a8"])
    plans = _plans(models=[d], backends=["hf", "vllm", "trtllm"], formats=["bf16", "fp8", "ct_w4a16"])
    assert {p.engine.format for p in plans} == {"ct_w8a8"}
    assert {p.engine.id for p in plans} == {f"Qwen2.5-VL-tiny-ct-w8a8-{b}-ct_w8a8-cpu"
                                            for b in ("hf", "vllm", "trtllm")}
    by_backend = {p.engine.backend: p for p in plans}
    assert "loads ModelOpt exports" in by_backend["trtllm"].verdict.reason
    assert all(p.reference is None for p in plans)
    # goldens are keyed by the CPU's class: cpu (bf16 compute) or cpu_fp32 (where bf16 is emulated)
    assert by_backend["hf"].golden_id("anomaly") == f"Qwen2.5-VL-tiny-ct-w8a8-hf-ct_w8a8-{device.CPU.gpu_class}-anomaly"
    # no --reference-model: drift skipped, saying how to name one
    assert all(not p.drift and "--reference-model PATH" in p.drift.reason for p in plans)


def test_default_formats_leave_checkpoint_only_formats_out():
    assert not {"awq", "gptq", "fp8_block"} & {p.engine.format for p in _plans(models=["tiny"], backends=["hf"])}


def test_reference_model_plans_its_bf16_engine_and_drift(checkpoints):
    d = str(checkpoints["awq"])
    plans = _plans(models=[d], backends=["vllm"], reference_model="tiny-trained", formats=["fp8"])
    by_id = {p.engine.id: p for p in plans}
    assert set(by_id) == {"Qwen2.5-VL-tiny-awq-vllm-awq-cpu", "tiny-trained-vllm-bf16-cpu"}
    p = by_id["Qwen2.5-VL-tiny-awq-vllm-awq-cpu"]
    assert p.reference == by_id["tiny-trained-vllm-bf16-cpu"].engine
    assert by_id["tiny-trained-vllm-bf16-cpu"].reference is None  # the reference gets its run-to-run check
    if p.verdict and by_id["tiny-trained-vllm-bf16-cpu"].verdict:
        assert p.drift, p.drift
    else:  # no vLLM here: drift skipped with the reference's reason or the engine's own
        assert not by_id["tiny-trained-vllm-bf16-cpu"].verdict.runnable or p.drift


def test_a_prequantized_checkpoint_shares_a_work_unit_with_its_reference(checkpoints, monkeypatch):
    """With several workers its drift must find the reference engine on the same worker, loaded once."""
    from core.inputs import dataset
    from core.plan import capability
    from core.plan.matrix import plan_engines
    from core.plan.schedule import plan_units
    from core.plan.settings import Settings

    monkeypatch.setattr(capability, "installed", lambda p: True)
    settings = Settings(gpu_models=[], models=[str(checkpoints["awq"]), "tiny"], backends=["vllm"],
                        reference_model="tiny-trained", formats=["bf16"])
    plans = plan_engines(settings)

    class State:
        def __init__(self):
            self.settings, self.plans = settings, plans

        def clips_for(self, task):
            return dataset.fixture_clips()[:2]

    by_id = {p.engine.id: p for p in plans}
    checkpoint, ref = by_id["Qwen2.5-VL-tiny-awq-vllm-awq-cpu"], by_id["tiny-trained-vllm-bf16-cpu"]
    assert checkpoint.group == ref.group == ref.engine.group != checkpoint.engine.group
    units = plan_units(State(), 2).units
    [home] = [u for u in units if checkpoint.engine.id in u.engines]
    assert ref.engine.id in home.engines and sum(ref.engine.id in u.engines for u in units) == 1
    assert by_id["tiny-vllm-bf16-cpu"].group != ref.group  # other models keep their own groups


def test_two_checkpoints_under_one_name_are_a_usage_error(checkpoints, tmp_path):
    """A checkpoint's name is its directory's: /a/model and /b/model would share ids and goldens."""
    twin = tmp_path / "elsewhere" / checkpoints["awq"].name
    shutil.copytree(checkpoints["gptq"], twin)
    with pytest.raises(ConfigError, match=f"two models are both named '{twin.name}'.*another name"):
        _plans(models=[str(checkpoints["awq"]), str(twin)], backends=["hf"])
    clash = tmp_path / "tiny-trained"  # a checkpoint named like an embedded model, as the reference
    shutil.copytree(checkpoints["gptq"], clash)
    with pytest.raises(ConfigError, match="both named 'tiny-trained'"):
        _plans(models=[str(clash)], backends=["hf"], reference_model="tiny-trained")
    # the same directory twice is one model, not a clash
    assert _plans(models=[str(checkpoints["awq"])] * 2, backends=["hf"])


def test_a_prequantized_reference_model_is_a_usage_error(checkpoints):
    with pytest.raises(ConfigError, match="is itself quantized"):
        _plans(models=[str(checkpoints["awq"])], backends=["hf"], reference_model=str(checkpoints["gptq"]))


def test_golden_payload_records_the_reference_and_the_fingerprint(checkpoints):
    from core.plan.golden import engine_payload, input_changes

    d = checkpoints["ct-w4a16"]
    plans = _plans(models=[str(d)], backends=["hf"], reference_model="tiny-trained")
    plan = next(p for p in plans if p.spec.is_prequantized)
    payload = engine_payload(plan, "anomaly", [])
    assert payload["engine"] == f"Qwen2.5-VL-tiny-ct-w4a16-hf-ct_w4a16-{device.CPU.gpu_class}-anomaly"
    assert payload["format"] == "ct_w4a16" and payload["model"] == "Qwen2.5-VL-tiny-ct-w4a16"
    pq = payload["prequantized"]
    assert pq["reference_model"] == "tiny-trained" and pq["fingerprint"] == plan.spec.prequantized.fingerprint
    assert pq["method"] == "compressed-tensors"
    moved = {**payload, "prequantized": {**pq, "fingerprint": "0" * 16}, "preprocessing": {}}
    assert any("quantized again" in line for line in input_changes(moved, {**payload, "preprocessing": {}}))


def test_a_prequantized_checkpoint_is_never_exported_or_quantized_again(checkpoints):
    from core.backends.exports import checkpoint_for
    from core.base.errors import ArtifactError, Unsupported
    from core.commands.quantize import quantize
    from core.inputs.requests import EngineOptions

    spec = registry.resolve(str(checkpoints["ct-w8a8"]))
    with pytest.raises(ArtifactError, match="never exported again"):
        checkpoint_for(spec, get_format("ct_w8a8"), options=EngineOptions(), device=device.CPU)
    with pytest.raises(Unsupported, match="never quantizes a checkpoint again"):
        quantize(model=str(checkpoints["ct-w8a8"]), fmt_name="ct_w8a8", device="cpu", options=EngineOptions(),
                 export=True)


# --- real checkpoints: a ModelOpt FP8 export and a bitsandbytes one ----------------------------------------

@pytest.mark.slow
def test_a_modelopt_fp8_export_in_the_hub_layout_is_detected_and_routed(tmp_path, monkeypatch):
    pytest.importorskip("modelopt", reason="needs nvidia-modelopt: pip install 'vqbench[modelopt]'")
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    d = hub.modelopt_fp8("tiny", tmp_path / "Qwen2.5-VL-tiny-FP8")
    assert (d / "model.safetensors.index.json").is_file()
    spec = registry.resolve(str(d))
    assert spec.detected_format == "fp8" and spec.prequantized.method == "modelopt"
    all_plans = _plans(models=[str(d)], backends=["hf", "vllm"], reference_model="tiny")
    assert {p.engine.id for p in all_plans} == {"Qwen2.5-VL-tiny-FP8-hf-fp8-cpu", "Qwen2.5-VL-tiny-FP8-vllm-fp8-cpu",
                                                "tiny-hf-bf16-cpu", "tiny-vllm-bf16-cpu"}
    plans = {p.engine.backend: p for p in all_plans if p.spec.is_prequantized}
    assert not plans["hf"].verdict and "ModelOpt" in plans["hf"].verdict.reason
    assert not plans["vllm"].verdict and "CPU backend" in plans["vllm"].verdict.reason
    v = capability.check("vllm", get_format("fp8"), H100, spec=spec, check_packages=False)
    assert v and v.mode == "native"


@pytest.fixture(scope="module")
def bnb_checkpoint(tmp_path_factory):
    pytest.importorskip("bitsandbytes", reason="needs bitsandbytes: pip install 'vqbench[bnb]'")
    pytest.importorskip("transformers")
    src = registry.materialize(registry.resolve("tiny-trained"))
    return hub.bitsandbytes(src, tmp_path_factory.mktemp("bnb") / "Qwen2.5-VL-tiny-trained-bnb-int8", "bnb_int8")


@pytest.fixture(scope="module")
def both_fronts(bnb_checkpoint, tmp_path_factory):
    """The same checkpoint, reference and two clips through both front doors: a pytest session of
    bench/test_drift.py (the checkpoint's drift and the reference's run-to-run check) and ``vqbench run``."""
    import shutil
    import subprocess
    import sys

    from core.base import paths, results
    from core.inputs import dataset

    tmp = tmp_path_factory.mktemp("fronts")
    clips = tmp / "clips"
    clips.mkdir()
    for c in dataset.fixture_clips()[:2]:
        shutil.copy(c.path, clips / c.path.name)
    out = tmp / "r.jsonl"
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", str(paths.PROJECT_ROOT / "bench" / "test_drift.py"), "-m", "cpu",
         "-p", "no:cacheprovider", "-p", "no:xdist", "--rootdir", str(paths.PROJECT_ROOT),
         "-c", str(paths.PROJECT_ROOT / "pyproject.toml"), "--videos", str(clips), "--model", str(bnb_checkpoint),
         "--reference-model", "tiny-trained", "--format", "bf16", "--format", "fp8", "--backend", "hf",
         "--results", str(out), "-rA"], capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    run_json = tmp / "run.json"
    run = subprocess.run(
        [sys.executable, "-m", "core.cli", "run", "--model", str(bnb_checkpoint), "--backend", "hf", "--device", "cpu",
         "--videos", str(clips), "--reference-model", "tiny-trained", "--output", str(run_json),
         "--decode-workers", "0"], capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    return {"suite": suite, "results": results.load(out) if out.exists() else None, "run": run,
            "doc": json.loads(run_json.read_text()) if run_json.exists() else None,
            "run_results": results.load(run_json.with_suffix(".jsonl")) if run_json.exists() else None}


CHECKPOINT = "Qwen2.5-VL-tiny-trained-bnb-int8-hf-bnb_int8-cpu"


@pytest.mark.slow
def test_a_bnb_checkpoint_runs_as_it_is_with_drift_against_its_parent_in_pytest(both_fronts):
    res, r = both_fronts["suite"], both_fronts["results"]
    # the checkpoint's drift against tiny-trained bf16 and the reference's run-to-run check
    assert res.returncode == 0 and "2 passed" in res.stdout, res.stdout[-3000:]
    # the parent's engine first, then the checkpoint's: each loaded once
    assert "engine loads: 2 for 2 engines" in res.stdout
    assert f"PASSED bench/test_drift.py::test_drift[Qwen2.5-VL-tiny-trained-bnb-int8-hf-bnb_int8-" \
           f"{device.CPU.gpu_class}-anomaly]" in res.stdout, res.stdout[-3000:]
    engines = {c["engine"] for c in r.answers()}
    assert engines == {CHECKPOINT, "tiny-trained-hf-bf16-cpu"}
    cells = {c["engine"]: c for c in r.answers()}
    quant = cells[CHECKPOINT]["load"]["quantization"]
    assert quant["prequantized"]["format"] == "bnb_int8" and "quantize_s" not in quant  # no quantizer ran
    assert any(k.startswith("Linear8bitLt") for k in quant["linear_modules"]), quant
    # the hub's split processor files give the same processor outputs as the parent's
    by_video: dict[str, set] = {}
    for c in r.answers():
        by_video.setdefault(c["video"], set()).add(c["inputs"]["processor_sha256"])
    assert all(len(v) == 1 for v in by_video.values()), by_video
    drift = [d for d in r.drift if d["engine"] == CHECKPOINT]
    assert drift and drift[0]["passed"], drift


@pytest.mark.slow
def test_a_bnb_checkpoint_runs_with_drift_through_vqbench_run(both_fronts):
    proc, doc = both_fronts["run"], both_fronts["doc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert doc["engine"] == CHECKPOINT
    assert doc["prequantized"]["format"] == "bnb_int8"
    assert doc["drift"]["reference"] == "tiny-trained-hf-bf16-cpu" and doc["drift"]["passed"], doc["drift"]
    assert "pre-quantized checkpoint: bnb_int8" in proc.stderr
    # the reference answered first: the checkpoint's vision embeddings were compared with its own
    vision = doc["drift"]["report"]["vision_summary"]
    assert vision["clips"] == 2 and 0.9 < vision["cos_min"] <= 1.0, vision
    assert "embeddings per frame group vs the reference" in proc.stderr


@pytest.mark.slow
def test_both_front_doors_give_the_same_answers_verdict_and_record_fields(both_fronts):
    """One pipeline behind ``vqbench run`` and pytest: the same engine, format and clips give the same
    answers, the same drift verdict and records with the same fields."""
    r, doc, written = both_fronts["results"], both_fronts["doc"], both_fronts["run_results"]
    assert r is not None and doc is not None, (both_fronts["suite"].stdout[-2000:], both_fronts["run"].stderr[-2000:])
    # the records each front wrote into its results file
    suite = {c["video"]: c for c in r.answers() if c["engine"] == CHECKPOINT}
    run = {c["video"]: c for c in written.answers() if c["engine"] == CHECKPOINT}
    assert sorted(suite) == sorted(run) and len(run) == 2
    for video, a in suite.items():
        b = run[video]
        for key in ("cell", "engine", "predicted", "parsed", "answer", "token_ids", "mode", "mode_note"):
            assert a.get(key) == b.get(key), (video, key, a.get(key), b.get(key))
        assert b["candidate_logprobs"] == pytest.approx(a["candidate_logprobs"], abs=1e-5), video
        assert a["inputs"]["pixels_sha256"] == b["inputs"]["pixels_sha256"], "the same decoded frames"
        # the same record type with the same fields; run adds the time the engine waited for decoding
        assert set(a) == set(b), set(a) ^ set(b)
        assert set(b["timings"]) - set(a["timings"]) == {"video_wait_s"}
        assert (a["kind"], b["kind"]) == ("scoring", "timed")  # the drift test scores; run times one round
    (drift,) = [d for d in r.drift if d["engine"] == CHECKPOINT]
    (run_drift,) = written.drift
    for key in ("type", "engine", "task", "passed", "status", "reference", "prequantized"):
        assert drift[key] == run_drift[key] == doc["drift"][key], key
    assert drift["verdict"]["status"] == run_drift["verdict"]["status"]
    assert set(drift) == set(run_drift) and set(drift["report"]) == set(run_drift["report"])
    for key in ("flips", "agreement_rate", "n", "unpaired", "errored"):
        assert drift["report"].get(key) == run_drift["report"].get(key), key


@pytest.mark.slow
def test_the_report_sets_a_checkpoint_beside_the_model_it_was_quantized_from(both_fronts):
    from core.report.sections import sections

    def text(x) -> str:
        return str(getattr(x, "text", x))

    r = both_fronts["run_results"]
    assert {c.get("reference_model") for c in r.answers() if c["engine"] == CHECKPOINT} == {"tiny-trained"}
    speed, answers = sections(r)[:2]
    rows = [(t, row) for t in speed.tables for row in t.rows if text(row[0]).startswith("Qwen2.5-VL-tiny-trained")]
    assert rows and all(text(row[0]).endswith("(checkpoint of tiny-trained)") for _, row in rows), rows
    for table, row in rows:
        if "vs bf16" in table.headers:  # on real kernels: compared with tiny-trained's bf16 engine
            assert text(row[table.headers.index("vs bf16")]).endswith(("faster", "slower")), row
    # one answers table for tiny-trained and its checkpoint, the checkpoint's agreement measured
    per_video, summary = answers.tables
    assert "bf16" in per_video.headers and "bnb_int8 (Qwen2.5-VL-tiny-trained-bnb-int8)" in per_video.headers
    agreement = {text(row[0]): text(row[1]) for row in summary.rows}
    assert agreement["bf16"] == "reference"
    assert agreement["bnb_int8 (Qwen2.5-VL-tiny-trained-bnb-int8)"] not in ("—", "reference"), agreement
