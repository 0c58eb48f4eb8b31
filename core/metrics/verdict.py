"""Per-format drift limits and the verdict that judges a DriftReport against them, with the
statistics behind the decision printed for people (and the offending videos side by side).

A verdict is ``fail`` (a metric over its limit, or the paired McNemar gate finds the candidate
significantly less accurate), ``inconclusive`` (nothing over its limit, but the clip set is too
small to see some limit: ``core.metrics.sensitivity``) or ``pass``. An inconclusive verdict passes
the test unless ``--drift-inconclusive fail`` is given; it is always shown as such, with the clips
needed, in the test output, the results file and the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

from core.base.errors import ConfigError
from core.metrics.drift import DriftReport, VideoDrift, ranked
from core.metrics.sensitivity import Sensitivity, sensitivities
from core.metrics.stats import wilson_interval
from core.plan.formats import FORMATS, KV_MODIFIER, VIT_MODIFIER, split_modifiers

INCONCLUSIVE_POLICIES = ("pass", "fail")


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
        if fmt not in known and split_modifiers(fmt)[0] not in DEFAULT_THRESHOLDS:
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
    cache drifts even when the weights are bf16); a ``+vit`` format keeps its base's tier (its
    vision-side drift is what the comparison shows). An override for the exact name beats the base's.
    """
    overrides = overrides or {}
    _check_overrides(overrides)
    base, _, kv = split_modifiers(format)
    if base not in DEFAULT_THRESHOLDS:
        raise ThresholdError(f"no drift thresholds for format '{format}'; known formats: "
                             f"{', '.join(sorted(DEFAULT_THRESHOLDS))} (optionally with '{KV_MODIFIER}' or "
                             f"'{VIT_MODIFIER}')")
    limits = DEFAULT_THRESHOLDS[base]
    if kv:
        limits = _loosest(limits, EIGHT_BIT)
    for key in (base, format):
        limits = replace(limits, **{k: float(v) for k, v in overrides.get(key, {}).items()})
    return limits


@dataclass(frozen=True)
class DriftVerdict:
    """Pass or fail of one drift report against its thresholds, with the evidence to show."""

    passed: bool
    failures: list[str]
    report: DriftReport
    thresholds: Thresholds
    offending: tuple[str, ...] = ()
    """Videos behind the failures, for the side-by-side table."""
    sensitivity: tuple[Sensitivity, ...] = ()
    """Per statistical gate: the smallest change the clip set detects, and the clips needed."""
    confidence: float = 0.95
    inconclusive_policy: str = "pass"

    @property
    def inconclusive(self) -> list[Sensitivity]:
        """The gates that passed on a set too small to see their limit (empty once anything failed)."""
        return [] if self.failures else [s for s in self.sensitivity if not s.conclusive]

    @property
    def status(self) -> str:
        """fail, inconclusive or pass."""
        return "fail" if self.failures else "inconclusive" if self.inconclusive else "pass"

    def to_dict(self) -> dict:
        """The verdict for JSON records (the report itself is stored beside it)."""
        return {"status": self.status, "passed": self.passed, "failures": list(self.failures),
                "offending": list(self.offending), "confidence": self.confidence,
                "inconclusive_policy": self.inconclusive_policy,
                "sensitivity": [s.to_dict() for s in self.sensitivity],
                "thresholds": {f.name: getattr(self.thresholds, f.name) for f in fields(self.thresholds)}}

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


def evaluate(report: DriftReport, thresholds: Thresholds, *, confidence: float = 0.95,
             inconclusive: str = "pass") -> DriftVerdict:
    """Judge ``report`` against ``thresholds``; each failure names the metric, its value and the limit.
    ``confidence`` sets the paired gate's level and the power analysis (alpha = 1 - confidence);
    ``inconclusive`` ("pass" or "fail") says whether an inconclusive verdict passes."""
    if inconclusive not in INCONCLUSIVE_POLICIES:
        raise ThresholdError(f"inconclusive must be one of {', '.join(INCONCLUSIVE_POLICIES)}, got {inconclusive!r}")
    t, fails, bad = thresholds, [], []
    alpha = 1.0 - confidence
    if report.n == 0:
        fails.append("n = 0: no video is paired with status 'ok' on both sides, nothing to judge")
    if report.errored:
        fails.append(f"errored = {len(report.errored)} videos not 'ok' on both sides "
                     f"({', '.join(report.errored)}); their drift is unknown")
    vids = report.videos
    if report.n and report.flip_rate is not None and report.flip_rate > t.max_flip_rate:
        fails.append(f"flip_rate = {report.flip_rate:.3f} ({report.n - report.agreement}/{report.n}) "
                     f"> limit max_flip_rate {t.max_flip_rate:.3f}")
        bad += [v.video for v in report.flips]
    if report.n and report.kl_mean is not None and report.kl_mean > t.max_mean_kl:
        fails.append(f"mean_kl = {report.kl_mean:.4g} nats > limit max_mean_kl {t.max_mean_kl:.4g}")
        bad += _worst(vids, lambda v: v.kl, t.max_mean_kl)
    if report.n and report.kl_max is not None and report.kl_max > t.max_kl:
        over = [v.video for v in vids if v.kl > t.max_kl]
        fails.append(f"max_kl = {report.kl_max:.4g} nats > limit max_kl {t.max_kl:.4g} ({len(over)} videos over)")
        bad += over
    if (report.n and report.abs_margin_change_mean is not None
            and report.abs_margin_change_mean > t.max_mean_abs_margin_change):
        fails.append(f"mean_abs_margin_change = {report.abs_margin_change_mean:.4g} nats "
                     f"> limit max_mean_abs_margin_change {t.max_mean_abs_margin_change:.4g}")
        bad += _worst(vids, lambda v: abs(v.margin_change), t.max_mean_abs_margin_change)
    acc = report.accuracy
    if acc is not None and acc.drop > t.max_accuracy_drop:
        fails.append(f"accuracy_drop = {acc.drop:.3f} > limit max_accuracy_drop {t.max_accuracy_drop:.3f} "
                     f"(McNemar exact p = {acc.mcnemar_p:.3g})")
        bad += [v.video for v in vids if v.truth is not None and v.reference_label == v.truth != v.candidate_label]
    test = acc.test if acc is not None else None
    if test is not None and t.max_accuracy_drop > 0 and test.b > test.c and test.p_value < alpha:
        fails.append(f"paired flips: the candidate is significantly less accurate ({test.method} p = "
                     f"{test.p_value:.3g} < {alpha:.2g}; {test.b} right->wrong, {test.c} wrong->right over "
                     f"{test.items} questions in {test.clusters} clips)")
        bad += [v.video for v in vids if v.truth is not None and v.reference_label == v.truth != v.candidate_label]
    sens = tuple(sensitivities(report, t, confidence=confidence))
    undecided = not fails and any(not s.conclusive for s in sens)
    passed = not fails and not (undecided and inconclusive == "fail")
    return DriftVerdict(passed=passed, failures=fails, report=report, thresholds=t, offending=tuple(dict.fromkeys(bad)),
                   sensitivity=sens, confidence=confidence, inconclusive_policy=inconclusive)


