"""The vqbench pytest plugin (entry point ``pytest11: vqbench``): options, hooks and fixtures.

Any project can use it: install vqbench and write tests that take the ``vqbench_cell`` or
``vqbench_engine`` fixtures (an engine test says what it judges with
``@pytest.mark.vqbench(judge=...)``; the plugin reads marks and fixtures, never test names); cells are
parametrized from the settings, skipped with their reason when they cannot run here, ordered so each
engine loads once, and optionally sharded. Cells that can never run on their device kind (a structural
verdict: TensorRT-LLM on a CPU, a format with no route on a backend) are deselected instead, with one
summary line per reason. The pieces live beside this file: ``session`` (state), ``params`` (matrix ->
pytest params), ``xdist`` (several GPUs), ``timing`` (how a cell is timed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.base import timeline
from core.base.errors import VqbenchError
from core.plan import settings as settings_mod
from core.suite import params, xdist
from core.suite.session import VqbenchState

_STATE = pytest.StashKey[VqbenchState]()
_STRUCTURAL = pytest.StashKey[list]()
"""(reason, model, format id, device kind) of every test deselected as structurally impossible."""

MARKERS = {
    "cpu": "runs without a GPU (structural tests and CPU cells of the tiny model)",
    "gpu": "needs a CUDA GPU (skipped with the reason when there is none)",
    "slow": "takes more than a few seconds on CPU",
    "load": "a load scenario on a real vLLM server (bench/test_load.py; collected only with --load)",
    params.MARK: f"{params.MARK}(judge='golden'|'drift', phase=NAME): what a test taking vqbench_engine "
                 "judges (the plan's golden or drift verdict; default drift) and the session-timeline phase "
                 "its time counts in",
    params.STRUCTURAL: f"{params.STRUCTURAL}(reason): a matrix test that can never run (or be judged) on its "
                       "device kind, whatever is installed; deselected, with a summary line per reason",
    "xdist_group": "xdist_group(name): cells of one model/backend run on one xdist worker (registered here "
                   "so --strict-markers works without pytest-xdist)",
}
"""The markers the plugin registers besides one per backend (``markers()``)."""


def markers() -> dict[str, str]:
    """Every marker the plugin registers (``--strict-markers`` is on): ``MARKERS``, and one per backend of
    ``core.plan.catalog.BACKENDS`` named after it, which that backend's matrix tests carry (``-m vllm``)."""
    from core.plan.catalog import BACKENDS

    backends = {b.name: f"a matrix test of the {b.name} backend: {b.description}" for b in BACKENDS.values()}
    return {**backends, **MARKERS}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vqbench", "vqbench: video VLM quantization benchmark")
    settings_mod.add_arguments(group.addoption, "pytest")
    # How `vqbench cluster` plans once and hands each node its tests (plumbing between two vqbench
    # processes, not settings: no [tool.vqbench] key or VQBENCH_ variable).
    group.addoption("--unit-plan-out", dest="vqbench_unit_plan_out", metavar="FILE", default=None,
                    help="write the selected matrix tests, each with its work unit for --unit-workers N workers, "
                         "and the schedule to FILE as JSON (with --collect-only: what `vqbench cluster` asks one "
                         "worker for, so units are planned once, with a worker's GPU and packages)")
    group.addoption("--unit-tests", dest="vqbench_unit_tests", metavar="FILE", default=None,
                    help="run exactly the tests listed in FILE (JSON {\"unit\": NAME, \"tests\": [node ids]}, "
                         "written by `vqbench cluster`) without planning units again; a listed test this session "
                         "did not collect is a usage error")
    group.addoption("--run-id", dest="vqbench_run_id", metavar="ID", default=None,
                    help="stamp ID on every record this session writes and use it as the latency history's run "
                         "(default: the start time and process id; `vqbench cluster` gives every unit's pytest "
                         "the cluster run's id; under -n the controller hands its id to the workers)")


