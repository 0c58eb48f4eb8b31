"""Structural verdicts: what can never run on a device kind, in any environment, is deselected with one
summary line per reason; what a user can change (a missing package, no goldens yet, an older GPU, no
GPU here) stays a skip with its reason."""

from __future__ import annotations

import shutil

import pytest

from core.models import registry
from core.plan import capability, device
from core.plan.device import DeviceInfo
from core.plan.formats import get_format
from core.plan.settings import build
from core.suite.params import deselection_summary

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]

H100 = DeviceInfo(kind="cuda", name="NVIDIA H100", capability=(9, 0), memory_gib=80)
A100 = DeviceInfo(kind="cuda", name="NVIDIA A100", capability=(8, 0), memory_gib=80)
T4 = DeviceInfo(kind="cuda", name="Tesla T4", capability=(7, 5), memory_gib=15)
SMALL = DeviceInfo(kind="cuda", name="NVIDIA L4", capability=(8, 9), memory_gib=4)


@pytest.mark.parametrize("backend,fmt,dev,model,structural,reason", [
    # the backend, the format's route or the quantizer's recipes rule it out: on every such device
    ("trtllm", "bf16", device.CPU, "tiny", True, "TensorRT-LLM needs a CUDA GPU"),
    ("trtllm", "bnb_int8", H100, "tiny", True, "no bitsandbytes loader"),
    ("vllm", "int8_sq", H100, "tiny", True, "only FP8 and NVFP4"),
    ("vllm", "fp8", device.CPU, "tiny", True, "CPU backend has no kernels"),
    ("hf", "nvfp4", device.CPU, "tiny", True, "needs a CUDA GPU even for emulation"),
    ("hf", "ct_w8a8", H100, "tiny-internvl", True, "recipes here are written for"),
    ("hf", "ct_w8a8", H100, "qwen2.5-vl-7b", True, "shape-only"),
    ("hf", "bf16", device.CPU, "qwen2.5-vl-7b", True, "run it with -m gpu"),
    ("vllm", "awq", device.CPU, "tiny", True, "--model PATH"),
    # another GPU could run it: a skip, never a deselection
    ("vllm", "fp8", A100, "tiny", False, "needs sm_89"),
    ("vllm", "bf16", T4, "tiny", False, "sm_80+"),
    ("hf", "bf16", SMALL, "qwen2.5-vl-7b", False, "too little memory"),
])
def test_structural_verdicts_are_the_ones_no_environment_can_change(backend, fmt, dev, model, structural, reason):
    v = capability.check(backend, get_format(fmt), dev, spec=registry.resolve(model), check_packages=False)
    assert not v.runnable and v.structural is structural and reason in v.reason, v


def test_a_missing_package_is_a_skip_but_never_hides_a_structural_reason(monkeypatch):
    monkeypatch.setattr(capability, "installed", lambda p: False)
    missing = capability.check("hf", get_format("bnb_int8"), device.CPU, spec=registry.resolve("tiny"))
    assert not missing and not missing.structural and "pip install" in missing.reason, missing
    # nothing installed: TensorRT-LLM on a CPU is still refused for the CPU, not for the package
    never = capability.check("trtllm", get_format("bf16"), device.CPU, spec=registry.resolve("tiny"))
    assert never.structural and never.reason == "TensorRT-LLM needs a CUDA GPU", never


def test_golden_and_drift_verdicts(monkeypatch):
    tiny, trained = registry.resolve("tiny"), registry.resolve("tiny-trained")
    no_goldens = capability.golden_verdict(trained, "sm75", recorded_classes={"cpu"}, updating=False)
    assert not no_goldens and not no_goldens.structural  # record them once: a skip
    shape = capability.golden_verdict(registry.resolve("qwen2.5-vl-7b"), "sm90", recorded_classes={"sm90"},
                                      updating=False)
    assert not shape and shape.structural  # never judged, by design
    random = capability.drift_verdict(tiny, "int8_sq", reference_format="bf16",
                                      reference=capability.CapabilityVerdict(True), reference_id="tiny-hf-bf16-cpu")
    assert not random and random.structural
    for reference, structural in ((capability.no("needs 'vllm'"), False),
                                  (capability.impossible("TensorRT-LLM needs a CUDA GPU"), True)):
        drift = capability.drift_verdict(trained, "int8_sq", reference_format="bf16", reference=reference,
                                         reference_id="tiny-trained-x-bf16-cpu")
        assert not drift and drift.structural is structural and reference.reason in drift.reason


