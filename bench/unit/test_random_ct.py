"""The random-weight NVFP4 checkpoint a shape-only model is served from (``core.quant.random_ct``): vLLM's
dummy loader gives NVFP4 non-finite scales, so these weights must be finite, packed the way vLLM's
compressed-tensors W4A4 scheme loads them, and read back by compressed-tensors' own decompressor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.cpu

torch = pytest.importorskip("torch", reason="needs torch: pip install 'vqbench[hf]'")
pytest.importorskip("transformers", reason="needs transformers: pip install 'vqbench[hf]'")
pytest.importorskip("compressed_tensors", reason="needs compressed-tensors: pip install 'vqbench[ct]'")

TINY = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-trained"
# What vLLM's CompressedTensorsW4A4Fp4.create_weights registers per quantized linear layer (0.26 and 0.32).
VLLM_PARAMS = {"weight_packed", "weight_scale", "weight_global_scale", "input_global_scale"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from safetensors.torch import load_file

    from core.quant import random_ct
    from core.quant.llmcompressor_q import quantization_configs

    qcfg = quantization_configs()["configs"]["NVFP4"]
    out = tmp_path_factory.mktemp("nvfp4")
    report = random_ct.write(TINY, out, qcfg, device="cpu")
    tensors = {}
    for f in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(f))
    return out, qcfg, report, tensors


def _layers(tensors, suffix):
    return sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(suffix)})


def test_every_language_model_linear_is_packed_as_vllm_loads_it(written):
    out, qcfg, report, tensors = written
    packed = _layers(tensors, ".weight_packed")
    assert len(packed) == report["quantized_layers"] == 14  # 2 layers x (q, k, v, o, gate, up, down)
    assert all("language_model" in m for m in packed)
    for m in packed:
        have = {k[len(m) + 1:] for k in tensors if k.startswith(m + ".")}
        assert have - {"bias"} == VLLM_PARAMS, m
        w, s = tensors[f"{m}.weight_packed"], tensors[f"{m}.weight_scale"]
        assert w.dtype == torch.uint8 and s.dtype == torch.float8_e4m3fn
        assert s.shape == (w.shape[0], w.shape[1] * 2 // 16)  # two FP4 values a byte, one FP8 scale per 16
        assert tensors[f"{m}.weight_global_scale"].shape == tensors[f"{m}.input_global_scale"].shape == (1,)
    # the vision tower and lm_head stay bf16, as the recipe's ignore list says
    assert not [k for k in tensors if "visual" in k and "packed" in k]
    assert tensors["lm_head.weight"].dtype == torch.bfloat16
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == qcfg
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)


def test_every_value_is_finite_and_the_scales_are_positive_and_shared(written):
    _, _, _, tensors = written
    for k, t in tensors.items():
        if t.is_floating_point():
            assert torch.isfinite(t.float()).all(), k
    for suffix in ("weight_scale", "weight_global_scale", "input_global_scale"):
        for k in (k for k in tensors if k.endswith(suffix)):
            assert (tensors[k].float() > 0).all(), k
    # vLLM keeps one global scale per fused layer (q/k/v, gate/up): every shard must agree
    for suffix in ("weight_global_scale", "input_global_scale"):
        assert len({float(v) for k, v in tensors.items() if k.endswith(suffix)}) == 1


def test_compressed_tensors_reads_the_weights_back_at_the_drawn_scale(written):
    from compressed_tensors.compressors import NVFP4PackedCompressor
    from compressed_tensors.quantization import QuantizationScheme

    from core.quant import random_ct

    _, qcfg, _, tensors = written
    scheme = QuantizationScheme.model_validate(qcfg["config_groups"]["group_0"])
    m = "model.language_model.layers.1.mlp.down_proj"
    state = {k[len(m) + 1:]: v for k, v in tensors.items() if k.startswith(m + ".")}
    w = NVFP4PackedCompressor.decompress(state, scheme)["weight"].float()
    assert torch.isfinite(w).all()
    assert abs(float(w.std()) - random_ct.WEIGHT_STD) < 0.2 * random_ct.WEIGHT_STD
    assert float(w.abs().max()) <= random_ct.CLIP * 1.01


def test_a_non_nvfp4_recipe_is_refused(tmp_path):
    from core.quant import random_ct
    from core.quant.llmcompressor_q import quantization_configs

    with pytest.raises(ValueError, match="nvfp4-pack-quantized only"):
        random_ct.write(TINY, tmp_path, quantization_configs()["configs"]["W4A16_GPTQ"], device="cpu")


def test_a_shape_model_in_nvfp4_gets_random_weights_not_dummy_ones(monkeypatch, tmp_path):
    """The plan's checkpoint for a shape-only model: config-only (vLLM's dummy weights) for every ct_*
    format but NVFP4, which gets a written checkpoint (load_format 'auto' on vLLM)."""
    from core.models import registry
    from core.plan.formats import get_format
    from core.quant import llmcompressor_q, random_ct

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path))
    spec = registry.resolve("qwen2.5-vl-7b")
    calls = []

    def fake_write(config_dir, out, qcfg, **kw):  # the 7B's real weights would take minutes on a CPU
        calls.append(qcfg["format"])
        (out / "model-00001-of-00001.safetensors").write_bytes(b"stand-in")
        (out / "config.json").write_text(json.dumps({"quantization_config": qcfg}))
        return {"weights": "stand-in"}

    monkeypatch.setattr(random_ct, "write", fake_write)
    _, report = llmcompressor_q.dummy_checkpoint(spec, get_format("ct_nvfp4"))
    assert calls == ["nvfp4-pack-quantized"]
    assert report["random_weights"] and not report.get("dummy_weights")
    _, report = llmcompressor_q.dummy_checkpoint(spec, get_format("ct_w4a16"))
    assert report["dummy_weights"] and calls == ["nvfp4-pack-quantized"]
