"""Throughput and goodput regressions gated like latency (``--history``): each load figure is kept in the
same SQLite history as the cells' latencies, per GPU class, and judged by the same rule
(``core.metrics.history.judge``: warn 5% and fail 10% beyond the earlier runs' own noise, at least 5
earlier runs). A rate is kept as its inverse (seconds per video, per stream...), so "slower" means the
same thing as for a latency: a drop in videos/s is a rise in seconds per video.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FIGURES: dict[str, tuple[str, ...]] = {
    "offline": ("videos_per_s", "output_tokens_per_s"),
    "server": ("slo.goodput_per_s",),
    "sweep": ("largest_rate_per_s",),
    "camera": ("largest_streams",),
}
"""Per scenario, the figures gated (higher is better; dotted: nested in the result)."""


def figures(rec: Mapping[str, Any]) -> dict[str, float]:
    """The gated figures of a load record that have a positive value."""
    out: dict[str, float] = {}
    result = rec.get("result") or {}
    for name in FIGURES.get(rec.get("scenario", ""), ()):
        value: Any = result
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and value > 0:
            out[name] = float(value)
    return out


def key(rec: Mapping[str, Any], figure: str) -> str:
    return f"load/{rec['engine']}/{rec['task']}/{rec['scenario']}/{figure}"


def judge_record(db, rec: Mapping[str, Any], *, run_id: str) -> list[dict[str, Any]]:
    """Each gated figure of ``rec`` against its history: [{figure, value, status, message}]."""
    from core.metrics.history import judge

    out = []
    for figure, value in figures(rec).items():
        earlier = db.earlier(key(rec, figure), str(rec.get("gpu_class") or "cpu"), before_run=run_id)
        verdict = judge(1.0 / value, earlier, clocks=rec.get("gpu_clocks"))
        message = verdict.message
        if verdict.baseline_s:
            message = (f"{figure} {value:.4g} against {1.0 / verdict.baseline_s:.4g} (median of {verdict.runs} earlier "
                       f"runs); as its inverse: {verdict.message}")
        out.append({"figure": figure, "value": value, "status": verdict.status, "message": message})
    return out


def add_records(db, records: Sequence[Mapping[str, Any]], *, run_id: str) -> int:
    """Add a run's load figures to the history; returns how many were added."""
    by_class: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        if rec.get("status") != "ok":
            continue
        cls = str(rec.get("gpu_class") or "cpu")
        for figure, value in figures(rec).items():
            by_class.setdefault(cls, {})[key(rec, figure)] = [1.0 / value]
    for cls, cells in by_class.items():
        db.add(run_id, cells, gpu_class=cls)
    return sum(len(c) for c in by_class.values())
