"""Drift of a quantized format against a reference, from cell records: label flips, KL divergence
over the candidate labels, top-2 margins and accuracy, each with the statistics needed to tell a
real change from the noise of a small video set (in the spirit of llama.cpp's KL-divergence report),
and the per-format limits and verdict that judge a report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core.errors import ConfigError
from core.formats import FORMATS, KV_MODIFIER
from core.metrics.stats import mcnemar_exact, min_detectable_drop, percentile, wilson_interval

KL_FLOOR = 1e-12
"""Smallest probability used for the candidate side of KL, so a zero never gives inf."""


def candidate_distribution(logprobs: Mapping[str, float]) -> dict[str, float]:
    """Softmax restricted to the candidate labels: p(label | answer is one of the candidates)."""
    if not logprobs:
        raise ValueError("no candidate log-probs to normalize; the record needs 'candidate_logprobs'")
    if any(math.isnan(v) for v in logprobs.values()):
        raise ValueError(f"NaN among candidate log-probs {dict(logprobs)}; the run's numerics are broken")
    top = max(logprobs.values())
    if top == -math.inf:
        raise ValueError(f"every candidate has log-prob -inf: {dict(logprobs)}")
    weights = {k: math.exp(v - top) for k, v in logprobs.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def kl_divergence(p_ref: Mapping[str, float], p_test: Mapping[str, float], *,
                  floor: float = KL_FLOOR) -> float:
    """KL(p_ref || p_test) in nats over the same labels; ``p_test`` is floored at ``floor``."""
    if set(p_ref) != set(p_test):
        raise ValueError(f"KL needs the same candidate labels on both sides, got {sorted(p_ref)} "
                         f"and {sorted(p_test)}; compare records of the same task")
    kl = sum(p * math.log(p / max(p_test[k], floor)) for k, p in p_ref.items() if p > 0.0)
    return max(0.0, kl)  # sums of floats a few ulps off 1 can give -1e-17 for equal distributions


def ranked(logprobs: Mapping[str, float]) -> list[tuple[str, float]]:
    """Labels by descending log-prob, ties broken by label so the order never depends on dicts."""
    return sorted(logprobs.items(), key=lambda kv: (-kv[1], kv[0]))


def margin(logprobs: Mapping[str, float]) -> float:
    """Top-1 minus top-2 log-prob (the same in raw and candidate-normalized log-probs)."""
    if len(logprobs) < 2:
        raise ValueError(f"a margin needs at least two candidates, got {dict(logprobs)}")
    (_, a), (_, b) = ranked(logprobs)[:2]
    return a - b


@dataclass(frozen=True, kw_only=True)
class VideoDrift:
    """One paired video: both sides' labels and log-probs, and what changed."""

    video: str
    truth: str | None
    reference_label: str
    candidate_label: str
    reference_logprobs: dict[str, float]
    candidate_logprobs: dict[str, float]
    kl: float
    margin_change: float
    """Candidate minus reference top-2 margin (negative: the candidate is less sure)."""
    delta_p: float
    """p_ref(reference label) - p_cand(reference label), both normalized over the candidates."""
    same_top_token: bool | None
    """First generated token id equal on both sides; None when a side has no ``token_ids``."""

    @property
    def flipped(self) -> bool:
        """The candidate's label differs from the reference's."""
        return self.reference_label != self.candidate_label

    @property
    def direction(self) -> str:
        """``"reference->candidate"``, e.g. ``"Anomaly->Normal"``."""
        return f"{self.reference_label}->{self.candidate_label}"


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """Accuracy of both sides on the paired videos with ground truth, and McNemar's exact test."""

    n: int
    reference_correct: int
    candidate_correct: int
    reference_interval: tuple[float, float]
    candidate_interval: tuple[float, float]
    b: int
    """Reference right, candidate wrong."""
    c: int
    """Reference wrong, candidate right."""
    mcnemar_p: float

    @property
    def drop(self) -> float:
        """Reference accuracy minus candidate accuracy (positive: the candidate is worse)."""
        return (self.reference_correct - self.candidate_correct) / self.n


