"""Several GPUs through pytest-xdist: one worker per GPU, every engine on one worker, one JSON.

* Each worker pins itself to its own GPU (``CUDA_VISIBLE_DEVICES``) before anything initialises CUDA.
* Every engine group (all formats of a model on a backend, so drift sees its reference) stays on
  one worker with no extra flag: the controller schedules whole groups (largest first), knowing
  each test's group from the matrix it planned itself. (xdist's own ``--dist loadgroup`` needs the
  workers to be started with that flag, and with pytest 9.2 its node-id suffix is silently lost:
  xdist 3.8 sets ``item._nodeid``, which pytest 9.2 no longer reads.)
* pytest-benchmark switches itself off under xdist; the workers time cells with the same rounds and
  append them to one shared results file, and the controller writes every worker's timed cells as
  one pytest-benchmark document into ``--benchmark-json``. pytest-benchmark's other outputs (saved
  runs, comparisons and their failure gate, histograms, CSV, cProfile) would silently do nothing, so
  giving one with ``-n`` is a usage error that says what works instead.
* The controller hands each worker the results file and the run id through xdist's own channel
  (``pytest_configure_node``: ``node.workerinput``, read on the worker as ``config.workerinput``), and
  a worker knows its id and the worker count from ``workerinput`` too: no environment variable
  carries the session's state, so a child process (a pytest session a test starts) inherits none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.plan import capability
from core.plan import device as devices

CELL_TESTS = "vqbench_cell_tests"
"""``workeroutput`` key: a worker's {cell id: node id} of the tests that time cells (the merged JSON names
each benchmark after the test that timed it)."""

GROUPED_DISTS = {"load", "loadgroup"}
"""xdist modes this plugin replaces with engine-group scheduling (others are the user's choice)."""


def is_controller(config: pytest.Config) -> bool:
    return getattr(config.option, "numprocesses", None) not in (None, 0) and not hasattr(config, "workerinput")


def worker_id(config: pytest.Config) -> str | None:
    """This session's xdist worker id (``gwN``); None on the controller and without xdist."""
    handed = getattr(config, "workerinput", None)
    return handed.get("workerid") if handed else None


def from_controller(config: pytest.Config) -> dict[str, Any]:
    """On a worker, what the controller handed it (``XdistHooks.pytest_configure_node``): ``results``
    (the file every worker appends to) and ``run_id``; empty elsewhere."""
    handed = getattr(config, "workerinput", None) or {}
    return {key: handed[f"vqbench_{key}"] for key in ("results", "run_id") if handed.get(f"vqbench_{key}")}


def pin_worker_gpu(worker: str, count: int) -> None:
    """Give xdist worker gwN (of ``count``) its own GPU (the N-th visible one), before anything
    initialises CUDA."""
    gpus = devices.gpus()
    if not gpus:
        return
    if count > len(gpus):
        raise pytest.UsageError(f"-n {count} exceeds the {len(gpus)} visible GPUs: two workers would share a "
                                f"GPU and skew each other's timings; use -n {len(gpus)} or fewer")
    index = int(worker.removeprefix("gw"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [t.strip() for t in visible.split(",")] if visible else [str(g.index) for g in gpus]
    os.environ["CUDA_VISIBLE_DEVICES"] = physical[index % len(physical)]
    devices.gpus.cache_clear() if hasattr(devices.gpus, "cache_clear") else None


def configure_worker(config: pytest.Config) -> None:
    """On a worker: pin the GPU before anything initialises CUDA."""
    worker = worker_id(config)
    if worker:
        pin_worker_gpu(worker, worker_count(config))


OFF_UNDER_XDIST = {
    "benchmark_save": "--benchmark-save", "benchmark_autosave": "--benchmark-autosave",
    "benchmark_save_data": "--benchmark-save-data", "benchmark_compare": "--benchmark-compare",
    "benchmark_compare_fail": "--benchmark-compare-fail", "benchmark_histogram": "--benchmark-histogram",
    "benchmark_csv": "--benchmark-csv", "benchmark_cprofile": "--benchmark-cprofile",
}
"""pytest-benchmark options (dest -> flag) that do nothing once xdist has switched pytest-benchmark off."""


def refuse_benchmark_options(config: pytest.Config) -> None:
    """Under -n, stop with a usage error on pytest-benchmark options that would silently do nothing."""
    given = [flag for dest, flag in OFF_UNDER_XDIST.items() if getattr(config.option, dest, None)]
    if not given:
        return
    raise pytest.UsageError(
        f"vqbench: {', '.join(given)} {'does' if len(given) == 1 else 'do'} nothing under -n: pytest-benchmark "
        "switches itself off under xdist, so no run would be saved or compared. Drop -n to use "
        f"{'it' if len(given) == 1 else 'them'}, or keep -n with what works there: --benchmark-json FILE (every "
        "worker's timed cells merged into one pytest-benchmark document; compare two such files with "
        "`vqbench compare OLD.json NEW.json` or `pytest-benchmark compare`) or --history FILE.sqlite (the "
        "latency gate against earlier runs).")


def temporary_results() -> str:
    """On the controller without --results: a fresh file every worker appends to (the merged JSON and
    the per-worker summary are made from it)."""
    import tempfile

    return str(Path(tempfile.mkdtemp(prefix="vqbench-")) / "results.jsonl")


def remove_temporary_results(path: str | Path) -> None:
    """Remove a ``temporary_results()`` file with the folder made for it (once the merged JSON and the
    summary are written)."""
    import shutil

    shutil.rmtree(Path(path).parent, ignore_errors=True)


def groups_engines(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") in GROUPED_DISTS


def worker_count(config: pytest.Config) -> int:
    """How many xdist workers this session runs (1 without xdist)."""
    handed = getattr(config, "workerinput", None)
    if handed and handed.get("workercount"):
        return int(handed["workercount"])
    n = getattr(config.option, "numprocesses", None)
    return n if isinstance(n, int) and n > 0 else 1


def param_of(nodeid: str) -> str | None:
    """The parameter id of a node id (``path::test[PARAM]``, with or without xdist's ``@group``)."""
    if "[" not in nodeid:
        return None
    return nodeid[nodeid.index("[") + 1: nodeid.rindex("]")]


class XdistHooks:
    """Controller-side xdist hooks, registered only when xdist is active (its hook specs exist).

    ``unit_of(param_id)`` names the work unit of a matrix test (None for other tests); ``results`` and
    ``run_id`` are handed to every worker (``from_controller`` reads them there)."""

    def __init__(self, config: pytest.Config, unit_of: Callable[[str], str | None], *, results: str,
                 run_id: str) -> None:
        self.config = config
        self.unit_of = unit_of
        self.handed = {"vqbench_results": results, "vqbench_run_id": run_id}
        self.cell_tests: dict[str, str] = {}
        """Cell id -> node id of the test that times it, as the workers collected them (``CELL_TESTS``)."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput.update(self.handed)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        self.cell_tests.update((getattr(node, "workeroutput", None) or {}).get(CELL_TESTS) or {})

    def scope(self, nodeid: str) -> str:
        param = param_of(nodeid)
        unit = self.unit_of(param) if param is not None else None
        return unit or nodeid

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        if not groups_engines(config):
            return None
        from xdist.scheduler import LoadScopeScheduling

        scope = self.scope

        class EngineGroupScheduling(LoadScopeScheduling):
            """Whole work units (``core.plan.schedule``) to a worker, in the workers' collection
            order: the plugin orders the collection costliest unit first, so free workers take the
            longest first."""

            def _split_scope(self, nodeid: str) -> str:
                return scope(nodeid)

        config.option.loadscopereorder = False
        return EngineGroupScheduling(config, log)


def write_benchmark_json(config: pytest.Config, run_id: str, source: str) -> str | None:
    """Under xdist, every worker's timed cells (from the shared results file ``source``) as one
    pytest-benchmark document in --benchmark-json: this session's cells only (``run_id``), as
    pytest-benchmark writes without -n, even when ``--results`` names a file earlier sessions
    appended to."""
    target = getattr(config.option, "benchmark_json", None)
    if not (is_controller(config) and target and source and Path(source).exists()):
        return None
    from core.base import results
    from core.suite.benchjson import to_document

    try:
        timed = results.load(source, run_id=run_id).speed()
    except results.ReportInputError:
        timed = []  # this session wrote no cell (all deselected or skipped)
    hooks = config.pluginmanager.get_plugin("vqbench-xdist")
    doc = to_document(timed, machine_info={"vqbench": machine_info()},
                      nodeids=hooks.cell_tests if isinstance(hooks, XdistHooks) else None)
    data = json.dumps(doc, indent=2, default=str)
    if hasattr(target, "write"):  # older pytest-benchmark: an open file (argparse FileType('wb'))
        try:
            target.write(data.encode())
        except TypeError:
            target.write(data)
        target.flush()
        name = getattr(target, "name", "--benchmark-json")
    else:
        Path(target).write_text(data)
        name = str(target)
    return f"vqbench: merged {len(doc['benchmarks'])} timed cells from the xdist workers into {name}"


def machine_info() -> dict[str, Any]:
    """GPU, driver, CUDA and package versions, and the host's CPU (for pytest-benchmark's machine_info
    and results). The CPU matters on a GPU too: a vLLM server prepares every video on it, so two machines
    with the same GPU can serve a different number of videos per second."""
    from core.plan.catalog import BACKENDS, QUANTIZERS

    gpu = devices.primary()
    packages = {"av"} | {p for b in BACKENDS.values() for p in b.versioned} | {
        p for q in QUANTIZERS.values() for p in q.versioned}
    info: dict[str, Any] = {
        "gpu": None if gpu.kind == "cpu" else {
            "name": gpu.name,
            "compute_capability": f"{gpu.capability[0]}.{gpu.capability[1]}" if gpu.capability else None,
            "memory_gib": round(gpu.memory_gib or 0, 1), "driver": gpu.driver, "cuda_driver": gpu.cuda_driver_version,
            "count": len(devices.gpus()), "uuid": gpu.uuid},
        "gpu_class": gpu.gpu_class,
        "packages": {p: v for p in sorted(packages) if (v := capability.version(p))},
        "host": {"cpu": devices.cpu_model(), "logical_cpus": os.cpu_count()},
    }
    if gpu.kind == "cpu":
        info["no_gpu_reason"] = devices.no_gpu_reason()
    else:
        from core.metrics.history import gpu_clocks

        info["clocks"] = gpu_clocks(gpu.index)
    return info
