"""Which weight file a checkpoint is loaded from: ``--allow-pickle`` allows a pickle file, it never
requires one, and safetensors win whenever a directory holds them (the HF backend and the
llm-compressor worker load the same way)."""

from __future__ import annotations

import shutil

import pytest

from core.base import paths
from core.inputs.requests import EngineOptions
from core.models import registry
from core.plan import device
from core.plan.formats import get_format

pytestmark = pytest.mark.cpu

torch = pytest.importorskip("torch", reason="needs torch: pip install 'vqbench[hf]'")
transformers = pytest.importorskip("transformers", reason="needs transformers: pip install 'vqbench[hf]'")

TINY_TRAINED = paths.FIXTURES_DIR / "models" / "tiny-trained"


def _safetensors_lm_head():
    from safetensors.torch import load_file

    return load_file(str(TINY_TRAINED / "model.safetensors"))["lm_head.weight"]


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    """tiny-trained holding both ``model.safetensors`` and a ``pytorch_model.bin`` whose every tensor
    is negated, so the loaded weights tell which file was read."""
    from safetensors.torch import load_file

    d = tmp_path_factory.mktemp("both") / "tiny-both"
    shutil.copytree(TINY_TRAINED, d)
    state = load_file(str(d / "model.safetensors"))
    torch.save({k: -v if v.is_floating_point() else v for k, v in state.items()}, d / "pytorch_model.bin")
    return d


@pytest.fixture(scope="module")
def pickle_only(tmp_path_factory, both_formats):
    d = tmp_path_factory.mktemp("pickle") / "tiny-pickle"
    shutil.copytree(both_formats, d)
    (d / "model.safetensors").unlink()
    return d


def _hf_lm_head(directory, *, allow_pickle: bool):
    from core.backends.hf import HFBackend

    options = EngineOptions(allow_pickle=allow_pickle)
    spec = registry.checkpoint_spec(directory, allow_pickle=allow_pickle)
    backend = HFBackend(spec, get_format("bf16"), device.CPU, options)
    try:
        backend.load()
        return backend.model.lm_head.weight.detach().float().clone()
    finally:
        backend.close()


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_hf_loads_a_safetensors_checkpoint_with_or_without_allow_pickle(allow_pickle):
    """--allow-pickle used to pass use_safetensors=False: transformers then looked for .bin only and
    every safetensors checkpoint (the built-ins included) failed to load."""
    got = _hf_lm_head(TINY_TRAINED, allow_pickle=allow_pickle)
    assert torch.equal(got, _safetensors_lm_head().to(torch.bfloat16).float())


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_hf_prefers_safetensors_when_both_files_exist(both_formats, allow_pickle):
    got = _hf_lm_head(both_formats, allow_pickle=allow_pickle)
    expected = _safetensors_lm_head().to(torch.bfloat16).float()
    assert torch.equal(got, expected), "loaded the (negated) pickle file although safetensors were there"


def test_hf_loads_a_pickle_only_checkpoint_with_allow_pickle(pickle_only):
    got = _hf_lm_head(pickle_only, allow_pickle=True)
    assert torch.equal(got, -_safetensors_lm_head().to(torch.bfloat16).float())


class _Spy:
    """Records every ``from_pretrained`` call's keyword arguments, then makes the real call."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def from_pretrained(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self.real.from_pretrained(*args, **kwargs)


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_llmcompressor_worker_loads_locally_and_prefers_safetensors(both_formats, allow_pickle):
    """The worker (llm-compressor's own environment) passed neither local_files_only nor
    use_safetensors: it would read a pickle file when both existed, and could reach the hub."""
    from core.quant import llmcompressor_worker

    model_cls, proc_cls = _Spy(transformers.AutoModelForImageTextToText), _Spy(transformers.AutoProcessor)
    job = {"model": str(both_formats), "allow_pickle": allow_pickle}
    model, _ = llmcompressor_worker.load(job, torch=torch, auto_model=model_cls, auto_processor=proc_cls)
    assert all(call.get("local_files_only") is True for call in model_cls.calls + proc_cls.calls)
    assert torch.equal(model.lm_head.weight.detach().float(), _safetensors_lm_head().to(torch.bfloat16).float())


def test_llmcompressor_worker_reads_a_pickle_only_checkpoint_only_when_allowed(pickle_only):
    from core.quant import llmcompressor_worker

    def load(allow_pickle):
        return llmcompressor_worker.load({"model": str(pickle_only), "allow_pickle": allow_pickle}, torch=torch,
                                         auto_model=transformers.AutoModelForImageTextToText,
                                         auto_processor=transformers.AutoProcessor)

    with pytest.raises(OSError, match="model.safetensors"):
        load(False)
    model, _ = load(True)
    assert torch.equal(model.lm_head.weight.detach().float(), -_safetensors_lm_head().to(torch.bfloat16).float())