@dataclass(frozen=True, kw_only=True)
class DriftReport:
    """Everything ``compare_formats`` measured; rates and stats are None when no video paired."""

    reference_format: str
    candidate_format: str
    n: int
    videos: tuple[VideoDrift, ...]
    unpaired: tuple[str, ...]
    """Videos present on one side only."""
    errored: tuple[str, ...]
    """Videos present on both sides but not status 'ok' on both."""
    agreement: int
    agreement_interval: tuple[float, float]
    kl_mean: float | None
    kl_max: float | None
    kl_p50: float | None
    kl_p90: float | None
    kl_p99: float | None
    margin_change_mean: float | None
    abs_margin_change_mean: float | None
    abs_margin_change_max: float | None
    same_top_token: int
    same_top_token_n: int
    delta_p_mean: float | None
    accuracy: Accuracy | None
    min_detectable_drop: float

    @property
    def flips(self) -> list[VideoDrift]:
        """The paired videos whose label changed."""
        return [v for v in self.videos if v.flipped]

    @property
    def agreement_rate(self) -> float | None:
        """Top-1 label agreement over paired videos; None when none paired."""
        return self.agreement / self.n if self.n else None

    @property
    def flip_rate(self) -> float | None:
        """One minus the agreement rate; None when none paired."""
        return 1.0 - self.agreement / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite floats become None, since JSON has no inf)."""
        d = asdict(self)
        d.update(agreement_rate=self.agreement_rate, flip_rate=self.flip_rate,
                 flips=[{"video": v.video, "reference": v.reference_label, "candidate": v.candidate_label,
                         "direction": v.direction} for v in self.flips])
        if self.accuracy is not None:
            d["accuracy"]["drop"] = self.accuracy.drop
        return _json_safe(d)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def index_by_video(records: Sequence[Mapping[str, Any]], *, side: str) -> dict[str, Mapping[str, Any]]:
    """Records keyed by ``video``; a video twice on one side is an error (pairing would be a guess)."""
    out: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        video = rec.get("video")
        if video is None:
            raise ValueError(f"a {side} record has no 'video' key (keys: {sorted(rec)}); pass cell records")
        if video in out:
            raise ValueError(f"video '{video}' appears twice among the {side} records; "
                             "compare one task and one run per side")
        out[video] = rec
    return out


def _label(rec: Mapping[str, Any], video: str) -> tuple[str, dict[str, float]]:
    lps = rec.get("candidate_logprobs")
    if not lps:
        raise ValueError(f"video '{video}' has no candidate_logprobs; drift needs candidate scoring")
    return rec.get("predicted") or ranked(lps)[0][0], dict(lps)


def _first_token(rec: Mapping[str, Any]) -> int | None:
    ids = rec.get("token_ids")
    return ids[0] if ids else None


def _video_drift(video: str, ref: Mapping[str, Any], cand: Mapping[str, Any]) -> VideoDrift:
    ref_label, ref_lp = _label(ref, video)
    cand_label, cand_lp = _label(cand, video)
    if ref.get("truth") != cand.get("truth"):
        raise ValueError(f"video '{video}': ground truth differs between sides ({ref.get('truth')!r} vs "
                         f"{cand.get('truth')!r}); both runs must use the same dataset")
    p_ref, p_cand = candidate_distribution(ref_lp), candidate_distribution(cand_lp)
    try:
        kl = kl_divergence(p_ref, p_cand)
    except ValueError as exc:
        raise ValueError(f"video '{video}': {exc}") from None
    tok_ref, tok_cand = _first_token(ref), _first_token(cand)
    return VideoDrift(
        video=video, truth=ref.get("truth"), reference_label=ref_label, candidate_label=cand_label,
        reference_logprobs=ref_lp, candidate_logprobs=cand_lp, kl=kl,
        margin_change=margin(cand_lp) - margin(ref_lp),
        delta_p=p_ref[ref_label] - p_cand.get(ref_label, 0.0),
        same_top_token=None if tok_ref is None or tok_cand is None else tok_ref == tok_cand)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _accuracy(videos: Sequence[VideoDrift]) -> Accuracy | None:
    judged = [v for v in videos if v.truth is not None]
    if not judged:
        return None
    ref_ok = [v.reference_label == v.truth for v in judged]
    cand_ok = [v.candidate_label == v.truth for v in judged]
    b = sum(r and not c for r, c in zip(ref_ok, cand_ok))
    c = sum(c and not r for r, c in zip(ref_ok, cand_ok))
    n, kr, kc = len(judged), sum(ref_ok), sum(cand_ok)
    return Accuracy(n=n, reference_correct=kr, candidate_correct=kc, reference_interval=wilson_interval(kr, n),
                    candidate_interval=wilson_interval(kc, n), b=b, c=c, mcnemar_p=mcnemar_exact(b, c))


def compare_formats(reference: Sequence[Mapping[str, Any]], candidate: Sequence[Mapping[str, Any]], *,
                    reference_format: str, candidate_format: str) -> DriftReport:
    """Pair records by video (status 'ok' on both sides) and measure the candidate's drift."""
    refs, cands = index_by_video(reference, side="reference"), index_by_video(candidate, side="candidate")
    both = sorted(set(refs) & set(cands))
    ok = [v for v in both if refs[v].get("status") == "ok" and cands[v].get("status") == "ok"]
    videos = tuple(_video_drift(v, refs[v], cands[v]) for v in ok)
    kls = [v.kl for v in videos]
    changes = [v.margin_change for v in videos]
    tokens = [v.same_top_token for v in videos if v.same_top_token is not None]
    agree = sum(not v.flipped for v in videos)
    return DriftReport(
        reference_format=reference_format, candidate_format=candidate_format, n=len(videos), videos=videos,
        unpaired=tuple(sorted(set(refs) ^ set(cands))), errored=tuple(v for v in both if v not in ok),
        agreement=agree, agreement_interval=wilson_interval(agree, len(videos)),
        kl_mean=_mean(kls), kl_max=max(kls, default=None),
        kl_p50=percentile(kls, 50) if kls else None, kl_p90=percentile(kls, 90) if kls else None,
        kl_p99=percentile(kls, 99) if kls else None,
        margin_change_mean=_mean(changes), abs_margin_change_mean=_mean([abs(x) for x in changes]),
        abs_margin_change_max=max((abs(x) for x in changes), default=None),
        same_top_token=sum(tokens), same_top_token_n=len(tokens),
        delta_p_mean=_mean([v.delta_p for v in videos]), accuracy=_accuracy(videos),
        min_detectable_drop=min_detectable_drop(len(videos)))


