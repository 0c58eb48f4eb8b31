"""How the matrix is cut into work units for several workers (one per GPU), and in which order.

A unit is what one worker runs without interruption. By default a unit is an engine group: every
format of a model on a backend, with its goldens and drift (drift needs the reference format's
answers on the same worker, and each engine then loads once). Units go to free workers longest
first (LPT: greedy list scheduling over units sorted by cost, which is what xdist does with an
ordered queue).

A group whose cost dominates (more than a worker's fair share) is split when nothing in it is
judged here (shape-only models: random weights, no goldens or drift): first into one unit per
engine, then an engine's clips into chunks, each chunk loading the engine again, but only while
the extra load costs less than the time the split saves.

Costs are seconds, estimated from what is known before running: the backend (its
``BackendInfo.costs``: a vLLM engine takes tens of seconds to start), the model size, the format's
route (fake-quant is slower), rounds and clips. ``history`` (records of an earlier run: its engine load
records and timed cells) replaces the estimates with measured figures where it has them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.plan.catalog import BACKENDS, EngineCosts

CPU_SLOWDOWN = 40.0
FAKE_QUANT_SLOWDOWN = 4.0
QUANTIZE_S_PER_B = 15.0
"""Calibrating and (for checkpoint routes) exporting a quantized model, per billion parameters."""


@dataclass(frozen=True)
class Unit:
    """A piece of work one worker runs whole."""

    name: str
    group: str
    cost_s: float
    engines: tuple[str, ...]
    chunk: tuple[int, int] | None = None
    """(k, of n) when an engine's clips are split into n chunks."""


@dataclass
class Plan:
    units: list[Unit] = field(default_factory=list)
    workers: int = 1
    by_param: dict[str, str] = field(default_factory=dict)
    """Parameter id -> unit name."""

    def order(self) -> list[str]:
        """Unit names, costliest first (the order workers take them)."""
        return [u.name for u in sorted(self.units, key=lambda u: (-u.cost_s, u.name))]

    def summary(self) -> dict[str, Any]:
        makespan = lpt_makespan([u.cost_s for u in self.units], self.workers)
        return {"workers": self.workers, "units": [{"name": u.name, "cost_s": round(u.cost_s, 1),
                                                    "engines": list(u.engines), "chunk": u.chunk}
                                                   for u in sorted(self.units, key=lambda u: -u.cost_s)],
                "estimated_serial_s": round(sum(u.cost_s for u in self.units), 1),
                "estimated_makespan_s": round(makespan, 1)}


