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


QUANTIZERS: dict[str, QuantizerInfo] = {
    q.name: q
    for q in [
        QuantizerInfo(name="none", target="core.quant.base:NoQuantizer"),
        QuantizerInfo(name="modelopt", target="core.quant.modelopt_q:ModelOptQuantizer", packages=("modelopt",),
                      versioned=("modelopt",)),
        QuantizerInfo(name="bitsandbytes", target="core.quant.bnb:BitsAndBytesQuantizer", packages=("bitsandbytes",),
                      versioned=("bitsandbytes",)),
        QuantizerInfo(name="torchao", target="core.quant.torchao_q:TorchAOQuantizer", packages=("torchao",),
                      versioned=("torchao",)),
    ]
}


def quantizer_info(name: str) -> QuantizerInfo:
    if name not in QUANTIZERS:
        raise unknown_name("quantization tool", name, QUANTIZERS)
    return QUANTIZERS[name]


@functools.lru_cache(maxsize=None)
def quantizer(name: str):
    """The ``Quantizer`` of tool ``name`` (one shared, stateless instance)."""
    module, cls = quantizer_info(name).target.split(":")
    return getattr(importlib.import_module(module), cls)()
