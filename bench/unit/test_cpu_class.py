"""The CPU as the suite sees it: the ISA torch dispatches to, whether bf16 is native or emulated, the
compute dtype ``--cpu-dtype auto`` picks, and what doctor, verdicts and goldens say about it.

The AVX2 facts were measured on an AMD EPYC with AVX2 only (torch 2.14.1, one thread, 648x1024 @
1024x1024: fp32 21 ms, bf16 2,041 ms); the cpuinfo texts below are trimmed copies of real ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.plan import capability
from core.plan import device as devices
from core.plan.formats import get_format

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]

AVX2_EPYC = ("model name\t: AMD EPYC\nflags\t\t: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 "
             "adx sha_ni\n")
SAPPHIRE = ("model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq "
            "avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n")
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: fpu avx avx2 fma avx512f avx512dq avx512bw avx512vl\n"


def test_an_avx2_only_cpu_emulates_bf16_and_computes_in_fp32():
    facts = devices.cpu_facts(AVX2_EPYC, env={})
    assert (facts.name, facts.isa, facts.bf16_native) == ("AMD EPYC", "AVX2", False)
    assert devices.resolve_cpu_dtype("auto", facts) == "float32"
    dev = devices.cpu("auto", facts)
    assert (dev.dtype, dev.gpu_class) == ("float32", "cpu_fp32")


def test_avx512_bf16_or_amx_is_native_and_keeps_bf16():
    facts = devices.cpu_facts(SAPPHIRE, env={})
    assert (facts.isa, facts.bf16_native) == ("AVX512", True)
    assert "amx_bf16" in facts.bf16_why and "avx512_bf16" in facts.bf16_why
    assert devices.cpu("auto", facts).gpu_class == "cpu"


def test_avx512_without_bf16_instructions_is_emulated():
    facts = devices.cpu_facts(SKYLAKE, env={})
    assert (facts.isa, facts.bf16_native) == ("AVX512", False)
    assert devices.cpu("auto", facts).gpu_class == "cpu_fp32"


@pytest.mark.parametrize("env, capped", [({"ATEN_CPU_CAPABILITY": "avx2"}, "ATEN_CPU_CAPABILITY=avx2"),
                                         ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "ONEDNN_MAX_CPU_ISA=AVX2")])
def test_the_capping_variables_give_the_avx2_path_on_an_avx512_bf16_host(env, capped):
    """How CI exercises the AVX2 path on a host that has AVX-512: the caps torch and oneDNN read."""
    facts = devices.cpu_facts(SAPPHIRE, env=env)
    assert not facts.bf16_native and capped in facts.bf16_why
    assert devices.cpu("auto", facts).gpu_class == "cpu_fp32"


def test_an_explicit_dtype_overrides_auto_and_bad_values_are_refused():
    facts = devices.cpu_facts(AVX2_EPYC, env={})
    assert devices.cpu("bfloat16", facts).gpu_class == "cpu"
    assert devices.cpu("float32", devices.cpu_facts(SAPPHIRE, env={})).gpu_class == "cpu_fp32"
    with pytest.raises(ValueError, match="auto, bfloat16, float32"):
        devices.resolve_cpu_dtype("fp16", facts)


def test_the_option_reaches_settings_and_engine_options(tmp_path):
    from core.plan.settings import build

    assert build(tmp_path, {"cpu_dtype": "float32"}).engine_options().cpu_dtype == "float32"
    assert build(tmp_path, env={"VQBENCH_CPU_DTYPE": "bf16"}).cpu_dtype == "bfloat16"


def test_verdicts_say_bf16_is_emulated_and_how_the_cell_computes():
    avx2 = devices.cpu("auto", devices.cpu_facts(AVX2_EPYC, env={}))
    v = capability.check("hf", get_format("bf16"), avx2, check_packages=False)
    assert v.runnable and v.mode == "emulated"
    assert "bf16 is emulated on this CPU (AVX2" in v.reason and "~100x slower than fp32" in v.reason
    assert "computed in float32" in v.reason
    # a quantized format keeps its mode (its own kernels / fake-quant); the note says what it computes in
    nf4 = capability.check("hf", get_format("bnb_nf4"), avx2, check_packages=False)
    assert nf4.mode == "native" and "computed in float32" in nf4.reason
    assert capability.check("hf", get_format("fp8"), avx2, check_packages=False).mode == "fake-quant"
    native = devices.cpu("auto", devices.cpu_facts(SAPPHIRE, env={}))
    v = capability.check("hf", get_format("bf16"), native, check_packages=False)
    assert v.runnable and v.mode == "native" and v.reason == ""


def test_this_hosts_facts_agree_with_torch_itself_with_and_without_caps():
    """The plan reads /proc/cpuinfo (no torch import at collection); torch's own dispatch level must
    agree, here and with ATEN_CPU_CAPABILITY=avx2 (the cap CI uses for the AVX2 path)."""
    pytest.importorskip("torch")
    for cap in (None, "avx2"):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if cap:
            env["ATEN_CPU_CAPABILITY"] = cap
        out = subprocess.run([sys.executable, "-c", "import torch, json; print(json.dumps("
                              "[torch.backends.cpu.get_cpu_capability(), "
                              "torch.ops.mkldnn._is_mkldnn_bf16_supported()]))"],
                             env=env, capture_output=True, text=True, check=True).stdout
        torch_isa, onednn_bf16 = json.loads(out.strip().splitlines()[-1])
        facts = devices.cpu_facts(env=env)
        assert facts.isa == torch_isa, (facts, torch_isa)
        if facts.bf16_native:
            assert onednn_bf16, "cpuinfo says bf16 is native but oneDNN has no bf16 support"


def test_doctor_names_the_cpu_and_its_compute_dtype(capsys):
    from core.commands import doctor

    doctor.doctor()
    out = capsys.readouterr().out
    cpu = devices.CPU
    assert f"torch dispatches to {cpu.isa}" in out and f"compute in {cpu.dtype} (goldens: {cpu.gpu_class})" in out
    assert ("bf16 EMULATED" in out) == (not cpu.bf16_native)


@pytest.mark.slow
def test_the_avx2_path_runs_green_on_any_host(pytester, monkeypatch):
    """CI lands on AVX2-only hosts and on AVX-512 ones: on a host with bf16 arithmetic, the AVX2 path
    (float32 compute, cpu_fp32 goldens, drift) runs here under the caps torch and oneDNN read, so a
    change cannot break the other host class unseen. On an AVX2 host the tier itself is that path."""
    if devices.CPU.gpu_class == "cpu_fp32":
        pytest.skip(f"this host already computes in float32 ({devices.CPU.isa}, bf16 emulated): the tier's own "
                    "cells, goldens and drift are the AVX2 path")
    from core.base import paths

    root = paths.PROJECT_ROOT
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # the child pytest inherits them
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    res = pytester.runpytest_subprocess(
        str(root / "bench" / "test_cells.py"), str(root / "bench" / "test_golden.py"),
        str(root / "bench" / "test_drift.py"), "-p", "no:cacheprovider", "--rootdir", str(root),
        "-c", str(root / "pyproject.toml"), "-m", "cpu", "--model", "tiny-trained", "--backend", "hf",
        "--format", "bf16", "--format", "int8_weight_only", "-v")
    res.stdout.fnmatch_lines(["*test_golden*tiny-trained-hf-bf16-cpu_fp32-anomaly* PASSED*",
                              "*test_golden*tiny-trained-hf-int8_weight_only-cpu_fp32-anomaly* PASSED*",
                              "*test_drift*tiny-trained-hf-int8_weight_only-cpu_fp32-anomaly* PASSED*"])
    res.assert_outcomes(passed=12 * 2 + 2 + 2)