def run_to_run(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]], *,
               tolerance: float = 0.0) -> dict[str, Any]:
    """Noise check: do two runs of one format agree exactly (labels, token ids, log-probs)?

    A video differs when its predicted or parsed label, its ``token_ids`` (when both have them) or
    any candidate log-prob (by more than ``tolerance``) differs. ``identical`` also needs every
    video paired with status 'ok' on both runs.
    """
    a, b = index_by_video(first, side="first"), index_by_video(second, side="second")
    both = sorted(set(a) & set(b))
    ok = [v for v in both if a[v].get("status") == "ok" and b[v].get("status") == "ok"]
    labels, tokens, logprobs, max_diff = [], [], [], 0.0
    for v in ok:
        if (a[v].get("predicted"), a[v].get("parsed")) != (b[v].get("predicted"), b[v].get("parsed")):
            labels.append(v)
        ta, tb = a[v].get("token_ids"), b[v].get("token_ids")
        if ta is not None and tb is not None and list(ta) != list(tb):
            tokens.append(v)
        la, lb = a[v].get("candidate_logprobs") or {}, b[v].get("candidate_logprobs") or {}
        diff = max((_abs_diff(la.get(k), lb.get(k)) for k in set(la) | set(lb)), default=0.0)
        max_diff = max(max_diff, diff)
        if diff > tolerance:
            logprobs.append(v)
    differing = sorted(set(labels) | set(tokens) | set(logprobs))
    unpaired = sorted(set(a) ^ set(b))
    errored = [v for v in both if v not in ok]
    return {"identical": not (differing or unpaired or errored), "n": len(ok),
            "max_abs_logprob_diff": max_diff if math.isfinite(max_diff) else None,
            "label_differences": labels, "token_id_differences": tokens, "logprob_differences": logprobs,
            "differing_videos": differing, "unpaired": unpaired, "errored": errored}


def _abs_diff(x: float | None, y: float | None) -> float:
    if x is None or y is None:
        return math.inf  # a label scored on one run only is as different as it gets
    return 0.0 if x == y else abs(x - y)  # equal -inf values must count as equal, not NaN


class ThresholdError(ConfigError, ValueError):
    """Drift thresholds asked for an unknown format or metric, or given a bad value."""


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Limits a candidate's drift must stay within; rates are fractions, KL and margins in nats."""

    max_flip_rate: float
    max_mean_kl: float
    max_kl: float
    max_mean_abs_margin_change: float
    max_accuracy_drop: float


EXACT = Thresholds(max_flip_rate=0.0, max_mean_kl=0.0, max_kl=0.0, max_mean_abs_margin_change=0.0,
                   max_accuracy_drop=0.0)
"""The reference against itself: the same kernels on the same inputs must give the same numbers."""
EIGHT_BIT = Thresholds(max_flip_rate=0.10, max_mean_kl=0.01, max_kl=0.10, max_mean_abs_margin_change=0.25,
                       max_accuracy_drop=0.10)
FOUR_BIT = Thresholds(max_flip_rate=0.20, max_mean_kl=0.05, max_kl=0.50, max_mean_abs_margin_change=0.50,
                      max_accuracy_drop=0.15)


