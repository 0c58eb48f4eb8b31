"""Latency history per GPU class: every run's timed cells kept in one SQLite file, and a gate that
compares a cell with the rolling history of earlier runs on the same GPU class, as TensorRT-LLM's
perf CI does: a warning 5% and a failure 10% beyond the measured run-to-run noise. GPU clocks and
power limits (NVML) are kept with every run, so a clock change is reported as one, not as a
regression.

Noise is measured, not assumed: the robust spread (1.4826 x median absolute deviation) of the
earlier runs' medians of the cell, doubled (about a 95% band). Only the history sets the band: the
run being judged never widens its own band, however noisy its rounds. The baseline and the noise
come from the earlier runs in the window that ran at the candidate's clock settings (every run of
the window is compared; the others are left out and named). With fewer than ``MIN_RUNS`` such runs
there is no verdict: "insufficient history", or "clock change" when runs at other settings were
left out.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

WINDOW = 10
"""Earlier runs a cell is compared with (the most recent ones)."""
MIN_RUNS = 5
"""Earlier runs (at the candidate's clock settings) a verdict needs: the MAD of fewer medians is too unstable."""
WARN_PCT = 5.0
FAIL_PCT = 10.0
CLOCK_KEYS = ("sm_max_mhz", "mem_max_mhz", "sm_app_mhz", "mem_app_mhz", "power_limit_w")
"""Clock settings whose change explains a latency change (current clocks move with load: not compared)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT, time REAL, gpu_class TEXT, gpu_name TEXT, clocks TEXT,
                                 PRIMARY KEY (run_id, gpu_class));
CREATE TABLE IF NOT EXISTS cells (run_id TEXT, cell TEXT, gpu_class TEXT, median_s REAL, rounds TEXT,
                                  PRIMARY KEY (run_id, cell, gpu_class));
CREATE INDEX IF NOT EXISTS cells_by_key ON cells (cell, gpu_class);
"""


def gpu_clocks(index: int = 0) -> dict[str, Any]:
    """Clocks, power limit and throttle reasons of GPU ``index`` from NVML ({} without NVML or GPU).
    Every field is read on its own: a GPU that refuses one query still reports the others."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # noqa: BLE001 - no driver, no GPU, or no pynvml: nothing to record
        return {}
    sm, mem = pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM
    queries = {
        "sm_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, sm),
        "mem_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, mem),
        "sm_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, sm),
        "mem_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, mem),
        "sm_app_mhz": lambda: pynvml.nvmlDeviceGetApplicationsClock(h, sm),
        "mem_app_mhz": lambda: pynvml.nvmlDeviceGetApplicationsClock(h, mem),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
        "power_w": lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
        "pstate": lambda: pynvml.nvmlDeviceGetPerformanceState(h),
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "clock_event_reasons": lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
    }
    out: dict[str, Any] = {}
    for key, query in queries.items():
        try:
            out[key] = query()
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
            continue
    return out


def clock_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """Clock settings that differ between two runs, in words ([] when unknown or equal)."""
    if not old or not new:
        return []
    return [f"{k} {old[k]} -> {new[k]}" for k in CLOCK_KEYS if k in old and k in new and old[k] != new[k]]


@dataclass(frozen=True, kw_only=True)
class HistoryVerdict:
    """A cell's latency against its history: ok, warn, fail, faster, clock change or insufficient history."""

    status: str
    median_s: float
    baseline_s: float | None = None
    delta_pct: float | None = None
    noise_pct: float | None = None
    runs: int = 0
    """Earlier runs the baseline and noise come from (those at the candidate's clock settings)."""
    min_runs: int = MIN_RUNS
    excluded_runs: int = 0
    """Earlier runs of the window left out because their clock settings differ from the candidate's."""
    clock_changes: tuple[str, ...] = ()
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spread_pct(values: list[float], center: float) -> float:
    mad = statistics.median(abs(v - center) for v in values)
    return 100.0 * 2 * 1.4826 * mad / center


def judge(median_s: float, history: list[tuple[float, dict[str, Any]]], *, clocks: dict[str, Any] | None,
          warn_pct: float = WARN_PCT, fail_pct: float = FAIL_PCT, min_runs: int = MIN_RUNS) -> HistoryVerdict:
    """Judge one cell's median against ``history`` (earlier runs' (median, clocks), newest first).

    Every run of ``history`` is compared with ``clocks``; runs at other clock settings are left out
    of the baseline and named. The band is the history's noise only (never this run's spread)."""
    same = [m for m, c in history if not clock_changes(c, clocks)]
    changed = tuple(dict.fromkeys(x for _, c in history for x in clock_changes(c, clocks)))
    excluded = len(history) - len(same)
    common: dict[str, Any] = dict(median_s=median_s, runs=len(same), min_runs=min_runs, excluded_runs=excluded,
                  clock_changes=changed)
    left_out = (f"{excluded} of the {len(history)} earlier runs ran at other clock settings and are left out "
                f"({', '.join(changed)})") if excluded else ""
    if len(same) < min_runs:
        need = f"{len(same)} earlier runs at these settings on this GPU class; a verdict needs at least {min_runs}"
        if excluded:
            return HistoryVerdict(status="clock change", **common,
                                  message=f"the GPU's clock settings changed: {left_out}; {need}")
        return HistoryVerdict(status="insufficient history", **common, message=need)
    base = statistics.median(same)
    noise = _spread_pct(same, base)
    delta = 100.0 * (median_s / base - 1.0)
    if delta > noise + fail_pct:
        status = "fail"
    elif delta > noise + warn_pct:
        status = "warn"
    elif delta < -(noise + warn_pct):
        status = "faster"
    else:
        status = "ok"
    text = (f"{delta:+.1f}% against the median of {len(same)} earlier runs ({base:.4g} s; noise of those runs "
            f"+-{noise:.1f}%, warn beyond {noise + warn_pct:.1f}%, fail beyond {noise + fail_pct:.1f}%)")
    return HistoryVerdict(status=status, **common, baseline_s=base, delta_pct=delta, noise_pct=noise,
                          message=text + (f"; {left_out}" if left_out else ""))


class History:
    """The SQLite file of earlier runs (created on first use; safe to share between processes)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def earlier(self, cell: str, gpu_class: str, *, before_run: str, window: int = WINDOW
                ) -> list[tuple[float, dict[str, Any]]]:
        """(median, clocks) of the cell in the ``window`` most recent other runs on ``gpu_class``."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT c.median_s, r.clocks FROM cells c "
                "JOIN runs r ON r.run_id = c.run_id AND r.gpu_class = c.gpu_class "
                "WHERE c.cell = ? AND c.gpu_class = ? AND c.run_id != ? ORDER BY r.time DESC LIMIT ?",
                (cell, gpu_class, before_run, window)).fetchall()
        return [(m, json.loads(c or "{}")) for m, c in rows]

    def add(self, run_id: str, cells: dict[str, list[float]], *, gpu_class: str, gpu_name: str = "",
            clocks: dict[str, Any] | None = None, when: float | None = None) -> None:
        """Record a run's timed cells ({cell key: rounds}); a run id added twice keeps its first time."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?)",
                       (run_id, when if when is not None else time.time(), gpu_class, gpu_name,
                        json.dumps(clocks or {}, sort_keys=True)))
            db.executemany("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?)",
                           [(run_id, cell, gpu_class, statistics.median(r), json.dumps(r))
                            for cell, r in cells.items() if r])


def cell_name(rec: Mapping[str, Any]) -> str:
    """The key a cell's history is kept under (model/backend/format/device/task/video)."""
    from core.base.results import cell_key

    key = cell_key(rec)
    return "/".join(key[:4] + key[5:])  # the GPU class is a column of its own


