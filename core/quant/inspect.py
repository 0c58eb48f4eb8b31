"""Proof that quantization took effect: bytes on the device, low-bit modules, enabled quantizers."""

from __future__ import annotations

from collections import Counter
from typing import Any


def weight_bytes(model) -> int:
    """Bytes of every parameter and buffer as stored (packed 4-bit storage counts as stored)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += tensor_bytes(t)
    return total


def tensor_bytes(t) -> int:
    # torchao tensor subclasses report the logical dtype; count their inner tensors instead.
    inner = getattr(t, "__tensor_flatten__", None)
    if inner is not None and type(t).__name__ not in {"Parameter", "Tensor"}:
        try:
            names, _ = t.__tensor_flatten__()
            return sum(tensor_bytes(getattr(t, n)) for n in names)
        except Exception:  # noqa: BLE001 - fall back to the logical size
            pass
    return t.numel() * t.element_size()


def linear_dtypes(model, *, prefix: str = "") -> dict[str, int]:
    """Count of linear-like modules by class name and weight dtype, e.g. {'Linear8bitLt/int8': 14}."""
    counts: Counter[str] = Counter()
    for name, module in model.named_modules():
        if not name.startswith(prefix):
            continue
        w = getattr(module, "weight", None)
        if w is None or not hasattr(w, "dtype") or w.dim() != 2:
            continue
        cls = type(module).__name__
        if "Linear" not in cls and "linear" not in cls.lower():
            continue
        counts[f"{cls}/{str(w.dtype).replace('torch.', '')}"] += 1
    return dict(sorted(counts.items()))


def summarize(model) -> dict[str, Any]:
    """Weight bytes plus linear module classes and dtypes, per model part."""
    return {"weight_bytes": weight_bytes(model), "linear_modules": linear_dtypes(model)}
