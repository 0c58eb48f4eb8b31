"""Small-sample statistics for drift reports and gates, from the libraries that own them.

Intervals, exact tests, tails, quantiles and power come from scipy.stats and statsmodels (imported
inside the functions, so ``vqbench --help`` and test collection stay fast). What neither library
has is written here and says so: the clustered McNemar test (Durkalski et al. 2003) and the exact
power of McNemar's test. The sets a video benchmark runs are tens of clips, where exact binomial
arithmetic is cheap and normal approximations are least trustworthy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.base.errors import MissingDependency

POWER = 0.8
"""Probability with which a change of the reported "detectable" size shows (the usual 80%)."""


def _scipy_stats():
    try:
        import scipy.stats
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependency("scipy", "drift statistics", "pip install 'vqbench[stats]'") from exc
    return scipy.stats


def _statsmodels(module: str):
    import importlib

    try:
        return importlib.import_module(f"statsmodels.stats.{module}")
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependency("statsmodels", "drift statistics", "pip install 'vqbench[stats]'") from exc


def normal_cdf(x: float) -> float:
    """Standard normal cumulative distribution function (``scipy.stats.norm.cdf``)."""
    return float(_scipy_stats().norm.cdf(x))


def normal_quantile(p: float) -> float:
    """Inverse of :func:`normal_cdf` for ``0 < p < 1`` (``scipy.stats.norm.ppf``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal_quantile needs 0 < p < 1, got {p!r}")
    return float(_scipy_stats().norm.ppf(p))


def _check_count(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes / n`` (statsmodels ``proportion_confint``, "wilson");
    ``(0.0, 1.0)`` when ``n == 0`` (statsmodels would return NaNs).

    Unlike the Wald interval it stays inside [0, 1] and does not collapse to a point at 0/n or n/n,
    which matters for the 100%-agreement results a good quantization produces.
    """
    _check_count(successes, n)
    _check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    low, high = _statsmodels("proportion").proportion_confint(successes, n, alpha=1.0 - confidence,
                                                              method="wilson")
    # statsmodels gives exactly 0 at k=0 and 1 at k=n; clip the ulps elsewhere
    return (0.0 if successes == 0 else max(0.0, float(low))), (1.0 if successes == n else min(1.0, float(high)))


def upper_bound(successes: int, n: int, *, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound of a rate; 1.0 when ``n == 0``."""
    _check_count(successes, n)
    _check_confidence(confidence)
    if n == 0 or successes == n:
        return 1.0
    return float(_scipy_stats().beta.ppf(confidence, successes + 1, n - successes))


def lower_bound(successes: int, n: int, *, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) lower confidence bound of a rate; 0.0 when ``successes == 0``."""
    _check_count(successes, n)
    _check_confidence(confidence)
    if successes == 0:
        return 0.0
    return float(_scipy_stats().beta.ppf(1.0 - confidence, successes, n - successes + 1))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p) (``scipy.stats.binom.cdf``)."""
    return float(min(1.0, _scipy_stats().binom.cdf(k, n, p)))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value (statsmodels ``mcnemar(exact=True)``: a binomial(b + c, 1/2)
    test on the discordant pairs). ``b`` and ``c`` count the pairs where only one side is right;
    1.0 when there are none (no evidence either way)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    result = _statsmodels("contingency_tables").mcnemar([[0, b], [c, 0]], exact=True)
    return float(min(1.0, result.pvalue))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation (``numpy.percentile``)."""
    import numpy as np

    if not values:
        raise ValueError("percentile of an empty sequence is undefined; check there is data first")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within 0..100, got {q!r}")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def mean_and_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and its standard error (sample SD / sqrt(n), ``scipy.stats.sem``); SE None for n < 2."""
    import numpy as np

    if not values:
        raise ValueError("mean of an empty sequence is undefined; check there is data first")
    xs = np.asarray(values, dtype=float)
    se = float(_scipy_stats().sem(xs)) if len(xs) > 1 else None
    return float(xs.mean()), se


def _check_power(alpha: float, power: float) -> None:
    for name, v in (("alpha", alpha), ("power", power)):
        if not 0.0 < v < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {v!r}")


def min_detectable_drop(n: int, *, alpha: float = 0.05, power: float = POWER,
                        baseline: float = 1.0) -> float:
    """Smallest drop from ``baseline`` in a rate (agreement, accuracy) that ``n`` videos detect.

    Method: an exact one-sided binomial test of H0 "rate >= baseline" (its rejection region from
    statsmodels ``binom_test_reject_interval``) rejects when the count is at most ``k``. The answer
    is the smallest ``d`` such that a true rate of ``baseline - d`` is rejected with probability >=
    ``power`` (``scipy.optimize.brentq`` on ``scipy.stats.binom.cdf``; the power only grows as the
    rate falls). Videos are assumed independent. With ``baseline=1.0`` a single disagreement
    rejects, so this is the drop at which at least one disagreement appears with probability
    ``power``: ``1 - (1 - power)**(1/n)``. ``inf`` when no outcome of ``n`` videos is significant.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_power(alpha, power)
    if not 0.0 < baseline <= 1.0:
        raise ValueError(f"baseline must be in (0, 1], got {baseline!r}")
    if n == 0:
        return math.inf
    k, _ = _statsmodels("proportion").binom_test_reject_interval(baseline, n, alpha=alpha, alternative="smaller")
    if k < 0:
        return math.inf
    from scipy.optimize import brentq

    binom = _scipy_stats().binom
    rate = brentq(lambda p: binom.cdf(k, n, p) - power, 0.0, baseline, xtol=1e-14, rtol=1e-15)
    return baseline - rate


def clips_needed(limit: float, detectable, *, start: int = 1, cap: int = 100_000) -> int | None:
    """Smallest ``n >= start`` with ``detectable(n) <= limit`` (``detectable`` falls as n grows);
    None when even ``cap`` clips do not reach ``limit``."""
    if limit <= 0:
        return None
    lo, hi = start, start
    while detectable(hi) > limit:
        if hi >= cap:
            return None
        lo, hi = hi + 1, min(cap, hi * 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if detectable(mid) <= limit:
            hi = mid
        else:
            lo = mid + 1
    return lo


def mcnemar_power(n: int, drop: float, *, discordance: float | None = None, alpha: float = 0.05) -> float:
    """Probability that the two-sided exact McNemar test at ``alpha`` finds the candidate worse,
    for ``n`` paired items whose true accuracy drop is ``drop`` and whose share of discordant pairs
    is ``discordance`` (at least ``drop``; default ``drop``: every changed answer went from right
    to wrong, the easiest case to detect).

    Neither scipy nor statsmodels has McNemar power (only normal approximations such as Connor
    1987), so it is summed exactly here: the number of discordant pairs is Binomial(n, psi); given
    m of them, the worse ones are Binomial(m, (psi + drop) / (2 psi)), and the test rejects when
    they reach statsmodels' exact rejection bound for m pairs.
    """
    if n <= 0 or drop <= 0:
        return 0.0
    psi = min(1.0, max(drop, discordance or 0.0))
    share = min(1.0, (psi + drop) / (2 * psi))
    import numpy as np

    binom = _scipy_stats().binom
    m = np.arange(1, n + 1)
    # statsmodels' binom_test_reject_interval(0.5, m, alpha, "two-sided") upper bound, for every m at
    # once (that function takes one m): reject when the worse pairs reach isf(alpha / 2) + 1.
    upper = binom.isf(alpha / 2, m, 0.5) + 1
    total = float(np.sum(binom.pmf(m, n, psi) * np.where(upper <= m, binom.sf(upper - 1, m, share), 0.0)))
    return min(1.0, total)


def mcnemar_min_detectable_drop(n: int, *, discordance: float | None = None, alpha: float = 0.05,
                                power: float = POWER) -> float:
    """Smallest accuracy drop that ``n`` paired items show as significant (exact McNemar at
    ``alpha``) with probability ``power``; ``inf`` when no drop is detectable."""
    _check_power(alpha, power)
    if n <= 0 or mcnemar_power(n, 1.0, discordance=discordance, alpha=alpha) < power:
        return math.inf
    from scipy.optimize import brentq

    return float(brentq(lambda d: mcnemar_power(n, d, discordance=discordance, alpha=alpha) - power,
                        1e-9, 1.0, xtol=1e-6))


def mean_min_detectable(n: int, sd: float, *, alpha: float = 0.05, power: float = POWER) -> float:
    """Smallest true mean (of a per-clip drift such as KL) that a one-sided one-sample t test at
    ``alpha`` tells from zero with probability ``power``, given the per-clip SD ``sd``
    (statsmodels ``TTestPower``); ``inf`` for fewer than 2 clips."""
    _check_power(alpha, power)
    if n < 2:
        return math.inf
    if sd == 0:
        return 0.0
    effect = _statsmodels("power").TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="larger")
    return float(effect) * sd


def mean_clips_needed(limit: float, sd: float, *, alpha: float = 0.05, power: float = POWER) -> int | None:
    """Clips a one-sample t test needs to see a mean of ``limit`` (per-clip SD ``sd``) with ``power``
    (searched over ``mean_min_detectable``: statsmodels' own nobs solver fails to converge below ~3)."""
    if limit <= 0:
        return None
    return clips_needed(limit, lambda n: mean_min_detectable(n, sd, alpha=alpha, power=power), start=2)


@dataclass(frozen=True, kw_only=True)
class PairedTest:
    """McNemar's test on paired outcomes, clustered when several items share one cluster (clip)."""

    b: int
    """Discordant pairs that went one way (for accuracy: reference right, candidate wrong)."""
    c: int
    """Discordant pairs that went the other way."""
    items: int
    clusters: int
    p_value: float
    method: str
    statistic: float | None = None


def clustered_mcnemar(discordant: Mapping[str, tuple[int, int]], *, items: int, clusters: int) -> PairedTest:
    """McNemar's test where items (questions) are grouped in clusters (clips) and may be correlated.

    ``discordant`` maps a cluster to its (b_k, c_k). With at most one item per cluster this is the
    exact McNemar test (statsmodels). With several, it is the adjustment of Durkalski, Palesch,
    Lipsitz and Rust, "Analysis of clustered matched-pair data", Statistics in Medicine 22(15):
    2417-2428 (2003), which neither scipy nor statsmodels implements:
    ``X2 = (sum_k (b_k - c_k))**2 / sum_k (b_k - c_k)**2`` ~ chi-square(1), ``p = chi2.sf(X2, 1)``.
    With one item per cluster it reduces to the uncorrected asymptotic McNemar statistic. When every
    cluster is balanced (b_k == c_k) the numerator is 0 too: p = 1.
    """
    b = sum(x for x, _ in discordant.values())
    c = sum(y for _, y in discordant.values())
    if clusters >= items:
        return PairedTest(b=b, c=c, items=items, clusters=clusters, p_value=mcnemar_exact(b, c),
                          method="exact McNemar")
    diffs = [x - y for x, y in discordant.values()]
    denominator = sum(d * d for d in diffs)
    method = "clustered McNemar (Durkalski et al. 2003)"
    if denominator == 0:
        return PairedTest(b=b, c=c, items=items, clusters=clusters, p_value=1.0, method=method, statistic=0.0)
    statistic = sum(diffs) ** 2 / denominator
    p = float(_scipy_stats().chi2.sf(statistic, 1))
    return PairedTest(b=b, c=c, items=items, clusters=clusters, p_value=p, method=method, statistic=statistic)
