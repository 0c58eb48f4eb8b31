"""ModelOpt's exporter on the CPU: a checkpoint whose config names no architecture (the shape-only specs
build theirs from the config class) still exports. ModelOpt 0.47 iterates ``config.architectures`` and
failed on None: the InternVL3.5-4B shape's FP8 export broke that way on an H100 (2026-12-07)."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.cpu


def test_a_config_without_architectures_still_exports_fp8(tmp_path, monkeypatch):
    pytest.importorskip("modelopt", reason="nvidia-modelopt not installed: pip install 'vqbench[modelopt]'")
    from core import cli
    from core.models import registry

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    src = registry.materialize(registry.resolve("tiny-internvl"))
    model = tmp_path / "no-architectures"
    shutil.copytree(src, model)
    config = json.loads((model / "config.json").read_text())
    config.pop("architectures")
    (model / "config.json").write_text(json.dumps(config))

    assert cli.main(["quantize", "--model", str(model), "--format", "fp8", "--export"]) == 0
    (export,) = [d for d in (tmp_path / "cache" / "artifacts").iterdir() if (d / "hf_quant_config.json").exists()]
    written = json.loads((export / "config.json").read_text())
    assert written["architectures"] == ["InternVLForConditionalGeneration"]
    assert json.loads((export / "hf_quant_config.json").read_text())["quantization"]["quant_algo"] == "FP8"
