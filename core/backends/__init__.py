"""Inference backends behind one small interface (``core.backends.base.Backend``), imported lazily by
name, so heavy engines stay unimported until a cell uses them. Their facts are in ``core.plan.catalog``.

May import: ``core.base``, ``core.inputs``, ``core.models``, ``core.plan``, ``core.metrics``, ``core.quant``.
"""

from __future__ import annotations

import importlib

from core.plan.catalog import BACKENDS, BackendInfo, backend_info

__all__ = ["BACKENDS", "BackendInfo", "backend_class", "backend_info"]


def backend_class(name: str):
    """The Backend subclass registered under ``name``."""
    module, cls = backend_info(name).target.split(":")
    return getattr(importlib.import_module(module), cls)
