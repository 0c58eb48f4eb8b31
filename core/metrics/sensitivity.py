"""What a drift verdict could have seen: for each gate with a limit above zero, the smallest true
change the clip set detects (one-sided test at alpha = 1 - confidence, power 0.8), and whether that
is within the limit. A "no drift" from a set too small to see its limit is *inconclusive*, with the
number of clips that would see it.

Per gate:

* flip rate: exact binomial test of "no label ever changes" (``min_detectable_drop``); one flip is
  already significant, so the detectable rate is ``1 - 0.2**(1/n)`` whatever the confidence;
* accuracy drop: the exact McNemar test (clustered by clip when clips hold several questions; the
  clip count is then the sample size), with the observed share of discordant pairs
  (``mcnemar_min_detectable_drop``);
* mean KL and mean |margin change|: a one-sample t test against zero with the observed per-clip SD
  (statsmodels ``TTestPower``);
* max KL is a maximum over every clip, not an estimate: it has no sample-size question.

Limits of 0 (the reference against itself) test determinism, not a rate: no power applies.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from core.metrics import stats


@dataclass(frozen=True, kw_only=True)
class Sensitivity:
    """One gate's power: what it could detect with the clips it had."""

    metric: str
    limit: float
    observed: float
    n: int
    """Clips (or clusters) the gate's test counts."""
    detectable: float
    """Smallest true value detected with probability ``power`` (inf: none)."""
    clips_needed: int | None
    """Clips at which ``detectable <= limit`` (None: more than 100,000, or not computable)."""
    method: str

    @property
    def conclusive(self) -> bool:
        return self.detectable <= self.limit

    def describe(self, *, confidence: float) -> str:
        seen = ("cannot detect any change" if math.isinf(self.detectable)
                else f"detect {self.metric} >= {_fmt(self.metric, self.detectable)}")
        text = (f"{self.metric}: {self.n} {'clusters' if 'cluster' in self.method else 'clips'} {seen} "
                f"(power {stats.POWER:g}, alpha {1 - confidence:.2g}; {self.method})")
        if self.conclusive:
            return text + f"; within the limit {_fmt(self.metric, self.limit)}"
        need = f"{self.clips_needed} clips would" if self.clips_needed else "no practical number of clips would"
        return text + f": above the limit {_fmt(self.metric, self.limit)}, so passing it says little; {need} see it"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["conclusive"] = self.conclusive
        d["detectable"] = self.detectable if math.isfinite(self.detectable) else None
        return d


def _fmt(metric: str, x: float) -> str:
    return f"{100 * x:.1f}%" if metric in ("flip_rate", "accuracy_drop") else f"{x:.4g} nats"


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def sensitivities(report, thresholds, *, confidence: float = 0.95) -> list[Sensitivity]:
    """The power of each statistical gate of ``thresholds`` on ``report`` (a DriftReport)."""
    alpha = 1.0 - confidence
    out: list[Sensitivity] = []
    n = report.n
    if not n:
        return out
    if thresholds.max_flip_rate > 0:
        out.append(Sensitivity(
            metric="flip_rate", limit=thresholds.max_flip_rate, observed=report.flip_rate, n=n,
            detectable=stats.min_detectable_drop(n, alpha=alpha),
            clips_needed=stats.clips_needed(thresholds.max_flip_rate,
                                            lambda m: stats.min_detectable_drop(m, alpha=alpha)),
            method="exact one-sided binomial"))
    acc = report.accuracy
    if acc is not None and thresholds.max_accuracy_drop > 0:
        test = acc.test
        units = test.clusters if test is not None else acc.n
        discordance = (acc.b + acc.c) / acc.n if acc.n else None

        def detect(m: int) -> float:
            return stats.mcnemar_min_detectable_drop(m, discordance=discordance, alpha=alpha)

        out.append(Sensitivity(
            metric="accuracy_drop", limit=thresholds.max_accuracy_drop, observed=acc.drop, n=units,
            detectable=detect(units), clips_needed=stats.clips_needed(thresholds.max_accuracy_drop, detect, cap=5000),
            method=(test.method if test is not None else "exact McNemar")
            + f" two-sided, {100 * (discordance or 0):.0f}% discordant pairs observed"))
    for metric, limit, values in (
            ("mean_kl", thresholds.max_mean_kl, [v.kl for v in report.videos]),
            ("mean_abs_margin_change", thresholds.max_mean_abs_margin_change,
             [abs(v.margin_change) for v in report.videos])):
        if limit > 0:
            sd = _sd(values)
            out.append(Sensitivity(
                metric=metric, limit=limit, observed=sum(values) / len(values), n=n,
                detectable=stats.mean_min_detectable(n, sd, alpha=alpha),
                clips_needed=stats.mean_clips_needed(limit, sd, alpha=alpha),
                method=f"one-sided one-sample t test, per-clip SD {sd:.3g}"))
    return out
