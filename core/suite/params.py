"""The matrix as pytest parameters: each cell or engine becomes a ``pytest.param`` whose marks carry
its device and backend, its xdist group, and a skip with the capability table's reason when it
cannot run (or be judged) here. A structural "no" (it never runs on that device kind, whatever is
installed) also carries ``vqbench_structural``: the plugin deselects those and counts them per
reason. Test bodies never decide to skip."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from core.base.errors import ConfigError
from core.inputs.tasks import get_task
from core.plan import capability
from core.plan.matrix import Cell, EnginePlan, expand

MARK = "vqbench"
"""The marker by which a test tells the plugin what it does, so the plugin never reads test names. A test
taking ``vqbench_engine`` is judged by the plan's golden verdict with ``@pytest.mark.vqbench(judge="golden")``,
by its drift verdict with ``judge="drift"`` (also without the marker). ``phase=NAME`` names the session
timeline phase its time counts in (``core.base.timeline``; default: from ``judge``, see ``phase_of``)."""
JUDGES = {"golden": "goldens", "drift": "drift"}
"""What a ``vqbench(judge=...)`` may say, and the timeline phase such a test's time counts in."""
CELL_PHASE = "cells (bookkeeping)"
"""The timeline phase of tests that take ``vqbench_cell`` (their timed rounds are phases of their own)."""
OTHER_PHASE = "other tests"


STRUCTURAL = "vqbench_structural"
"""Marker of a matrix test whose verdict is structural (``vqbench_structural(reason)``): deselected."""


def callspec(item: pytest.Item):
    """The parametrization of a matrix test (only ``pytest.Function`` items have one)."""
    if not isinstance(item, pytest.Function):
        raise TypeError(f"{item.nodeid} is not a parametrized test function")
    return item.callspec


def _param(plan: EnginePlan, id_: str, values: tuple, *, extra: capability.CapabilityVerdict | None = None,
           more_marks: tuple[str, ...] = ()) -> Any:
    marks = [getattr(pytest.mark, m) for m in (*plan.marks, *more_marks)]
    marks.append(pytest.mark.xdist_group(plan.group))
    nos = [v for v in (plan.verdict, extra) if v is not None and not v.runnable]
    # a structural "no" wins over one of this environment (no GPU here, a missing package): the test is
    # deselected wherever it is collected, not only where everything else is in place
    never = next((v for v in nos if v.structural), None)
    if never is not None:
        marks += [pytest.mark.skip(reason=never.reason), getattr(pytest.mark, STRUCTURAL)(never.reason)]
    elif nos:
        marks.append(pytest.mark.skip(reason=nos[0].reason))
    return pytest.param(*values, id=id_, marks=marks)


def structural_reason(item: pytest.Item) -> str | None:
    """The reason a matrix test can never run on its device kind (None when it can, or may elsewhere)."""
    mark = item.get_closest_marker(STRUCTURAL)
    return mark.args[0] if mark is not None else None


def cell_params(state) -> list[Any]:
    """One param per (engine, task, clip), in the matrix's order."""
    out = []
    for plan in state.plans:
        for name in state.settings.tasks_for(plan.engine.model):
            task, clips = get_task(name), state.clips_for(name)
            for cell in expand([plan], [task], clips):
                out.append(_param(plan, cell.id, (cell,), extra=capability.task_verdict(name, [cell.clip])))
    return out


def judge_of(node: Any) -> str:
    """What a ``vqbench_engine`` test (its function definition or item) judges: ``vqbench(judge=...)``,
    or drift without the marker. Raises ``ConfigError`` on another value."""
    mark = node.get_closest_marker(MARK)
    judge = mark.kwargs.get("judge", "drift") if mark is not None else "drift"
    if judge not in JUDGES:
        raise ConfigError(f"{node.nodeid}: @pytest.mark.{MARK}(judge={judge!r}): judge is one of "
                          f"{', '.join(map(repr, JUDGES))}")
    return judge


