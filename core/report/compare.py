"""Two runs side by side: per-cell latency change that knows the run-to-run noise, and answer flips.

A cell's latency is the median of its timed rounds. A change is called significant only when a
bootstrap 95% interval of the ratio of medians (fixed seed, so the verdict is reproducible) leaves
1.0 out; with three rounds a side that means the two sets of rounds do not overlap. A regression is
a significant slowdown larger than the threshold (pyperf's "Not significant" habit).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.base.results import CellKey, cell_key, latency_s, load, rounds_of
from core.report.tables import markdown_table

MIN_ROUNDS = 3
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 20240601


def median_ratio_ci(a: list[float], b: list[float], *, level: float = 0.95,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of median(b) / median(a), each side resampled independently
    (``scipy.stats.bootstrap``, fixed ``rng`` so a verdict is reproducible). The percentile method,
    not BCa: BCa gives NaN for constant rounds, which identical timings are."""
    import numpy as np

    from core.metrics.stats import _scipy_stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a bootstrap interval needs >= 2 rounds a side, got {len(a)} and {len(b)}")

    def ratio(x, y, axis=-1):
        return np.median(y, axis=axis) / np.median(x, axis=axis)

    res = _scipy_stats().bootstrap((np.asarray(a, dtype=float), np.asarray(b, dtype=float)), ratio,
                                   vectorized=True, paired=False, n_resamples=resamples, confidence_level=level,
                                   method="percentile", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return float(ci.low), float(ci.high)


@dataclass(frozen=True, kw_only=True)
class CellChange:
    """One cell present in both runs (or only one): latency change and answer change."""

    key: CellKey
    a_s: float | None = None
    b_s: float | None = None
    delta_pct: float | None = None
    ci_pct: tuple[float, float] | None = None
    """Bootstrap 95% interval of the change, in percent; None when either side has < 3 rounds."""
    verdict: str = ""
    """regression, improvement, slower, faster, not significant, too few rounds, only in A/B, error."""
    a_label: str | None = None
    b_label: str | None = None
    truth: str | None = None

    @property
    def flipped(self) -> bool:
        return self.a_label is not None and self.b_label is not None and self.a_label != self.b_label

    @property
    def name(self) -> str:
        model, backend, fmt, device, gpu_class, task, video = self.key
        where = f"{device} {gpu_class}" if gpu_class and gpu_class != device else device
        return f"{model}/{backend}/{fmt}/{where} {task}:{video}"


def _change(key: CellKey, ra: Mapping[str, Any], rb: Mapping[str, Any], threshold_pct: float) -> CellChange:
    base: dict[str, Any] = {"key": key, "a_label": ra.get("predicted"), "b_label": rb.get("predicted"),
            "truth": rb.get("truth", ra.get("truth"))}
    failed = [side for side, r in (("A", ra), ("B", rb)) if r.get("status", "ok") != "ok"]
    if failed:
        return CellChange(**base, verdict=f"error in {' and '.join(failed)}")
    a_s, b_s = latency_s(ra), latency_s(rb)
    if not a_s or not b_s:
        return CellChange(**base, a_s=a_s, b_s=b_s, verdict="no timing")
    delta = (b_s / a_s - 1.0) * 100
    xa, xb = rounds_of(ra), rounds_of(rb)
    if len(xa) < MIN_ROUNDS or len(xb) < MIN_ROUNDS:
        return CellChange(**base, a_s=a_s, b_s=b_s, delta_pct=delta,
                          verdict=f"too few rounds ({min(len(xa), len(xb))} < {MIN_ROUNDS})")
    lo, hi = median_ratio_ci(xa, xb)
    ci = ((lo - 1.0) * 100, (hi - 1.0) * 100)
    if lo <= 1.0 <= hi:
        verdict = "not significant"
    elif lo > 1.0:
        verdict = "regression" if delta > threshold_pct else "slower"
    else:
        verdict = "improvement" if delta < -threshold_pct else "faster"
    return CellChange(**base, a_s=a_s, b_s=b_s, delta_pct=delta, ci_pct=ci, verdict=verdict)


@dataclass(kw_only=True)
class Comparison:
    """The cell-by-cell comparison of run A (baseline) and run B (candidate)."""

    changes: list[CellChange] = field(default_factory=list)
    threshold_pct: float = 5.0
    fail_on_flip: bool = False
    notes: list[str] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.changes)

    @property
    def regressions(self) -> list[CellChange]:
        return [c for c in self.changes if c.verdict == "regression"]

    @property
    def flips(self) -> list[CellChange]:
        return [c for c in self.changes if c.flipped]

    @property
    def exit_code(self) -> int:
        """1 when any cell regressed significantly (or flipped its answer, if asked); else 0."""
        return int(bool(self.regressions) or (self.fail_on_flip and bool(self.flips)))

    def summary(self) -> str:
        both = [c for c in self.changes if not c.verdict.startswith("only in")]
        parts = [f"{len(both)} cells in both runs",
                 f"{self.count('regression')} regressions (significant and > {self.threshold_pct:g}% slower)",
                 f"{self.count('improvement')} improvements",
                 (f"{self.count('slower') + self.count('faster')} significant but within "
                  f"±{self.threshold_pct:g}%"), f"{self.count('not significant')} not significant",
                 f"{len(self.flips)} answer flips"]
        for side in ("A", "B"):
            if n := self.count(f"only in {side}"):
                parts.append(f"{n} only in {side}")
        return "; ".join(parts) + "."

    def engine_table(self) -> tuple[list[str], list[list[str]]]:
        """One row per (model, backend, format, device): geometric-mean change over its cells, and counts."""
        groups: dict[tuple[str, ...], list[CellChange]] = {}
        for c in self.changes:
            groups.setdefault(c.key[:4], []).append(c)
        rows = []
        for eng, changes in groups.items():
            logs = [math.log1p(c.delta_pct / 100) for c in changes if c.delta_pct is not None]
            mean = f"{math.expm1(statistics.fmean(logs)) * 100:+.1f}%" if logs else "—"
            rows.append(["/".join(eng), str(len(changes)), mean,
                         *(str(sum(c.verdict == v for c in changes)) for v in ("regression", "improvement")),
                         str(sum(c.flipped for c in changes))])
        return ["engine", "cells", "mean change", "regressions", "improvements", "answer flips"], rows

    def table(self) -> tuple[list[str], list[list[str]], list[str]]:
        """Headers, rows and a kind per row (regression, improvement, flip or '') for renderers."""
        headers = ["cell", "A s", "B s", "change", "95% CI", "verdict", "answer A -> B"]
        rows, kinds = [], []
        for c in self.changes:
            ci = f"[{c.ci_pct[0]:+.1f}%, {c.ci_pct[1]:+.1f}%]" if c.ci_pct else "—"
            answer = (f"{c.a_label} -> {c.b_label}" if c.flipped else (c.b_label or c.a_label or "—"))
            if c.flipped and c.truth is not None:
                answer += " (now right)" if c.b_label == c.truth else " (now wrong)" if c.a_label == c.truth else ""
            rows.append([c.name, _secs(c.a_s), _secs(c.b_s),
                         f"{c.delta_pct:+.1f}%" if c.delta_pct is not None else "—", ci, c.verdict, answer])
            kinds.append("regression" if c.verdict == "regression" else "flip" if c.flipped
                         else "improvement" if c.verdict == "improvement" else "")
        return headers, rows, kinds

    def render(self) -> str:
        """The comparison as a Markdown table, with a summary line and any notes."""
        headers, rows, kinds = self.table()
        for row, kind in zip(rows, kinds):
            if kind == "regression":
                row[5] = f"**{row[5]}**"
            if "->" in row[6]:
                row[6] = f"**{row[6]}**"
        lines = [self.summary(), ""] + [f"> {n}" for n in self.notes]
        if self.notes:
            lines.append("")
        lines += [markdown_table(*self.engine_table()), "", markdown_table(headers, rows)]
        return "\n".join(lines)


