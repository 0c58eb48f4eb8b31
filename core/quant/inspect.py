"""Proof that quantization took effect: bytes on the device, low-bit modules, enabled quantizers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


class PackedSizeUnknown(Exception):
    """A tensor subclass (torchao) whose stored size cannot be read from its inner tensors."""


@dataclass(frozen=True)
class WeightSize:
    """Bytes of a model's parameters and buffers as stored; ``bytes`` is None, and ``note`` says
    why, when some tensor's packed size could not be read: never its logical (bf16) size instead."""

    bytes: int | None
    note: str | None = None


def weight_size(model) -> WeightSize:
    """Bytes of every parameter and buffer as stored (packed 4-bit storage counts as stored)."""
    seen: set[int] = set()
    total = 0
    unknown: Counter[str] = Counter()
    reasons: list[str] = []
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        try:
            total += tensor_bytes(t)
        except PackedSizeUnknown as exc:
            unknown[type(t).__name__] += 1
            reasons.append(str(exc))
    if unknown:
        return WeightSize(None, f"the packed size of {sum(unknown.values())} tensors ({dict(unknown)}) could not be "
                                f"read ({reasons[0]}); no weights figure is given rather than their logical size")
    return WeightSize(total)


def weight_bytes(model) -> int | None:
    """``weight_size(model).bytes``: None when a packed size could not be read."""
    return weight_size(model).bytes


def tensor_bytes(t) -> int:
    """Bytes of ``t`` as stored. A wrapper tensor subclass (torchao) reports its logical dtype, so its
    inner tensors are counted instead; PackedSizeUnknown when they cannot be read."""
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is None or type(t).__name__ in {"Parameter", "Tensor"}:
        return t.numel() * t.element_size()
    try:
        names, _ = flatten()
        inner = [getattr(t, n) for n in names]
    except (AttributeError, NotImplementedError, TypeError, ValueError) as exc:
        raise PackedSizeUnknown(f"{type(t).__name__}.__tensor_flatten__: {type(exc).__name__}: {exc}") from exc
    for name, x in zip(names, inner):
        if x is not None and not (hasattr(x, "numel") and hasattr(x, "element_size")):
            raise PackedSizeUnknown(f"{type(t).__name__}.{name} is a {type(x).__name__}, not a tensor")
    return sum(tensor_bytes(x) for x in inner if x is not None)


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
    """Weight bytes (and why they are unknown, if so) plus linear module classes and dtypes."""
    size = weight_size(model)
    return {"weight_bytes": size.bytes, **({"weight_bytes_note": size.note} if size.note else {}),
            "linear_modules": linear_dtypes(model)}
