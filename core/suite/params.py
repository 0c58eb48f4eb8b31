"""The matrix as pytest parameters: each cell or engine becomes a ``pytest.param`` whose marks carry
its device and backend, its xdist group, and a skip with the capability table's reason when it
cannot run (or be judged) here. Test bodies never decide to skip."""

from __future__ import annotations

from typing import Any

import pytest

from core import capability
from core.matrix import Cell, EnginePlan, expand
from core.tasks import get_task

GOLDEN_TESTS = {"test_golden"}
"""Tests whose engine parameter is judged by the plan's golden verdict (the rest by its drift verdict)."""


def _param(plan: EnginePlan, id_: str, values: tuple, *, extra: capability.Verdict | None = None) -> Any:
    marks = [getattr(pytest.mark, m) for m in plan.marks]
    marks.append(pytest.mark.xdist_group(plan.group))
    for verdict in (plan.verdict, extra):
        if verdict is not None and not verdict.runnable:
            marks.append(pytest.mark.skip(reason=verdict.reason))
            break
    return pytest.param(*values, id=id_, marks=marks)


def cell_params(state) -> list[Any]:
    """One param per (engine, task, clip), in the matrix's order."""
    out = []
    for plan in state.plans:
        for name in state.settings.tasks_for(plan.engine.model):
            task, clips = get_task(name), state.clips_for(name)
            for cell in expand([plan], [task], clips):
                out.append(_param(plan, cell.id, (cell,), extra=capability.task_verdict(name, [cell.clip])))
    return out


def engine_params(state, test_name: str) -> list[Any]:
    """One param per (engine, task), judged by the plan's golden or drift verdict."""
    out = []
    for plan in state.plans:
        judged = plan.golden if test_name in GOLDEN_TESTS else plan.drift
        for name in state.settings.tasks_for(plan.engine.model):
            task_gap = capability.task_verdict(name, state.clips_for(name))
            extra = judged if not judged.runnable else task_gap
            out.append(_param(plan, plan.golden_id(name), ((plan, get_task(name)),), extra=extra))
    return out


def plan_of(item: pytest.Item) -> EnginePlan | None:
    """The engine plan an item belongs to (None for tests that are not matrix cells)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    if "vqbench_cell" in callspec.params:
        return callspec.params["vqbench_cell"].plan
    if "vqbench_engine" in callspec.params:
        return callspec.params["vqbench_engine"][0]
    return None


def is_cell(item: pytest.Item) -> bool:
    return isinstance(getattr(getattr(item, "callspec", None), "params", {}).get("vqbench_cell"), Cell)
