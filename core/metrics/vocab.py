"""Full-vocabulary drift at the answer position and the first generated positions, in the spirit of
llama.cpp's ``--kl-divergence`` report (KL mean +- SE and percentiles, delta-p of the reference's
top token, same-top-token rate), over clips instead of text tokens.

Storage. A record keeps, for its first ``positions`` generated positions, the top-``k`` token ids
and log-probs of the full-vocabulary distribution plus the probability mass outside them
(``rest``): about 2k numbers per position instead of the vocabulary (152k for Qwen). Both backends
fill it from what they already have: HF from the step logits, vLLM from its raw log-probs with
``logprobs=k`` (vLLM's top-k are full-vocabulary log-softmax values; asking for the whole
vocabulary costs a detokenization of 152k tokens per step).

What is exact and what is a bound. The KL of two such records is computed over the tokens both
sides rank in their top-k, plus one bucket for every other token. Merging tokens into a bucket can
only lower a KL (the log-sum inequality), so this is a **lower bound** on the full-vocabulary KL,
exact when the reference puts no mass outside the common tokens; the report prints that mass
(``ref_rest``) beside it. The reference's top token and whether both sides agree on it are exact;
the candidate's probability of that token is exact when it is in the candidate's top-k, else it
is bounded above by the candidate's smallest top-k probability (delta-p is then a lower bound, and
counted as ``bounded``). Positions after the first generated token that differs between the sides
are not compared: the two distributions would condition on different prefixes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.metrics.stats import mean_and_se, percentile

DEFAULT_TOP_K = 32
DEFAULT_POSITIONS = 4
KL_FLOOR = 1e-12
KL_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
DELTA_P_PERCENTILES = (1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0)
DIGITS = 5
"""Decimals kept for stored log-probs (1e-5 nats; KL of a confident answer is ~1e-4 and up)."""


def compact(logprobs_rows, *, k: int = DEFAULT_TOP_K) -> dict[str, Any]:
    """The stored form of full-vocabulary log-probs ``(positions, vocab)`` (a torch tensor):
    top-``k`` ids and log-probs per position and the mass outside them."""
    import torch

    rows = logprobs_rows.float()
    k = min(k, rows.shape[-1])
    values, ids = rows.topk(k, dim=-1)
    rest = (1.0 - values.exp().sum(dim=-1)).clamp(min=0.0)
    return {"k": k, "ids": ids.tolist(), "logprobs": torch.round(values, decimals=DIGITS).tolist(),
            "rest": [float(f"{r:.4g}") for r in rest.tolist()]}


def compact_pairs(steps: Sequence[Sequence[tuple[int, float]]], *, k: int) -> dict[str, Any]:
    """The stored form from per-position (token id, log-prob) pairs (vLLM's top-k log-probs)."""
    ids, lps, rest = [], [], []
    for step in steps:
        top = sorted(step, key=lambda kv: -kv[1])[:k]
        ids.append([int(t) for t, _ in top])
        lps.append([round(float(v), DIGITS) for _, v in top])
        rest.append(float(f"{max(0.0, 1.0 - sum(math.exp(v) for _, v in top)):.4g}"))
    return {"k": k, "ids": ids, "logprobs": lps, "rest": rest}


@dataclass(frozen=True, kw_only=True)
class PositionDrift:
    """One compared position of one clip."""

    position: int
    kl: float
    """KL(reference || candidate) over the common top-k tokens plus a rest bucket (a lower bound)."""
    ref_rest: float
    """Reference probability outside the common tokens (0: the KL is exact)."""
    ref_top: int
    same_top: bool
    p_ref_top: float
    p_cand_top: float
    bounded: bool
    """The candidate's probability of the reference's top token is an upper bound (not in its top-k)."""

    @property
    def delta_p(self) -> float:
        """p_ref(reference top token) - p_cand(same token)."""
        return self.p_ref_top - self.p_cand_top


def _position(position: int, ref: Mapping[str, Any], cand: Mapping[str, Any]) -> PositionDrift:
    p = {int(t): math.exp(v) for t, v in zip(ref["ids"][position], ref["logprobs"][position])}
    q = {int(t): math.exp(v) for t, v in zip(cand["ids"][position], cand["logprobs"][position])}
    common = set(p) & set(q)
    kl = sum(p[t] * math.log(p[t] / max(q[t], KL_FLOOR)) for t in common if p[t] > 0)
    p_rest = max(0.0, 1.0 - sum(p[t] for t in common))
    q_rest = max(0.0, 1.0 - sum(q[t] for t in common))
    if p_rest > 1e-9:
        kl += p_rest * math.log(p_rest / max(q_rest, KL_FLOOR))
    top = int(ref["ids"][position][0])
    cand_probs = sorted(q.values())
    bounded = top not in q
    p_cand = q[top] if not bounded else min(cand_probs[0] if cand_probs else 1.0, float(cand["rest"][position]))
    return PositionDrift(position=position, kl=max(0.0, kl), ref_rest=p_rest, ref_top=top,
                         same_top=top == int(cand["ids"][position][0]), p_ref_top=p[top], p_cand_top=p_cand,
                         bounded=bounded)


def clip_positions(ref: Mapping[str, Any], cand: Mapping[str, Any], *, ref_tokens: Sequence[int] | None,
                   cand_tokens: Sequence[int] | None) -> list[PositionDrift]:
    """Compared positions of one clip: the answer position, then each following position whose
    prefix (the generated tokens before it) is the same on both sides."""
    n = min(len(ref.get("ids") or []), len(cand.get("ids") or []))
    out = []
    for i in range(n):
        if i and (ref_tokens is None or cand_tokens is None or list(ref_tokens[:i]) != list(cand_tokens[:i])):
            break
        out.append(_position(i, ref, cand))
    return out


@dataclass(frozen=True, kw_only=True)
class Distribution:
    """llama.cpp-style summary of one series (over clips, or over clip-positions)."""

    n: int
    kl_mean: float
    kl_se: float | None
    kl_percentiles: dict[str, float]
    kl_max: float
    delta_p_mean: float
    delta_p_rms: float
    delta_p_percentiles: dict[str, float]
    same_top: int
    same_top_rate: float
    same_top_se: float
    max_ref_rest: float
    bounded: int


def summarize(positions: Sequence[PositionDrift]) -> Distribution | None:
    """The statistic set over ``positions`` (None when empty)."""
    if not positions:
        return None
    kls = [p.kl for p in positions]
    dps = [p.delta_p for p in positions]
    mean, se = mean_and_se(kls)
    same = sum(p.same_top for p in positions)
    rate = same / len(positions)
    return Distribution(
        n=len(positions), kl_mean=mean, kl_se=se,
        kl_percentiles={f"p{q:g}": percentile(kls, q) for q in KL_PERCENTILES}, kl_max=max(kls),
        delta_p_mean=sum(dps) / len(dps), delta_p_rms=math.sqrt(sum(d * d for d in dps) / len(dps)),
        delta_p_percentiles={f"p{q:g}": percentile(dps, q) for q in DELTA_P_PERCENTILES},
        same_top=same, same_top_rate=rate, same_top_se=math.sqrt(rate * (1 - rate) / len(positions)),
        max_ref_rest=max(p.ref_rest for p in positions), bounded=sum(p.bounded for p in positions))


@dataclass(frozen=True, kw_only=True)
class VocabDrift:
    """Full-vocabulary drift of a candidate over the paired clips."""

    clips: dict[str, list[PositionDrift]]
    missing: tuple[str, ...] = ()
    """Paired clips without stored distributions on one side."""
    answer: Distribution | None = None
    """Over clips, at the answer position (one value per clip)."""
    positions: Distribution | None = None
    """Over every compared (clip, position)."""
    per_position: dict[int, Distribution] = field(default_factory=dict)
    dominant: tuple[tuple[str, float], ...] = ()
    """Clips carrying the largest shares of the summed answer-position KL, with their shares."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clips"] = {clip: [{**asdict(p), "delta_p": p.delta_p} for p in pos] for clip, pos in self.clips.items()}
        d["dominant"] = [{"clip": c, "share": s} for c, s in self.dominant]
        d["per_position"] = {str(k): v for k, v in d["per_position"].items()}
        return d


def dominant_clips(kl_by_clip: Mapping[str, float], *, share: float = 0.5,
                   most: int = 5) -> tuple[tuple[str, float], ...]:
    """The fewest clips (at most ``most``) that carry ``share`` of the summed KL, largest first."""
    total = sum(kl_by_clip.values())
    if total <= 0:
        return ()
    out, acc = [], 0.0
    for clip, kl in sorted(kl_by_clip.items(), key=lambda kv: (-kv[1], kv[0]))[:most]:
        out.append((clip, kl / total))
        acc += kl / total
        if acc >= share:
            break
    return tuple(out)


def compare_clips(pairs: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]) -> VocabDrift | None:
    """Vocabulary drift over paired records ({clip: (reference record, candidate record)}); None
    when no record on either side stored distributions (older results, or a backend without them)."""
    clips, missing = {}, []
    for clip, (ref, cand) in sorted(pairs.items()):
        rv, cv = ref.get("vocab"), cand.get("vocab")
        if not rv or not cv:
            missing.append(clip)
            continue
        clips[clip] = clip_positions(rv, cv, ref_tokens=ref.get("token_ids"), cand_tokens=cand.get("token_ids"))
    if not clips:
        return None
    answer = [pos[0] for pos in clips.values() if pos]
    pooled = [p for pos in clips.values() for p in pos]
    depth = max((len(pos) for pos in clips.values()), default=0)
    per_position = {i: s for i in range(depth) if (s := summarize([p for p in pooled if p.position == i]))}
    return VocabDrift(clips=clips, missing=tuple(missing), answer=summarize(answer), positions=summarize(pooled),
                      per_position=per_position,
                      dominant=dominant_clips({c: pos[0].kl for c, pos in clips.items() if pos}))
