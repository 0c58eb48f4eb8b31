"""pytest-benchmark-format JSON from vqbench results, for runs where pytest-benchmark is off.

pytest-benchmark disables itself under xdist; each worker then times its cells with the same
rounds (core.suite.timing) and appends them to the results file. After the session the controller
turns those records into one JSON in pytest-benchmark's schema, so ``pytest-benchmark compare``,
``--benchmark-compare`` workflows and dashboards read a parallel run like any other.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping
from typing import Any

from core.base.records import CellRecord, extra_info, kind_of


def _quartiles(data: list[float]) -> tuple[float, float]:
    if len(data) < 2:
        return data[0], data[0]
    q = statistics.quantiles(data, n=4, method="inclusive")
    return q[0], q[2]


def stats(data: list[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block computed from per-round seconds."""
    data = sorted(data)
    mean = statistics.fmean(data)
    sd = statistics.stdev(data) if len(data) > 1 else 0.0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    ld15 = min((x for x in data if x >= lo), default=data[0])
    hd15 = max((x for x in data if x <= hi), default=data[-1])
    sd_out = sum(1 for x in data if abs(x - mean) > sd) if sd else 0
    iqr_out = sum(1 for x in data if x < lo or x > hi)
    return {"min": data[0], "max": data[-1], "mean": mean, "stddev": sd, "rounds": len(data),
            "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_out,
            "stddev_outliers": sd_out, "outliers": f"{sd_out};{iqr_out}", "ld15iqr": ld15, "hd15iqr": hd15,
            "ops": 1 / mean if mean > 0 else math.inf, "total": sum(data), "data": data, "iterations": 1}


def to_document(records: list[CellRecord], *, machine_info: dict[str, Any],
                nodeids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One pytest-benchmark document for every timed cell record (status ok, with rounds).

    ``nodeids`` maps a cell id to the node id of the test that timed it (``bench/test_cells.py::test_cell[ID]``,
    as the sessions that ran it collected it): a benchmark's ``fullname`` is that node id and its ``name`` the
    test's name with the parameter, as pytest-benchmark writes them. A cell it does not name (a record
    from elsewhere) is listed as ``vqbench_cell[ID]``."""
    benches = []
    for r in sorted(records, key=lambda r: r["cell"]):
        rounds = r.get("rounds_s")
        if r.get("status") != "ok" or kind_of(r) != "timed" or not rounds:
            continue
        fullname = (nodeids or {}).get(r["cell"]) or f"vqbench_cell[{r['cell']}]"
        name = fullname.rsplit("::", 1)[-1]
        benches.append({
            "group": f"{r['model']}-{r['task']}-{r['video']}", "name": name, "fullname": fullname,
            "params": {"vqbench_cell": r["cell"]}, "param": r["cell"], "stats": stats(rounds),
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(rounds),
                        "max_time": None, "min_time": None, "warmup": True},
            "extra_info": extra_info(r),
        })
    return {"machine_info": machine_info, "commit_info": {}, "benchmarks": benches,
            "datetime": dt.datetime.now(dt.UTC).isoformat(), "version": "vqbench-merged"}
