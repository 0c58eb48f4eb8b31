"""Quantizers behind one small interface (``core.quant.base.Quantizer``), imported lazily by name: a
format names its tool (``QuantFormat.tool``) and the tool's recipe (``QuantFormat.recipe``); the HF
backend and the checkpoint exporter ask the tool's quantizer what to do, never a chain of
``if tool == ...``. The tools' facts are in ``core.plan.catalog``.

May import: ``core.base``, ``core.inputs``, ``core.models``, ``core.plan``.
"""

from __future__ import annotations

import functools

from core.plan.catalog import QUANTIZERS, QuantizerInfo, quantizer_info, resolve

__all__ = ["QUANTIZERS", "QuantizerInfo", "quantizer", "quantizer_info", "resolve"]


@functools.cache
def quantizer(name: str):
    """The ``Quantizer`` of tool ``name`` (one shared, stateless instance)."""
    return resolve(quantizer_info(name).target)()