def _pct(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {100 * k / n:.1f}% (95% Wilson {100 * lo:.1f}%..{100 * hi:.1f}%)"


def _side(label: str, logprobs: Mapping[str, float]) -> str:
    return f"{label} [" + ", ".join(f"{k} {v:.3f}" for k, v in ranked(logprobs)) + "]"


def render_verdict(verdict: DriftVerdict) -> str:
    """The text of :meth:`DriftVerdict.render` (aligned plain text, no colour)."""
    r, t = verdict.report, verdict.thresholds
    if verdict.failures:
        head = f"FAIL ({len(verdict.failures)} failures)"
    elif verdict.inconclusive:
        n = len(verdict.inconclusive)
        head = (f"INCONCLUSIVE ({n} limit{'s' if n > 1 else ''} beyond what the set can see; "
                + ("passes" if verdict.passed else "fails: --drift-inconclusive fail") + ")")
    else:
        head = "PASS"
    lines = [f"drift {r.candidate_format} vs {r.reference_format} (reference): {head}",
             f"videos       {r.n} paired; unpaired: {', '.join(r.unpaired) or 'none'}; "
             f"errored: {', '.join(r.errored) or 'none'}"]
    if r.n:
        mdd = r.min_detectable_drop
        if not verdict.sensitivity:
            lines.append(f"sensitivity  {r.n} videos detect an agreement drop of >= {100 * mdd:.1f} points from "
                         "100% (exact one-sided binomial, power 0.8); smaller drops can pass unseen"
                         if math.isfinite(mdd) else f"sensitivity  {r.n} videos cannot detect any drop")
        lines += [f"sensitivity  {s.describe(confidence=verdict.confidence)}" for s in verdict.sensitivity]
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
        if a.test is not None and a.test.clusters < a.test.items:
            lines.append(f"paired       {a.test.method} over {a.test.clusters} clips: p = {a.test.p_value:.3g}")
    if r.vocab is not None and r.vocab.answer is not None:
        lines += vocab_lines(r.vocab)
    vis = r.vision_summary()
    if vis is not None:
        lines.append(f"vision       {vis['clips']} clips, embeddings per frame group vs the reference: cosine min "
                     f"{vis['cos_min']:.6f} ({vis['cos_min_clip']}), relative error mean {vis['rel_err_mean']:.4g}, "
                     f"max {vis['rel_err_max']:.4g} ({vis['rel_err_max_clip']})")
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


def vocab_lines(vocab) -> list[str]:
    """The llama.cpp-style statistic set of a VocabDrift, as plain-text lines."""
    a = vocab.answer
    pk = "  ".join(f"{k} {v:.4g}" for k, v in a.kl_percentiles.items())
    se = f" +- {a.kl_se:.3g}" if a.kl_se is not None else ""
    dp = "  ".join(f"{k} {v:+.4f}" for k, v in a.delta_p_percentiles.items() if k in ("p1", "p10", "p50", "p90", "p99"))
    lines = [f"vocab KL     answer position, {a.n} clips: mean {a.kl_mean:.4g}{se} nats  {pk}  max {a.kl_max:.4g} "
             f"(top-k + rest: a lower bound; reference mass outside the common tokens <= {a.max_ref_rest:.2g})",
             f"vocab dp     p_ref(top) - p_cand(top): mean {a.delta_p_mean:+.4f}  RMS {a.delta_p_rms:.4f}  {dp}",
             f"vocab top    same top token {a.same_top}/{a.n} = {100 * a.same_top_rate:.1f}% +- "
             f"{100 * a.same_top_se:.1f}%"]
    pos = vocab.positions
    if pos is not None and pos.n > a.n:
        lines.append(f"vocab steps  {pos.n} clip-positions (first generated positions, same prefix): KL mean "
                     f"{pos.kl_mean:.4g}, p99 {pos.kl_percentiles['p99']:.4g}, max {pos.kl_max:.4g}; same top "
                     f"{100 * pos.same_top_rate:.1f}%")
    if vocab.dominant:
        lines.append("vocab worst  " + ", ".join(f"{c} {100 * s:.0f}%" for c, s in vocab.dominant)
                     + " of the summed answer-position KL")
    return lines