def _tier(name: str) -> Thresholds:
    fmt = FORMATS[name]
    if not fmt.quantized:
        return EXACT
    return EIGHT_BIT if min(fmt.weight_bits, fmt.act_bits) >= 8 else FOUR_BIT


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {name: _tier(name) for name in FORMATS}
"""Per base format: bf16 exact, 8-bit weights and activations tight, anything 4-bit looser."""


def _loosest(a: Thresholds, b: Thresholds) -> Thresholds:
    return Thresholds(**{f.name: max(getattr(a, f.name), getattr(b, f.name)) for f in fields(Thresholds)})


def _check_overrides(overrides: Mapping[str, Mapping[str, float]]) -> None:
    valid = [f.name for f in fields(Thresholds)]
    known = set(DEFAULT_THRESHOLDS) | {k + KV_MODIFIER for k in DEFAULT_THRESHOLDS}
    for fmt, limits in overrides.items():
        if fmt not in known:
            raise ThresholdError(f"threshold overrides name unknown format '{fmt}'; known: {', '.join(sorted(known))}")
        for key, value in limits.items():
            if key not in valid:
                raise ThresholdError(f"unknown threshold '{key}' for format '{fmt}'; valid keys: {', '.join(valid)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                    or not math.isfinite(value):
                raise ThresholdError(f"threshold {fmt}.{key} must be a finite number >= 0, got {value!r}")


def thresholds_for(format: str, overrides: Mapping[str, Mapping[str, float]] | None = None) -> Thresholds:
    """Default thresholds of ``format`` with ``overrides`` ({format: {metric: limit}}) merged on top.

    A ``+kv_fp8`` format uses its base's limits, loosened to at least the 8-bit tier (an FP8 KV
    cache drifts even when the weights are bf16); an override for the exact name beats the base's.
    """
    overrides = overrides or {}
    _check_overrides(overrides)
    base = format[: -len(KV_MODIFIER)] if format.endswith(KV_MODIFIER) else format
    if base not in DEFAULT_THRESHOLDS:
        raise ThresholdError(f"no drift thresholds for format '{format}'; known formats: "
                             f"{', '.join(sorted(DEFAULT_THRESHOLDS))} (optionally with '{KV_MODIFIER}')")
    limits = DEFAULT_THRESHOLDS[base]
    if base != format:
        limits = _loosest(limits, EIGHT_BIT)
    for key in (base, format):
        limits = replace(limits, **{k: float(v) for k, v in overrides.get(key, {}).items()})
    return limits


@dataclass(frozen=True)
class Verdict:
    """Pass or fail of one drift report against its thresholds, with the evidence to show."""

    passed: bool
    failures: list[str]
    report: DriftReport
    thresholds: Thresholds
    offending: tuple[str, ...] = ()
    """Videos behind the failures, for the side-by-side table."""

    def render(self) -> str:
        """Plain-text account of the decision: the statistics, the limits, the offending videos."""
        return render_verdict(self)

    explain = render

    def __str__(self) -> str:
        return self.render()


def _worst(videos: Sequence[VideoDrift], key, limit: float, count: int = 5) -> list[str]:
    """Up to ``count`` videos whose own value is over a limit on the mean, worst first."""
    over = [v for v in videos if key(v) > limit]
    return [v.video for v in sorted(over, key=lambda v: (-key(v), v.video))[:count]]


def evaluate(report: DriftReport, thresholds: Thresholds) -> Verdict:
    """Judge ``report`` against ``thresholds``; each failure names the metric, its value and the limit."""
    t, fails, bad = thresholds, [], []
    if report.n == 0:
        fails.append("n = 0: no video is paired with status 'ok' on both sides, nothing to judge")
    if report.errored:
        fails.append(f"errored = {len(report.errored)} videos not 'ok' on both sides "
                     f"({', '.join(report.errored)}); their drift is unknown")
    vids = report.videos
    if report.n and report.flip_rate > t.max_flip_rate:
        fails.append(f"flip_rate = {report.flip_rate:.3f} ({report.n - report.agreement}/{report.n}) "
                     f"> limit max_flip_rate {t.max_flip_rate:.3f}")
        bad += [v.video for v in report.flips]
    if report.n and report.kl_mean > t.max_mean_kl:
        fails.append(f"mean_kl = {report.kl_mean:.4g} nats > limit max_mean_kl {t.max_mean_kl:.4g}")
        bad += _worst(vids, lambda v: v.kl, t.max_mean_kl)
    if report.n and report.kl_max > t.max_kl:
        over = [v.video for v in vids if v.kl > t.max_kl]
        fails.append(f"max_kl = {report.kl_max:.4g} nats > limit max_kl {t.max_kl:.4g} ({len(over)} videos over)")
        bad += over
    if report.n and report.abs_margin_change_mean > t.max_mean_abs_margin_change:
        fails.append(f"mean_abs_margin_change = {report.abs_margin_change_mean:.4g} nats "
                     f"> limit max_mean_abs_margin_change {t.max_mean_abs_margin_change:.4g}")
        bad += _worst(vids, lambda v: abs(v.margin_change), t.max_mean_abs_margin_change)
    acc = report.accuracy
    if acc is not None and acc.drop > t.max_accuracy_drop:
        fails.append(f"accuracy_drop = {acc.drop:.3f} > limit max_accuracy_drop {t.max_accuracy_drop:.3f} "
                     f"(McNemar exact p = {acc.mcnemar_p:.3g})")
        bad += [v.video for v in vids if v.truth is not None and v.reference_label == v.truth != v.candidate_label]
    return Verdict(passed=not fails, failures=fails, report=report, thresholds=t,
                   offending=tuple(dict.fromkeys(bad)))


def _pct(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {100 * k / n:.1f}% (95% Wilson {100 * lo:.1f}%..{100 * hi:.1f}%)"


def _side(label: str, logprobs: Mapping[str, float]) -> str:
    return f"{label} [" + ", ".join(f"{k} {v:.3f}" for k, v in ranked(logprobs)) + "]"


def render_verdict(verdict: Verdict) -> str:
    """The text of :meth:`Verdict.render` (aligned plain text, no colour)."""
    r, t = verdict.report, verdict.thresholds
    head = "PASS" if verdict.passed else f"FAIL ({len(verdict.failures)} failures)"
    lines = [f"drift {r.candidate_format} vs {r.reference_format} (reference): {head}",
             f"videos       {r.n} paired; unpaired: {', '.join(r.unpaired) or 'none'}; "
             f"errored: {', '.join(r.errored) or 'none'}"]
    if r.n:
        mdd = r.min_detectable_drop
        lines.append(f"sensitivity  {r.n} videos detect an agreement drop of >= {100 * mdd:.1f} points from "
                     "100% (exact one-sided binomial, alpha 0.05, power 0.8); smaller drops can pass unseen"
                     if math.isfinite(mdd) else f"sensitivity  {r.n} videos cannot detect any drop")
        dirs: dict[str, int] = {}
        for v in r.flips:
            dirs[v.direction] = dirs.get(v.direction, 0) + 1
        flips = ", ".join(f"{d} x{k}" for d, k in sorted(dirs.items())) or "none"
        lines += [f"agreement    {_pct(r.agreement, r.n)}; flips: {flips}",
                  f"KL (nats)    mean {r.kl_mean:.4g}  p50 {r.kl_p50:.4g}  p90 {r.kl_p90:.4g}  "
                  f"p99 {r.kl_p99:.4g}  max {r.kl_max:.4g}",
                  f"margin       candidate - reference top-2 margin: mean {r.margin_change_mean:+.4f}, "
                  f"mean |.| {r.abs_margin_change_mean:.4f}, max |.| {r.abs_margin_change_max:.4f} nats",
                  f"delta-p      mean p_ref(reference label) - p_cand(same label) = {r.delta_p_mean:+.4f}"]
        if r.same_top_token_n:
            lines.append(f"top token    {r.same_top_token}/{r.same_top_token_n} same first generated token")
    if r.accuracy is not None:
        a = r.accuracy
        sig = "significant" if a.mcnemar_p < 0.05 else "not significant"
        lines.append(f"accuracy     reference {_pct(a.reference_correct, a.n)}; candidate "
                     f"{_pct(a.candidate_correct, a.n)}; McNemar exact p = {a.mcnemar_p:.3g} "
                     f"(b={a.b}, c={a.c}; {sig} at 0.05)")
    lines.append("limits       " + ", ".join(f"{f.name} {getattr(t, f.name):g}" for f in fields(t)))
    lines += [f"FAIL         {f}" for f in verdict.failures]
    rows = [(v.video, _side(v.reference_label, v.reference_logprobs),
             _side(v.candidate_label, v.candidate_logprobs), f"{v.kl:.4g}")
            for v in sorted((v for v in r.videos if v.video in verdict.offending), key=lambda v: (-v.kl, v.video))]
    if rows:
        rows.insert(0, ("video", "reference label [log-probs]", "candidate label [log-probs]", "KL"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines.append("offending videos:")
        lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
