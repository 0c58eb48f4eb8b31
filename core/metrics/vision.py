"""Vision-side drift: the vision tower's output embeddings of a format against the reference's, per
clip and per frame group (Qwen2.5-VL: two frames per temporal patch; InternVL: one frame per tile).

The HF backend returns the tower's output for each scored clip (``Generation.vision``, never
written). The reference format's embeddings are kept in memory, keyed by model, backend, device
and the exact frames; a later format's embeddings of the same frames are compared with them and
only the comparison is recorded: per group the cosine similarity and the relative error
``||e - e_ref|| / ||e_ref||`` of the flattened group. The suite runs each engine group's reference
format first, so the reference is there when a candidate is scored; ``vqbench run`` answers a
pre-quantized checkpoint's ``--reference-model`` first for the same reason. vLLM keeps the vision
encoder's outputs inside its engine process (its encoder cache; no API hands them out), so vLLM cells have
none.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

MAX_BYTES = 1 << 30
"""Memory the reference embeddings may hold (oldest dropped first)."""


def group_stats(reference, candidate, groups: list[int]) -> list[dict[str, float]]:
    """Cosine similarity and relative error per frame group of two (tokens, dim) tensors."""
    import torch

    if reference.shape != candidate.shape:
        raise ValueError(f"vision embeddings differ in shape: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    out, start = [], 0
    for size in groups:
        r = reference[start:start + size].double().reshape(-1)
        c = candidate[start:start + size].double().reshape(-1)
        start += size
        norm = float(r.norm())
        cos = float(torch.nn.functional.cosine_similarity(r, c, dim=0)) if norm and float(c.norm()) else 0.0
        rel = float((c - r).norm()) / norm if norm else float("inf")
        out.append({"cos": round(cos, 6), "rel_err": float(f"{rel:.4g}"), "tokens": int(size)})
    return out


def summary(groups: list[dict[str, float]]) -> dict[str, Any]:
    """A record's vision comparison: per-group values and the worst group."""
    return {"groups": groups, "cos_min": min(g["cos"] for g in groups),
            "rel_err_max": max(g["rel_err"] for g in groups),
            "rel_err_mean": sum(g["rel_err"] for g in groups) / len(groups)}


class VisionKey(NamedTuple):
    """Which embeddings are comparable: the same frames of the same clip through the same model (a
    pre-quantized checkpoint's: its reference model's), backend and device."""

    model: str
    backend: str
    device: str
    clip: str
    indices: tuple
    shape: tuple


class VisionStore:
    """The reference format's vision embeddings of the clips it answered, for later formats."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[VisionKey, tuple[Any, list[int]]] = OrderedDict()

    def observe(self, key: VisionKey, *, reference: bool, embeddings, groups: list[int],
                reference_format: str) -> dict[str, Any] | None:
        """Keep ``embeddings`` when they are the reference's; else compare them with the reference's for
        the same key (None when the reference has not scored those frames)."""
        emb = embeddings.detach().to("cpu")
        if reference:
            self._items[key] = (emb, list(groups))
            self._items.move_to_end(key)
            self._evict(self._items)
            return None
        ref = self._items.get(key)
        if ref is None:
            return None
        return {"reference": reference_format, **summary(group_stats(ref[0], emb, groups))}

    def _evict(self, items: OrderedDict) -> None:
        def size(item) -> int:
            return item[0].numel() * item[0].element_size()

        total = sum(size(v) for v in items.values())
        while total > self.max_bytes and len(items) > 1:
            _, old = items.popitem(last=False)
            total -= size(old)
