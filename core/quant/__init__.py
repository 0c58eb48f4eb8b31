"""Quantizers behind one small interface (``core.quant.base.Quantizer``), described as data and
imported lazily by name: a format names its tool (``QuantFormat.tool``) and the tool's recipe
(``QuantFormat.recipe``); the HF backend and the checkpoint exporter ask the tool's quantizer what
to do, never a chain of ``if tool == ...``."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from core.errors import unknown_name


@dataclass(frozen=True, kw_only=True)
class QuantizerInfo:
    """One quantization tool."""

    name: str
    target: str
    """``module:Class`` of its ``Quantizer``, imported on first use."""
    packages: tuple[str, ...] = ()
    """Keys of ``core.capability.PACKAGES`` it needs installed."""
    versioned: tuple[str, ...] = ()
    """Packages whose versions results, goldens and the artifact cache record."""
    exporter: str = ""
    """``module:function`` writing the checkpoints engines load (``checkpoint_for`` calls it with
    ``(spec, fmt, options=, device=)``); '' = the tool writes none."""
    environment: str = ""
    """For a tool that runs in an environment of its own: the module that finds it, with
    ``python_path()`` (where it is), ``unavailable(spec) -> str | None`` (why it is not ready here;
    None when it is, or when ``spec`` needs no run of the tool) and ``recorded_versions()`` (what
    goldens record of it)."""
    families: tuple[str, ...] = ()
    """Model families its recipes are written for (() = any)."""


QUANTIZERS: dict[str, QuantizerInfo] = {
    q.name: q
    for q in [
        QuantizerInfo(name="none", target="core.quant.base:NoQuantizer"),
        QuantizerInfo(name="modelopt", target="core.quant.modelopt_q:ModelOptQuantizer", packages=("modelopt",),
                      versioned=("modelopt",), exporter="core.backends.exports:modelopt_export"),
        QuantizerInfo(name="bitsandbytes", target="core.quant.bnb:BitsAndBytesQuantizer", packages=("bitsandbytes",),
                      versioned=("bitsandbytes",)),
        QuantizerInfo(name="torchao", target="core.quant.torchao_q:TorchAOQuantizer", packages=("torchao",),
                      versioned=("torchao",)),
        # Runs in its own environment (llm-compressor pins transformers <=5.17): the main environment
        # only loads what it writes (vLLM has compressed-tensors; HF needs it: the route says so).
        QuantizerInfo(name="llmcompressor", target="core.quant.llmcompressor_q:LLMCompressorQuantizer",
                      versioned=("compressed_tensors",), exporter="core.quant.llmcompressor_q:export",
                      environment="core.quant.llmcompressor_q", families=("qwen2_5_vl",)),
    ]
}


def quantizer_info(name: str) -> QuantizerInfo:
    if name not in QUANTIZERS:
        raise unknown_name("quantization tool", name, QUANTIZERS)
    return QUANTIZERS[name]


def resolve(target: str):
    """The object a ``module:name`` target names (imported now)."""
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


@functools.lru_cache(maxsize=None)
def quantizer(name: str):
    """The ``Quantizer`` of tool ``name`` (one shared, stateless instance)."""
    return resolve(quantizer_info(name).target)()