def judge_record(db: History, rec: Mapping[str, Any], *, run_id: str) -> HistoryVerdict | None:
    """The history verdict of a timed record (None when it has no rounds)."""
    rounds = [float(x) for x in rec.get("rounds_s") or []]
    if not rounds:
        return None
    earlier = db.earlier(cell_name(rec), str(rec.get("gpu_class") or "cpu"), before_run=run_id)
    return judge(statistics.median(rounds), earlier, clocks=rec.get("gpu_clocks"))


def add_records(db: History, records: Sequence[Mapping[str, Any]], *, run_id: str) -> int:
    """Add a run's timed records to the history; returns how many cells were added."""
    by_class: dict[str, dict[str, list[float]]] = {}
    meta: dict[str, tuple[str, dict[str, Any]]] = {}
    for rec in records:
        rounds = [float(x) for x in rec.get("rounds_s") or []]
        if rec.get("status", "ok") != "ok" or not rounds:
            continue
        cls = str(rec.get("gpu_class") or "cpu")
        by_class.setdefault(cls, {})[cell_name(rec)] = rounds
        meta.setdefault(cls, (str(rec.get("gpu_name") or ""), rec.get("gpu_clocks") or {}))
    for cls, cells in by_class.items():
        db.add(run_id, cells, gpu_class=cls, gpu_name=meta[cls][0], clocks=meta[cls][1])
    return sum(len(c) for c in by_class.values())