def phase_of(item: pytest.Item) -> str:
    """The timeline phase an item's time counts in: its marker's ``phase``, else its ``judge``'s phase, else
    the cells' phase for a test taking ``vqbench_cell``, else "other tests"."""
    mark = item.get_closest_marker(MARK)
    if mark is not None and mark.kwargs.get("phase"):
        return str(mark.kwargs["phase"])
    if mark is not None and mark.kwargs.get("judge") in JUDGES:
        return JUDGES[mark.kwargs["judge"]]
    if "vqbench_cell" in getattr(item, "fixturenames", ()):
        return CELL_PHASE
    return OTHER_PHASE


def engine_params(state, judge: str = "drift") -> list[Any]:
    """One param per (engine, task), judged by the plan's golden or drift verdict (``judge``)."""
    out = []
    for plan in state.plans:
        judged = plan.golden if judge == "golden" else plan.drift
        for name in state.settings.tasks_for(plan.engine.model):
            task_gap = capability.task_verdict(name, state.clips_for(name))
            extra = judged if not judged.runnable else task_gap
            out.append(_param(plan, plan.golden_id(name), ((plan, get_task(name)),), extra=extra))
    return out


def load_params(state) -> list[Any]:
    """One param per (vLLM engine, task, --load scenario): (plan, task, scenario). Nothing without --load."""
    out: list[Any] = []
    names = state.settings.load_scenarios()
    if not names:
        return out
    for plan in state.plans:
        if plan.engine.backend != "vllm":
            continue  # a load scenario needs a server: vLLM's OpenAI-compatible one
        for name in state.settings.tasks_for(plan.engine.model):
            task_gap = capability.task_verdict(name, state.clips_for(name))
            for scenario in names:
                out.append(_param(plan, f"{plan.golden_id(name)}-{scenario}", ((plan, get_task(name), scenario),),
                                  extra=task_gap, more_marks=("load",)))
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
    load = callspec.params.get("vqbench_load")
    if isinstance(load, tuple):  # without --load the parameter set is empty (NOTSET): no plan
        return load[0]
    return None


def is_unselected_load(item: pytest.Item) -> bool:
    """A load test collected without --load (its empty parameter set): deselected, never a skip."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "vqbench_load" in params and not isinstance(params["vqbench_load"], tuple)


def is_cell(item: pytest.Item) -> bool:
    return isinstance(getattr(getattr(item, "callspec", None), "params", {}).get("vqbench_cell"), Cell)


_DEVICE_WORDS = {"cpu": "a CPU", "cuda": "a GPU"}
_FORMAT, _MODEL = "\0", "\1"


def _name(name: str) -> str:
    """A regex for ``name`` standing alone (not inside tiny-trained, ct_fp8_dynamic or int8_sq+kv_fp8)."""
    return rf"(?<![\w+.-]){re.escape(name)}(?![\w+.-])"


def deselection_summary(deselected: list[tuple[str, str, str, str]]) -> list[str]:
    """The terminal summary of structurally deselected tests, from (reason, model, format id, device
    kind) per test: a header with the total, then one line per reason with its count, most first.
    Reasons that differ only in the format or model they name share a line that lists them
    (``fp8/nvfp4``)."""
    if not deselected:
        return []
    counts: Counter[str] = Counter()
    names: dict[str, dict[str, dict[str, None]]] = {}
    for reason, model, fmt_id, _ in deselected:
        template = re.sub(_name(fmt_id), _FORMAT, reason) if fmt_id else reason
        template = re.sub(_name(model), _MODEL, template, count=1) if model else template
        counts[template] += 1
        seen = names.setdefault(template, {_FORMAT: {}, _MODEL: {}})
        seen[_FORMAT][fmt_id] = seen[_MODEL][model] = None
    kinds = sorted({kind for *_, kind in deselected})
    where = " or ".join(_DEVICE_WORDS.get(k, k) for k in kinds)
    lines = [f"vqbench deselected {len(deselected)} matrix tests that can never run (or be judged) on {where}, "
             f"whatever is installed ({len(counts)} reasons; `vqbench doctor` shows the whole table):"]
    shown = []
    for template, n in counts.items():
        text = template
        for sentinel, named in names[template].items():
            text = text.replace(sentinel, "/".join(sorted(named)))
        shown.append((n, text))
    lines += [f"{n:>6}  {text}" for n, text in sorted(shown, key=lambda nt: (-nt[0], nt[1]))]
    return lines