def test_gpu_cells_without_a_gpu_wait_for_one_unless_no_gpu_could_run_them(tmp_path, monkeypatch):
    from core.plan.matrix import plan_engines

    monkeypatch.setattr(device, "primary", lambda: device.CPU)
    monkeypatch.setattr(device, "no_gpu_reason", lambda: "NVML Shared Library Not Found")
    s = build(tmp_path, {"models": [], "gpu_models": ["qwen2.5-vl-7b"], "backends": ["hf", "trtllm"],
                         "formats": ["bf16", "bnb_int8"]}, env={})
    plans = {p.engine.id: p.verdict for p in plan_engines(s)}
    assert not plans["qwen2.5-vl-7b-hf-bf16-cuda"].structural
    assert "no CUDA GPU" in plans["qwen2.5-vl-7b-hf-bf16-cuda"].reason
    assert plans["qwen2.5-vl-7b-trtllm-bnb_int8-cuda"].structural
    assert "no bitsandbytes loader" in plans["qwen2.5-vl-7b-trtllm-bnb_int8-cuda"].reason


def test_summary_counts_each_reason_once_and_names_the_formats_and_models():
    lines = deselection_summary([
        ("TensorRT-LLM needs a CUDA GPU", "tiny", "bf16", "cpu"),
        ("TensorRT-LLM needs a CUDA GPU", "tiny", "fp8", "cpu"),
        ("vllm cannot run bnb_int8: no loader", "tiny", "bnb_int8", "cpu"),
        ("vllm cannot run bnb_nf4: no loader", "tiny-trained", "bnb_nf4", "cpu"),
        ("vllm cannot run bnb_nf4: no loader", "tiny-trained", "bnb_nf4", "cpu"),
        ("tiny has random weights; tiny-trained is judged", "tiny", "int8_sq", "cpu"),
        ("tiny-internvl has random weights; tiny-trained is judged", "tiny-internvl", "int8_sq", "cpu"),
    ])
    assert lines[0].startswith("vqbench deselected 7 matrix tests that can never run (or be judged) on a CPU, "
                               "whatever is installed (3 reasons;")
    assert lines[1:] == ["     3  vllm cannot run bnb_int8/bnb_nf4: no loader",
                         "     2  TensorRT-LLM needs a CUDA GPU",
                         "     2  tiny/tiny-internvl has random weights; tiny-trained is judged"]
    assert deselection_summary([]) == []


# The child's conftest: bitsandbytes missing here, whatever this machine has.
NO_BNB_CONFTEST = '''
import core.plan.capability as capability

_installed = capability.installed
capability.installed = lambda package: package != "bitsandbytes" and _installed(package)
'''


@pytest.mark.parametrize("workers", [0, 2])
def test_a_cpu_session_deselects_what_can_never_run_and_skips_what_is_missing(pytester, workers):
    if workers:
        pytest.importorskip("xdist", reason="pytest-xdist not installed: pip install pytest-xdist")
    from core.base import paths

    for name in ("test_cells.py", "test_drift.py"):
        shutil.copy(paths.PROJECT_ROOT / "bench" / name, pytester.path / name)
    pytester.makeconftest(NO_BNB_CONFTEST)
    # hf bf16 is left out with -k, so no model runs: what remains must be skips
    res = pytester.runpytest_subprocess(
        "test_cells.py", "test_drift.py", "-p", "no:cacheprovider", "-p", "vqbench", "-m", "cpu", "-rs",
        "--model", "tiny", "--gpu-model", "tiny", "--backend", "hf", "--backend", "trtllm", "--format", "bf16",
        "--format", "bnb_int8", "--max-videos", "2", "-k", "not hf-bf16", *(["-n", str(workers)] if workers else []))
    # 4 engines x (2 clips + drift) = 12 tests per device kind: -m cpu takes the 12 GPU ones, -k hf bf16's 3,
    # the structural verdicts 7 (counted after -m and -k), and bnb_int8's two hf cells are skipped
    outcomes = res.parseoutcomes()
    assert outcomes.get("skipped") == 2 and not {"passed", "failed", "error", "errors"} & set(outcomes), outcomes
    if not workers:  # xdist's controller does not count deselected tests; the summary below does
        assert outcomes.get("deselected") == 12 + 3 + 7, outcomes
    res.stdout.fnmatch_lines([
        "vqbench deselected 7 matrix tests that can never run (or be judged) on a CPU, whatever is installed "
        "(3 reasons; `vqbench doctor` shows the whole table):",
        "     3  TensorRT-LLM needs a CUDA GPU",
        "     3  trtllm cannot run bnb_int8: TensorRT-LLM has no bitsandbytes loader",
        "     1  tiny has random weights (near-tied labels)*",
    ])
    res.stdout.fnmatch_lines(["SKIPPED [[]2[]] test_cells.py*bnb_int8*needs 'bitsandbytes', which is not installed*"])
    assert "TensorRT-LLM needs a CUDA GPU" not in "".join(ln for ln in res.outlines if ln.startswith("SKIPPED"))
