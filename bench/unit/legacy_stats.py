"""The hand-written statistics vqbench used before issue 17 (stdlib math only), kept verbatim as a
test oracle: the library-backed ``core.metrics.stats`` must give the same numbers and the same
verdicts (bench/unit/test_stats_libraries.py). Not used by the suite itself."""
from __future__ import annotations

import math
from collections.abc import Sequence


def normal_cdf(x: float) -> float:
    """Standard normal cumulative distribution function."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_quantile(p: float) -> float:
    """Inverse of :func:`normal_cdf` for ``0 < p < 1``, by bisection on ``math.erfc`` (~1e-15)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal_quantile needs 0 < p < 1, got {p!r}")
    lo, hi = -40.0, 40.0
    for _ in range(200):  # interval halves each step; 200 steps is far below float spacing
        mid = 0.5 * (lo + hi)
        if normal_cdf(mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


def _check_count(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial rate ``successes / n``; ``(0.0, 1.0)`` when ``n == 0``.

    Unlike the Wald interval it stays inside [0, 1] and does not collapse to a point at 0/n or n/n,
    which matters for the 100%-agreement results a good quantization produces.
    """
    _check_count(successes, n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n == 0:
        return 0.0, 1.0
    z = normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    z2n = z * z / n
    center = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly term by term."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    # log-space terms: p**i underflows for the n of a large set long before the sum does
    lp, lq = math.log(p), math.log1p(-p)
    total = sum(math.exp(_log_comb(n, i) + i * lp + (n - i) * lq) for i in range(k + 1))
    return min(1.0, total)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial(b + c, 1/2) test on the discordant pairs.

    ``b`` and ``c`` count the pairs where only one side is right; 1.0 when there are none.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integer arithmetic; Python divides big ints exactly


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation, as ``numpy.percentile`` does."""
    if not values:
        raise ValueError("percentile of an empty sequence is undefined; check there is data first")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within 0..100, got {q!r}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def min_detectable_drop(n: int, *, alpha: float = 0.05, power: float = 0.8,
                        baseline: float = 1.0) -> float:
    """Smallest drop from ``baseline`` in a rate (agreement, accuracy) that ``n`` videos detect.

    Method: an exact one-sided binomial test of H0 "rate >= baseline" rejects when the count is at
    most ``k``, the largest count with P(X <= k | baseline) <= alpha. The answer is the smallest
    ``d`` such that a true rate of ``baseline - d`` is rejected with probability >= ``power``
    (found by bisection; the test's power only grows as the rate falls). Videos are assumed
    independent. With ``baseline=1.0`` a single disagreement rejects, so this is the drop at which
    at least one disagreement appears with probability ``power``: ``1 - (1 - power)**(1/n)``.
    ``inf`` when no outcome of ``n`` videos is significant (or ``n == 0``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for name, v in (("alpha", alpha), ("power", power), ("baseline", baseline)):
        if not 0.0 < v <= 1.0 or (name != "baseline" and v == 1.0):
            raise ValueError(f"{name} must be in (0, 1{']' if name == 'baseline' else ')'}, got {v!r}")
    k = -1
    while k + 1 < n and binomial_cdf(k + 1, n, baseline) <= alpha:
        k += 1
    if k < 0:
        return math.inf
    lo, hi = 0.0, baseline  # rate lo has enough power, rate hi does not
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if binomial_cdf(k, n, mid) >= power:
            lo = mid
        else:
            hi = mid
    return baseline - lo


def median_ratio_ci(a: list[float], b: list[float], *, level: float = 0.95, resamples: int = 4000,
                    seed: int = 20240601) -> tuple[float, float]:
    """Bootstrap interval of median(b) / median(a), resampling each side independently (the
    hand-written numpy version core/report/compare.py used before issue 17)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ma = np.median(xa[rng.integers(0, len(xa), size=(resamples, len(xa)))], axis=1)
    mb = np.median(xb[rng.integers(0, len(xb), size=(resamples, len(xb)))], axis=1)
    ratios = mb / ma
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return float(lo), float(hi)