def lpt_makespan(costs: Iterable[float], workers: int) -> float:
    """The finishing time of longest-first greedy assignment of ``costs`` to ``workers``."""
    loads = [0.0] * max(1, workers)
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def history_costs(records: Iterable[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Measured (load seconds, seconds per cell) per engine id, from an earlier run's records."""
    load: dict[str, float] = {}
    cell: dict[str, list[float]] = {}
    for r in records:
        if r.get("type") == "engine" and r.get("event") == "load":
            load[r["engine"]] = float((r.get("details") or {}).get("wall_s") or 0.0)
        elif r.get("type") == "cell" and r.get("status") == "ok" and r.get("rounds_s"):
            cell.setdefault(r["engine"], []).append(sum(r["rounds_s"]) * (1 + 1 / len(r["rounds_s"])))
    return load, {k: sum(v) / len(v) for k, v in cell.items()}


def engine_costs(plan, cells: int, settings, history: tuple[dict, dict] | None = None) -> tuple[float, float]:
    """(load seconds, seconds for its ``cells`` timed cells) of one engine plan."""
    e, params_b = plan.engine, max(plan.spec.approx_params_b, 0.001)
    hist_load, hist_cell = history or ({}, {})
    if not plan.verdict.runnable:
        return 0.0, 0.0
    info = BACKENDS.get(e.backend)
    costs = info.costs if info is not None else EngineCosts()  # a backend the catalog no longer has
    load = costs.load_s + costs.load_s_per_b * params_b
    if plan.fmt.quantized:
        load += QUANTIZE_S_PER_B * params_b
    per_answer = costs.answer_s + costs.answer_s_per_b * params_b
    if plan.verdict.mode == "fake-quant":
        per_answer *= FAKE_QUANT_SLOWDOWN
    if e.device == "cpu":
        per_answer *= CPU_SLOWDOWN
        load = load / 10
    per_cell = per_answer * (settings.rounds + settings.warmup_rounds)
    return hist_load.get(e.id, load), cells * hist_cell.get(e.id, per_cell)


def plan_units(state, workers: int, *, history: tuple[dict, dict] | None = None) -> Plan:
    """Cut the session's matrix into units for ``workers`` workers (see the module docstring)."""
    from core.inputs.tasks import get_task

    settings = state.settings
    out = Plan(workers=workers)
    groups: dict[str, list] = {}
    for p in state.plans:
        groups.setdefault(p.group, []).append(p)
    splittable = {}
    for group, plans in groups.items():
        judged = any(p.verdict.runnable and (p.golden.runnable or p.drift.runnable) for p in plans)
        per_engine = []
        for p in plans:
            clips = [(name, c) for name in settings.tasks_for(p.engine.model) for c in state.clips_for(name)]
            load, cells = engine_costs(p, len(clips), settings, history)
            per_engine.append((p, clips, load, cells))
            for name, c in clips:
                out.by_param[f"{p.engine.id}-{get_task(name).name}-{c.id}"] = f"group:{group}"
            for name in settings.tasks_for(p.engine.model):
                out.by_param[p.golden_id(name)] = f"group:{group}"
        out.units.append(Unit(name=f"group:{group}", group=group, cost_s=sum(a + b for _, _, a, b in per_engine),
                              engines=tuple(p.engine.id for p in plans)))
        if not judged:
            splittable[group] = per_engine
    if workers > 1:
        for u in sorted(out.units, key=lambda u: -u.cost_s):
            if u.group in splittable:
                _split(out, u.group, splittable[u.group], workers)
    return out


def _split(out: Plan, group: str, per_engine: list, workers: int) -> None:
    """Split a dominant, unjudged group into engine units (free: each engine loads once either way),
    and a still-dominant engine's clips into chunks (each chunk loads the engine again)."""
    from core.inputs.tasks import get_task

    total_all = sum(u.cost_s for u in out.units)
    fair = max(total_all / workers, 1e-9)
    home = next(u for u in out.units if u.name == f"group:{group}")
    if home.cost_s <= fair or len(per_engine) < 1:
        return
    out.units.remove(home)
    for p, clips, load, cells in per_engine:
        cost = load + cells
        chunks = 1
        if clips and cost > fair:
            # k chunks shorten this engine's span by cells * (1 - 1/k) at the price of k - 1 more loads:
            # split while that pays, and no further than needed to fit a worker's fair share.
            for k in range(2, min(workers, len(clips)) + 1):
                if (k - 1) * load >= cells * (1 - 1 / k):
                    break
                chunks = k
                if load + cells / k <= fair:
                    break
        for k in range(chunks):
            name = f"engine:{p.engine.id}" + (f"#{k + 1}/{chunks}" if chunks > 1 else "")
            mine = [c for i, c in enumerate(clips) if i * chunks // max(len(clips), 1) == k]
            share = len(mine) / max(len(clips), 1)
            out.units.append(Unit(name=name, group=group, cost_s=load + cells * share, engines=(p.engine.id,),
                                  chunk=(k + 1, chunks) if chunks > 1 else None))
            for task_name, c in mine:
                out.by_param[f"{p.engine.id}-{get_task(task_name).name}-{c.id}"] = name
        for task_name in {t for t, _ in clips}:  # judge tests of an unjudged group are skips: any unit
            out.by_param[p.golden_id(task_name)] = f"engine:{p.engine.id}" + (f"#1/{chunks}" if chunks > 1 else "")