def state(config: pytest.Config) -> VqbenchState:
    return config.stash[_STATE]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    from core.base.safety import enforce_offline

    timeline.LEDGER.reset()
    enforce_offline()
    xdist.configure_worker(config)
    if xdist.is_controller(config):
        xdist.refuse_benchmark_options(config)
    for name, doc in markers().items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    config.pluginmanager.register(StructuralDeselection(config), "vqbench-structural")
    try:
        config.stash[_STATE] = st = VqbenchState(config)
    except VqbenchError as exc:
        raise pytest.UsageError(f"vqbench: {exc}") from None
    if xdist.is_controller(config):
        workers = xdist.worker_count(config)
        config.pluginmanager.register(xdist.XdistHooks(config, lambda p: st.unit_of_param(p, workers),
                                                       results=st.settings.results, run_id=st.run_id),
                                      "vqbench-xdist")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vqbench_load" in metafunc.fixturenames:
        try:
            metafunc.parametrize("vqbench_load", params.load_params(state(metafunc.config)))
        except VqbenchError as exc:
            raise pytest.UsageError(f"vqbench: {exc}") from None
        return
    wants_cell = "vqbench_cell" in metafunc.fixturenames
    if not wants_cell and "vqbench_engine" not in metafunc.fixturenames:
        return
    st = state(metafunc.config)
    try:
        if wants_cell:
            metafunc.parametrize("vqbench_cell", params.cell_params(st))
        else:
            metafunc.parametrize("vqbench_engine", params.engine_params(st, params.judge_of(metafunc.definition)))
    except VqbenchError as exc:
        raise pytest.UsageError(f"vqbench: {exc}") from None


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session):
    with timeline.phase("collection"):
        yield


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group items by engine (reference format first, cells before goldens and drift) so each engine
    loads once; under xdist, by work unit, costliest first (the controller hands units out in this
    order); then keep one shard."""
    st = state(config)
    unselected = [it for it in items if params.is_unselected_load(it)]
    if unselected:  # bench/test_load.py without --load: nothing to run, nothing to skip
        config.hook.pytest_deselected(items=unselected)
        items[:] = [it for it in items if not params.is_unselected_load(it)]
    ref = st.settings.reference_format
    order: dict[Any, int] = {}
    units: dict[str, int] = {}
    if xdist.worker_id(config):
        units = {u: i for i, u in enumerate(st.schedule(xdist.worker_count(config)).order())}

    def key(pair):
        idx, item = pair
        plan = params.plan_of(item)
        if plan is None:
            return (0, 0, "", 0, "", 0, idx)
        e = plan.engine
        group = plan.group  # a pre-quantized checkpoint runs right after its --reference-model's engines
        order.setdefault(group, len(order))
        unit = (units.get(st.unit_of_param(params.callspec(item).id, xdist.worker_count(config)) or "", -1)
                if units else 0)
        return (1, unit, order[group], 0 if e.format == ref else 1, e.format, e.model,
                0 if params.is_cell(item) else 1, idx)

    items[:] = [it for _, it in sorted(enumerate(items), key=key)]
    listed = config.getoption("vqbench_unit_tests")
    if listed:
        if st.settings.unit:
            raise pytest.UsageError("vqbench: --unit-tests lists a unit's tests; --unit plans them: give one")
        _keep_listed(config, items, listed)
    elif st.settings.unit:
        n = st.settings.unit_workers
        keep = [it for it in items if params.plan_of(it) is not None
                and st.unit_of_param(params.callspec(it).id, n) == st.settings.unit]
        if not keep:
            known = ", ".join(st.schedule(n).order())
            raise pytest.UsageError(f"vqbench: --unit {st.settings.unit} is not a work unit of this matrix for "
                                    f"{n} workers; units: {known}")
        kept = {id(it) for it in keep}
        deselected = [it for it in items if id(it) not in kept]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        items[:] = keep
    if st.settings.shard:
        i, n = st.settings.shard
        engines = sorted({p.engine.id for it in items if (p := params.plan_of(it)) is not None})
        mine = {e for k, e in enumerate(engines) if k % n == i - 1}
        keep = [it for it in items if (p := params.plan_of(it)) is None or p.engine.id in mine]
        kept = {id(it) for it in keep}
        deselected = [it for it in items if id(it) not in kept]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        items[:] = keep


class StructuralDeselection:
    """Deselects matrix tests whose verdict is structural (they can never run on that device kind, in any
    environment), after ``-m``/``-k`` have chosen (trylast), so the summary counts only what was asked for.
    Skips that a user can act on (a missing package, no goldens yet, a GPU too old) stay skips. Under
    xdist the workers collect and deselect; each hands its list to the controller (``workeroutput``),
    which prints the summary (every worker collects the same tests: the first list is kept)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        listed = (getattr(node, "workeroutput", None) or {}).get("vqbench_structural")
        if listed is not None and _STRUCTURAL not in self.config.stash:
            self.config.stash[_STRUCTURAL] = [tuple(t) for t in listed]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, gone, why = [], [], config.stash.setdefault(_STRUCTURAL, [])
        for item in items:
            reason = params.structural_reason(item)
            if reason is None:
                keep.append(item)
                continue
            gone.append(item)
            plan = params.plan_of(item)
            e = plan.engine if plan is not None else None
            why.append((reason, e.model if e else "", e.format if e else "", e.device if e else ""))
        if gone:
            config.hook.pytest_deselected(items=gone)
            items[:] = keep
        if hasattr(config, "workeroutput"):  # an xdist worker: the controller prints the summary
            config.workeroutput["vqbench_structural"] = [list(t) for t in why]