def _secs(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def compare(a_records: Sequence[Mapping[str, Any]], b_records: Sequence[Mapping[str, Any]], *,
            threshold_pct: float = 5.0, fail_on_flip: bool = False) -> Comparison:
    """Match cells of A (baseline) and B by (model, backend, format, device, GPU class, task, video) and compare."""
    a = {cell_key(r): r for r in a_records}
    b = {cell_key(r): r for r in b_records}
    changes = [_change(k, a[k], b[k], threshold_pct) if k in a else
               CellChange(key=k, b_s=latency_s(b[k]), b_label=b[k].get("predicted"), verdict="only in B")
               for k in b]
    changes += [CellChange(key=k, a_s=latency_s(a[k]), a_label=a[k].get("predicted"), verdict="only in A")
                for k in a if k not in b]
    notes = []
    ga = {g for r in a_records if (g := r.get("gpu_class")) is not None}
    gb = {g for r in b_records if (g := r.get("gpu_class")) is not None}
    if ga and gb and ga != gb:
        notes.append(f"The runs are from different machines (A: {', '.join(sorted(ga))}; "
                     f"B: {', '.join(sorted(gb))}); latency changes mix hardware and code.")
    from core.metrics.history import clock_changes

    ca = next((r["gpu_clocks"] for r in a_records if r.get("gpu_clocks")), None)
    cb = next((r["gpu_clocks"] for r in b_records if r.get("gpu_clocks")), None)
    if changed := clock_changes(ca, cb):
        notes.append("The GPU's clock settings differ between the runs (NVML: " + ", ".join(changed)
                     + "); a latency change may be the clocks, not the code.")
    return Comparison(changes=changes, threshold_pct=threshold_pct, fail_on_flip=fail_on_flip, notes=notes)


def main_compare(a: Path, b: Path, *, threshold_pct: float = 5.0, fail_on_flip: bool = False) -> int:
    """Load two result files (results JSON lines or pytest-benchmark JSON), print the table, return 0/1.
    Only timed records are compared: a latency is never taken from an untimed scoring run."""
    result = compare(load(a).speed(), load(b).speed(), threshold_pct=threshold_pct, fail_on_flip=fail_on_flip)
    print(f"A (baseline): {a}\nB (candidate): {b}\n")
    print(result.render())
    return result.exit_code
