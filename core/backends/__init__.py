"""Inference backends behind one small interface, looked up lazily by name."""

from __future__ import annotations

import importlib

from core.errors import unknown_name

# name -> "module:Class"; imported only when a backend is used, so heavy engines stay unimported.
BACKENDS: dict[str, str] = {
    "hf": "core.backends.hf:HFBackend",
    "vllm": "core.backends.vllm:VLLMBackend",
    "trtllm": "core.backends.trtllm:TRTLLMBackend",
}


def backend_class(name: str):
    """The Backend subclass registered under ``name`` ("did you mean" on typos)."""
    if name not in BACKENDS:
        raise unknown_name("backend", name, BACKENDS)
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)