def _keep_listed(config: pytest.Config, items: list[pytest.Item], path: str) -> None:
    """Keep the tests a ``--unit-tests`` file lists (in this session's order); any it lists that were
    not collected here is a usage error naming them (the node differs from the worker the unit was
    planned on: another GPU class names goldens differently, another checkout has other tests)."""
    import json

    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    wanted = set(spec["tests"])
    keep = [it for it in items if it.nodeid in wanted]
    missing = sorted(wanted - {it.nodeid for it in keep})
    if missing:
        from core.plan import device as devices

        raise pytest.UsageError(
            f"vqbench: unit {spec.get('unit')} was planned on {spec.get('planned_on') or 'another machine'}; this "
            f"node ({devices.primary().describe()}) did not collect {len(missing)} of its {len(wanted)} tests: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. Run units on nodes like the one they were "
            "planned on (vqbench cluster --resource CLASS)")
    kept = {id(it) for it in keep}
    deselected = [it for it in items if id(it) not in kept]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker: which test times each cell (the controller names the merged JSON's benchmarks
    after them). With ``--unit-plan-out``: the selected matrix tests with their work units, and the schedule."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput[xdist.CELL_TESTS] = {
            params.callspec(item).params["vqbench_cell"].id: item.nodeid
            for item in session.items if params.is_cell(item)}
    target = session.config.getoption("vqbench_unit_plan_out")
    st = session.config.stash.get(_STATE, None)
    if not target or st is None:
        return
    import json
    import socket

    from core.cells.runner import cell_identity
    from core.plan import capability, catalog
    from core.plan import device as devices

    workers = st.settings.unit_workers
    tests, other = [], 0
    for item in session.items:
        plan = params.plan_of(item)
        if plan is None:
            other += 1
            continue
        cell = params.callspec(item).params["vqbench_cell"] if params.is_cell(item) else None
        tests.append({"nodeid": item.nodeid, "unit": st.unit_of_param(params.callspec(item).id, workers),
                      "device": plan.engine.device, "runnable": item.get_closest_marker("skip") is None,
                      "cell": cell_identity(cell) if cell is not None else None})
    gpu = devices.primary()
    doc = {"workers": workers, "schedule": st.schedule(workers).summary(), "tests": tests,
           "not_matrix_tests": other,
           "planned_on": {"host": socket.gethostname(), "device": gpu.describe(), "gpu_class": gpu.gpu_class,
                          "packages": sorted(p for p in catalog.PACKAGES if capability.installed(p))}}
    Path(target).write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    with timeline.phase(params.phase_of(item)):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """An interrupt (Ctrl-C, or the SIGINT of ``timeout -s INT``) inside a timed test leaves its
    ``benchmark`` fixture with no data. pytest-benchmark (5.x) marks a benchmark as failed only for an
    ``Exception``, so at session end it computes the statistics of the empty one and raises before
    yielding in its own ``pytest_sessionfinish``: every other ``pytest_sessionfinish`` is then skipped,
    ours included, and a vLLM server the session started outlives it (seen on an H100, 2026-12-07).
    Marking the interrupted benchmark as failed keeps it out of the JSON, and the session ends as usual."""
    outcome = yield
    excinfo = outcome.excinfo
    if excinfo is not None and issubclass(excinfo[0], KeyboardInterrupt):
        bench = getattr(item, "funcargs", {}).get("benchmark")
        if bench is not None and hasattr(bench, "has_error"):
            bench.has_error = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    st = session.config.stash.get(_STATE, None)
    if st is None:
        return
    if xdist.is_controller(session.config):
        st.close()
    else:
        st.finish(timeline.LEDGER.summary())


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    st = config.stash.get(_STATE, None)
    if st is None:
        return
    if xdist.is_controller(config):
        merged = xdist.write_benchmark_json(config, st.run_id, st.settings.results)
        if merged:
            terminalreporter.write_line(merged)
        summary = st.sessions_summary()
    else:
        summary = st.session_summary()
    for line in params.deselection_summary(config.stash.get(_STRUCTURAL, [])):
        terminalreporter.write_line(line)
    if summary:
        terminalreporter.section("vqbench session")
        for line in summary:
            terminalreporter.write_line(line)
    if st.temporary_results is not None:  # made for this -n session only: the merged JSON and summary are out
        xdist.remove_temporary_results(st.temporary_results)


@pytest.fixture(scope="session")
def vqbench_state(request: pytest.FixtureRequest) -> VqbenchState:
    """The session's settings, matrix, engine pool and results."""
    return state(request.config)


@pytest.fixture(scope="session")
def vqbench_settings(vqbench_state):
    """The resolved vqbench Settings."""
    return vqbench_state.settings


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["vqbench"] = xdist.machine_info()
