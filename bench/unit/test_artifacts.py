"""The quantized-artifact cache reads nothing that can run code, and weight sizes never fall back
to a logical size silently."""

from __future__ import annotations

import os

import pytest

from core.plan.formats import get_format

pytestmark = pytest.mark.cpu

torch = pytest.importorskip("torch", reason="needs torch: pip install 'vqbench[hf]'")


class _RunsCode:
    """Unpickling this creates a directory: proof that the load ran code from the file."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _modelopt():
    pytest.importorskip("modelopt.torch.quantization", reason="needs nvidia-modelopt: pip install 'vqbench[modelopt]'")
    import modelopt.torch.quantization as mtq

    return mtq


def _small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))


def test_a_cached_modelopt_state_cannot_run_code(tmp_path, monkeypatch):
    """restore_modelopt used torch.load(weights_only=False): whoever can write to the cache directory
    (a shared VQBENCH_CACHE) could run code in every later run."""
    _modelopt()
    from core.quant import artifacts

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "ran"
    entry = tmp_path / "entry"
    entry.mkdir()
    torch.save({"modelopt_state_dict": [_RunsCode(marker)]}, entry / "modelopt_state.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        artifacts.restore_modelopt(_small_model(), entry)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["fp8", "int8_sq", "int4_awq", "w4a8_awq", "nvfp4+kv_fp8"])
def test_modelopt_state_round_trips_without_pickle(fmt, tmp_path, monkeypatch):
    """What store_modelopt writes restores under weights_only=True, with the calibrated scales."""
    mtq = _modelopt()
    import modelopt.torch.opt as mto

    from core.quant import artifacts
    from core.quant.modelopt_q import build_config

    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    data = torch.randn(8, 32)
    model = mtq.quantize(_small_model(), build_config(get_format(fmt)), forward_loop=lambda m: m(data))
    entry = artifacts.store_modelopt(model, "k", record={"format": fmt})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(entry / "modelopt_state.pt")) == []
    restored = artifacts.restore_modelopt(_small_model(), entry)
    got, want = restored.state_dict(), model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)  # scales included
    assert (len(mto.modelopt_state(restored)["modelopt_state_dict"])
            == len(mto.modelopt_state(model)["modelopt_state_dict"]))
    if not fmt.startswith("nvfp4"):  # NVFP4's fake-quant kernel needs CUDA
        with torch.no_grad():
            assert torch.equal(restored(data), model(data))


# --- weight sizes ---------------------------------------------------------------------------------

class _Unreadable(torch.Tensor):
    """A wrapper subclass whose inner tensors cannot be listed (as a torchao tensor might not)."""

    def __tensor_flatten__(self):
        raise NotImplementedError("no inner tensors")


def test_an_unreadable_packed_size_is_reported_not_counted_at_its_logical_size():
    """inspect.tensor_bytes swallowed every exception and counted such a tensor at its logical (bf16)
    size: a packed format's 'weights' figure could show its unquantized size with no note."""
    from core.quant.inspect import PackedSizeUnknown, summarize, tensor_bytes, weight_size

    model = torch.nn.Linear(8, 8, bias=False).to(torch.bfloat16)
    plain = weight_size(model)
    assert plain == weight_size(model) and plain.bytes == 8 * 8 * 2 and plain.note is None
    model.register_buffer("packed", torch.Tensor._make_subclass(_Unreadable, torch.zeros(16, 16, dtype=torch.bfloat16)))
    size = weight_size(model)
    assert size.bytes is None
    assert "packed size of 1 tensors ({'_Unreadable': 1})" in size.note and "no inner tensors" in size.note
    assert summarize(model)["weight_bytes_note"] == size.note
    with pytest.raises(PackedSizeUnknown, match="_Unreadable.__tensor_flatten__: NotImplementedError"):
        tensor_bytes(model.packed)


def test_other_errors_are_not_taken_for_an_unknown_size():
    from core.quant.inspect import tensor_bytes

    class Broken(torch.Tensor):
        def __tensor_flatten__(self):
            raise ZeroDivisionError("a bug, not a missing size")

    with pytest.raises(ZeroDivisionError):
        tensor_bytes(torch.Tensor._make_subclass(Broken, torch.zeros(2)))


def test_torchao_weights_count_as_packed():
    pytest.importorskip("torchao", reason="needs torchao: pip install 'vqbench[torchao]'")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    from core.quant.inspect import weight_size

    model = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False)).to(torch.bfloat16)
    assert weight_size(model).bytes == 64 * 64 * 2
    quantize_(model, Int8WeightOnlyConfig())
    assert type(model[0].weight).__name__ not in {"Parameter", "Tensor"}
    size = weight_size(model)
    assert size.note is None and 64 * 64 <= size.bytes < 64 * 64 * 2  # int8 values plus their scales
