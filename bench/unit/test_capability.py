"""The capability table, formats, settings and the matrix: every "no" carries its reason."""

from __future__ import annotations

import pytest

from core.base.errors import ConfigError
from core.plan import capability, device
from core.plan.device import DeviceInfo
from core.plan.formats import all_formats, get_format
from core.plan.settings import build

pytestmark = pytest.mark.cpu

H100 = DeviceInfo(kind="cuda", name="NVIDIA H100", capability=(9, 0), memory_gib=80)
L40 = DeviceInfo(kind="cuda", name="NVIDIA L40S", capability=(8, 9), memory_gib=48)
A100 = DeviceInfo(kind="cuda", name="NVIDIA A100", capability=(8, 0), memory_gib=80)
B200 = DeviceInfo(kind="cuda", name="NVIDIA B200", capability=(10, 0), memory_gib=180)
T4 = DeviceInfo(kind="cuda", name="Tesla T4", capability=(7, 5), memory_gib=15)
RTX5090 = DeviceInfo(kind="cuda", name="NVIDIA GeForce RTX 5090", capability=(12, 0), memory_gib=32)


def check(backend, fmt, dev):
    return capability.check(backend, get_format(fmt), dev, check_packages=False)


def test_every_format_describes_its_scope_and_backends():
    for fmt in all_formats():
        assert fmt.description and fmt.scope and fmt.tool in {"none", "modelopt", "bitsandbytes", "torchao",
                                                              "llmcompressor", "prequantized"}
        assert set(fmt.backends) | set(fmt.not_supported) == {"hf", "vllm", "trtllm"}, fmt.name


@pytest.mark.parametrize("backend,fmt,dev,runnable,reason", [
    ("hf", "bf16", device.CPU, True, ""),
    ("hf", "fp8", device.CPU, True, "fake-quant"),
    ("hf", "nvfp4", device.CPU, False, "needs a CUDA GPU"),
    ("hf", "nvfp4", H100, True, "fake-quant"),
    ("vllm", "int8_sq", H100, False, "only FP8 and NVFP4"),
    ("vllm", "nvfp4", H100, True, "emulates"),
    ("vllm", "nvfp4", B200, True, ""),
    ("vllm", "fp8", A100, False, "needs sm_89"),
    ("vllm", "fp8", L40, True, ""),
    ("vllm", "fp8", device.CPU, False, "CPU backend has no kernels"),
    ("vllm", "bnb_nf4", H100, False, "bitsandbytes"),
    ("trtllm", "nvfp4", H100, False, "sm_100"),
    ("trtllm", "bf16", device.CPU, False, "needs a CUDA GPU"),
    ("hf", "fp8_dynamic", A100, False, "sm_89"),
    ("hf", "fp8_dynamic", device.CPU, False, "CUDA GPU"),
    ("hf", "int8_weight_only", device.CPU, True, ""),
    # GPUs this project never ran on: the verdict comes from the compute capability alone.
    ("hf", "bf16", T4, True, "no bfloat16 tensor cores"),
    ("hf", "fp8", T4, True, "bf16 math is emulated"),
    ("vllm", "bf16", T4, False, "sm_80+"),
    ("trtllm", "fp8", T4, False, "sm_80+"),
    ("hf", "int4_weight_only", T4, False, "sm_80+"),
    ("hf", "bf16", RTX5090, True, ""),
    ("hf", "fp8_dynamic", RTX5090, True, ""),
    ("vllm", "nvfp4", RTX5090, True, ""),
])
def test_verdicts(backend, fmt, dev, runnable, reason):
    v = check(backend, fmt, dev)
    assert v.runnable is runnable, v
    assert reason in v.reason


def test_missing_package_reason_says_how_to_install(monkeypatch):
    monkeypatch.setattr(capability, "installed", lambda p: p != "vllm")
    v = capability.check("vllm", get_format("bf16"), H100)
    assert not v and "pip install 'vqbench[vllm]'" in v.reason


def test_kv_modifier_and_typos():
    f = get_format("int8_sq+kv_fp8")
    assert f.kv_cache == "fp8" and f.id == "int8_sq+kv_fp8" and f.name == "int8_sq"
    with pytest.raises(ConfigError, match="Did you mean 'nvfp4'"):
        get_format("nvpf4")
    with pytest.raises(ConfigError, match="Did you mean 'vllm'"):
        capability.check("vlm", f, H100)


def test_settings_precedence(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.vqbench]\nfps = 2.0\nformats = ["bf16", "fp8"]\nrounds = 5\n')
    s = build(tmp_path, {"rounds": 2}, env={"VQBENCH_FPS": "8"})
    assert s.fps == 8.0 and s.formats == ["bf16", "fp8"] and s.rounds == 2
    with pytest.raises(ConfigError, match="Did you mean 'rounds'"):
        build(tmp_path, {"roundz": 1}, env={})
    (tmp_path / "pyproject.toml").write_text('[tool.vqbench]\nresolution = "250"\n')
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        build(tmp_path, env={})


def test_matrix_skips_carry_reasons(tmp_path, monkeypatch):
    from core.plan.matrix import plan_engines

    monkeypatch.setattr(device, "primary", lambda: device.CPU)
    monkeypatch.setattr(device, "no_gpu_reason", lambda: "NVML Shared Library Not Found")
    s = build(tmp_path, {"models": ["tiny"], "gpu_models": ["qwen2.5-vl-7b"], "formats": ["bf16", "nvfp4"]},
              env={})
    plans = {p.engine.id: p for p in plan_engines(s)}
    assert "no CUDA GPU: NVML Shared Library Not Found" in plans["qwen2.5-vl-7b-hf-bf16-cuda"].verdict.reason
    assert not plans["tiny-hf-nvfp4-cpu"].verdict
    assert plans["tiny-hf-bf16-cpu"].verdict.runnable == capability.installed("transformers")
