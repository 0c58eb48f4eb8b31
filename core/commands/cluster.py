"""``vqbench cluster``: the matrix on a Ray cluster, when it outgrows one machine.

Planned once, on a worker. The first Ray task asks for what a unit asks for (a GPU, any
``--resource``) and collects the suite there (``pytest --collect-only --unit-plan-out``): the
matrix is planned with that worker's GPU and packages, not the driver's (a driver without a GPU or
vLLM would plan other units than a GPU node), ``-m``/``-k`` deselect there, and the tests that are
left are cut into work units exactly as ``-n N`` cuts them (``core.plan.schedule``: engine groups,
longest first, dominant unjudged groups split). Each unit that has selected tests becomes a Ray
task (one GPU only when it holds GPU cells; any ``--resource``), which runs this suite's pytest on
exactly that unit's tests (``--unit-tests FILE``: node ids, never planned again; a node that did
not collect one of them refuses the unit, naming them) on the node Ray picked; goldens are checked
there, against that node's GPU class. The task streams every record back as its cell finishes (a
generator task), and the driving process writes one results file and one pytest-benchmark JSON. A
node or worker lost mid-run loses only its unit: Ray runs the task once more elsewhere
(``max_retries``) and records that were streamed twice are kept once; if it is lost again, the
unit's unanswered cells are recorded as errors saying so. A unit passes only with pytest's exit 0:
"no tests ran" (5) for a unit that was planned with tests is a failure; a matrix with no test
selected at all returns 5, as pytest does.

The cluster's nodes need this project and its dependencies installed (or a shared checkout), as
for any Ray job; ``working_dir`` ships the checkout itself when the driver is not on the cluster.
Units should run on nodes like the one they were planned on (same GPU class and backends):
``--resource`` pins them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from core.base import paths
from core.base.records import ClusterRecord, UnitRecord, UnitStartRecord, error_cell_record, lost_unit

RUNTIME_EXCLUDES = [".git", ".tox", ".bundle", ".whl", ".venv*", "venv*", "reports", "*.jsonl", ".hypothesis"]
"""What ``working_dir`` leaves behind when the checkout is shipped to a remote cluster."""


def _set_parent_death_signal() -> None:
    """The pytest child dies with the Ray worker running it (a lost worker leaves no orphan run)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _pytest(args: list[str], cwd: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [cwd, os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_set_parent_death_signal)


def _tail(log: Path, n: int = 3) -> list[str]:
    return log.read_text(errors="replace").strip().splitlines()[-n:]


def plan_units(workers: int, pytest_args: list[str], repo: str | None) -> dict[str, Any]:
    """The body of the planning Ray task: collect the suite on this worker (its GPU, its packages)
    and return the selected matrix tests with their work units for ``workers`` workers
    (``--unit-plan-out``), with pytest's exit status and the last lines of its output."""
    import socket

    cwd = repo or os.getcwd()
    with tempfile.TemporaryDirectory(prefix="vqbench-plan-") as tmp:
        out, log = Path(tmp) / "plan.json", Path(tmp) / "pytest.log"
        proc = _pytest([*pytest_args, "-p", "no:cacheprovider", "-q", "--collect-only",
                        "--unit-workers", str(workers), "--unit-plan-out", str(out)], cwd, log)
        code = proc.wait()
        plan = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
        return {**plan, "exit": code, "summary": _tail(log, 12 if code not in (0, 5) else 3),
                "node": socket.gethostname()}


def run_unit(unit: str, tests: list[str], pytest_args: list[str], repo: str | None,
             planned_on: dict[str, Any] | None = None, run_id: str | None = None) -> Iterator[Mapping[str, Any]]:
    """The body of a unit's Ray task: run pytest on exactly ``tests`` (node ids) and yield each record
    as it is written, then one ``unit`` record with the exit status and where it ran. The unit's pytest
    stamps its records with the cluster run's ``run_id``."""
    import socket

    cwd = repo or os.getcwd()
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    try:
        import ray

        held = [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - outside a Ray task (or no ray): nothing held
        held = []
    start: UnitStartRecord = {"type": "unit-start", "unit": unit, "pid": os.getpid(), "node": socket.gethostname(),
                              "gpu": gpus, "gpus_held": held, "time": time.time()}
    yield start
    with tempfile.TemporaryDirectory(prefix="vqbench-unit-") as tmp:
        results, listed, log = Path(tmp) / "unit.jsonl", Path(tmp) / "tests.json", Path(tmp) / "pytest.log"
        results.touch()
        listed.write_text(json.dumps({"unit": unit, "tests": tests, "planned_on": (planned_on or {}).get("device")}),
                          encoding="utf-8")
        t0 = time.perf_counter()
        with open(results, encoding="utf-8") as feed:
            proc = _pytest([*pytest_args, "-p", "no:cacheprovider", "-q", "--unit-tests", str(listed),
                            "--results", str(results),
                            *(["--run-id", run_id] if run_id is not None else [])], cwd, log)
            buffer = ""
            while True:
                done = proc.poll() is not None
                buffer += feed.read()
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    if line.strip():
                        rec = json.loads(line)
                        if rec.get("type") != "header":
                            yield {**rec, "unit": unit, "node": socket.gethostname()}
                if done:
                    break
                try:
                    proc.wait(timeout=0.5)  # wake up at least every half second to stream new records
                except subprocess.TimeoutExpired:
                    pass
        end: UnitRecord = {"type": "unit", "unit": unit, "exit": proc.returncode,
                           "wall_s": round(time.perf_counter() - t0, 3), "node": socket.gethostname(), "gpu": gpus,
                           "gpus_held": held, "pid": os.getpid(), "tests": len(tests), "summary": _tail(log)}
        yield end


class WorkerLost(RuntimeError):
    """The Ray worker (or node) running a unit died, and its retries too."""


class PlanningError(RuntimeError):
    """The worker asked to plan the matrix could not collect it (a usage or collection error)."""


def run(pytest_args: list[str], *, address: str | None = None, workers: int | None = None,
        resources: dict[str, float] | None = None, gpus_per_unit: float = 1.0, results_path: Path,
        benchmark_json: Path | None = None, max_retries: int = 1, ship: bool | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None, ray_init: dict[str, Any] | None = None) -> int:
    """Run the matrix of ``pytest_args`` on Ray; returns 0 when every unit passed, 5 when no test
    was selected at all."""
    import ray

    from core.base.results import ResultsWriter

    if not ray.is_initialized():
        ray.init(address=address, **(ray_init or {}), **({"runtime_env": {
            "working_dir": str(paths.PROJECT_ROOT), "excludes": RUNTIME_EXCLUDES}} if ship else {}))
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_unit and cluster_gpus < gpus_per_unit:
        raise PlanningError(f"the Ray cluster has {cluster_gpus:g} GPUs and each unit asks for {gpus_per_unit:g}: "
                            "nothing would ever start. Pass --cpu for CPU cells (units then ask for no GPU)")
    if workers is None:
        workers = max(1, int(cluster_gpus // max(gpus_per_unit, 1e-9))) if gpus_per_unit else 1
    repo = None if ship else str(paths.PROJECT_ROOT)
    # Plan once, on a worker like those that run the units (the driver's own GPU and packages do not count).
    planner = ray.remote(plan_units).options(num_gpus=gpus_per_unit, max_retries=max_retries,
                                             resources=resources or None)
    plan = ray.get(planner.remote(workers, pytest_args, repo))
    if plan["exit"] not in (0, 5) or (plan["exit"] == 0 and "tests" not in plan):
        raise PlanningError(f"collecting the matrix on {plan.get('node')} failed (pytest exit {plan['exit']}):\n  "
                            + "\n  ".join(plan.get("summary") or []))
    tests_of: dict[str, list[dict[str, Any]]] = {}
    for t in plan.get("tests", []):
        tests_of.setdefault(t["unit"] or "", []).append(t)
    order = [u["name"] for u in (plan.get("schedule") or {}).get("units", [])]
    units = [u for u in order if u in tests_of] + sorted(u for u in tests_of if u not in order)
    if not units:
        print(f"vqbench cluster: no test selected (pytest args: {' '.join(pytest_args)}; planned on "
              f"{(plan.get('planned_on') or {}).get('device', plan.get('node'))})", file=sys.stderr)
        return 5
    gpu_units = {u for u in units if any(t["device"] == "cuda" for t in tests_of[u])}
    task = ray.remote(run_unit)
    run_id = f"cluster-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    streams = {}
    for u in units:
        opts = {"num_returns": "streaming", "max_retries": max_retries, "resources": resources or None,
                "num_gpus": gpus_per_unit if u in gpu_units else 0}  # CPU cells hold no GPU
        streams[task.options(**opts).remote(u, [t["nodeid"] for t in tests_of[u]], pytest_args, repo,
                                            plan.get("planned_on"), run_id)] = u
    writer = ResultsWriter(results_path, header={
        "command": "cluster", "pytest_args": pytest_args, "workers": workers, "schedule": plan.get("schedule"),
        "planned_on": plan.get("planned_on"), "units": units, "gpu_units": sorted(gpu_units)}, run_id=run_id)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    outcome: dict[str, UnitRecord] = {}
    t0 = time.perf_counter()
    try:
        pending = dict(streams)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            gen = ready[0]
            unit = pending[gen]
            try:
                ref = next(gen)
            except StopIteration:
                pending.pop(gen)
                continue
            except Exception as exc:  # noqa: BLE001 - the unit is lost even after its retries
                pending.pop(gen)
                outcome[unit] = lost_unit(unit, f"{type(exc).__name__}: {exc}")
                continue
            try:
                rec = ray.get(ref)
            except Exception as exc:  # noqa: BLE001
                pending.pop(gen)
                outcome[unit] = lost_unit(unit, f"{type(exc).__name__}: {exc}")
                continue
            if on_record is not None:
                on_record(rec)
            if rec.get("type") == "unit":
                outcome[unit] = rec
            elif rec.get("type") == "cell":
                key = (rec["cell"], rec.get("kind", "timed"))
                if key in seen:
                    continue  # a retried task runs its unit again from the start: keep the first record
                seen[key] = rec
                writer.write(rec)
            elif rec.get("type") != "unit-start":
                writer.write(rec)
        for unit in units:
            out = outcome.get(unit) or lost_unit(unit, "no result")
            if out.get("exit") is None:
                answered = {c for c, _ in seen}
                lost = (f"unit {unit} was lost {max_retries + 1} times ({out.get('lost')}); this cell did not run")
                for t in tests_of[unit]:
                    cell = t.get("cell")
                    if cell and t["runnable"] and cell["cell"] not in answered:
                        rec = error_cell_record(cell, kind="timed", error_type=WorkerLost.__name__, error=lost)
                        rec["unit"] = unit
                        writer.write(rec)
            elif out.get("exit") == 5:
                out = {**out, "note": f"pytest ran none of the unit's {len(tests_of[unit])} tests (exit 5)"}
            writer.write(out)
            outcome[unit] = out
    finally:
        wall = time.perf_counter() - t0
        summary: ClusterRecord = {"type": "cluster", "wall_s": round(wall, 3), "units": len(units), "workers": workers,
                                  "busy_s": round(sum(o.get("wall_s") or 0 for o in outcome.values()), 3)}
        writer.write(summary)
        writer.close()
    if benchmark_json is not None:
        from core.base import results
        from core.suite.benchjson import to_document

        # This run's cells only (as pytest-benchmark writes), even when --results names a file that
        # earlier runs appended to.
        try:
            timed = results.load(results_path, run_id=run_id).speed()
        except results.ReportInputError:
            timed = []  # every unit was lost: no cell
        nodeids = {t["cell"]["cell"]: t["nodeid"] for t in plan.get("tests", []) if t.get("cell")}
        benchmark_json.write_text(json.dumps(to_document(timed, machine_info={
            "vqbench": {"cluster": {"workers": workers, "units": len(units), "run_id": run_id}}}, nodeids=nodeids),
            indent=2, default=str))
    # Only exit 0 passes: every unit was planned with tests, so "no tests ran" (5) is a failure too.
    failed = [u for u in units if (outcome.get(u) or {}).get("exit") != 0]
    _print_summary(units, outcome, wall, workers)
    return 1 if failed else 0


def _print_summary(units: list[str], outcome: Mapping[str, Mapping[str, Any]], wall: float, workers: int) -> None:
    busy = sum(o.get("wall_s") or 0 for o in outcome.values())
    print(f"vqbench cluster: {len(units)} units on {workers} workers in {wall:.1f} s "
          f"(units' own time {busy:.1f} s; {busy / wall if wall else 0:.2f}x of one worker's wall)", file=sys.stderr)
    for u in units:
        o = outcome.get(u, {})
        where = f"{o.get('node', '?')} GPU {o.get('gpu') or '-'} (held: {','.join(o.get('gpus_held') or []) or 'none'})"
        state = f"exit {o['exit']}" if o.get("exit") is not None else f"lost ({o.get('lost')})"
        print(f"  {u}: {where}, {o.get('wall_s', 0) or 0:.1f} s, {state}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vqbench cluster", description=__doc__.split("\n\n")[0],
                                epilog="Everything after -- goes to pytest, e.g. "
                                       "vqbench cluster --results out.jsonl -- bench -m gpu --gpu-model qwen2.5-vl-7b")
    p.add_argument("--address", help="Ray cluster address (default: start a local one)")
    p.add_argument("--results", required=True, type=Path, help="one JSON-lines results file for the whole run")
    p.add_argument("--benchmark-json", type=Path, help="one pytest-benchmark JSON of every timed cell")
    p.add_argument("--workers", type=int, help="plan units for this many workers (default: the cluster's GPUs)")
    p.add_argument("--resource", action="append", default=[], metavar="NAME[=AMOUNT]",
                   help="a custom Ray resource each unit needs, e.g. a GPU class the nodes were started with "
                        "(`ray start --resources='{\"sm90\": 8}'`): --resource sm90")
    p.add_argument("--cpu", action="store_true", help="no unit asks for a GPU (CPU cells, e.g. a test cluster); "
                                                      "without it only units holding GPU cells ask for one")
    p.add_argument("--max-retries", type=int, default=1, help="runs of a lost unit elsewhere (default 1)")
    p.add_argument("--ship", action="store_true", help="ship this checkout to the cluster (runtime_env working_dir)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then the pytest arguments")
    a = p.parse_args(argv)
    args = a.pytest_args[1:] if a.pytest_args[:1] == ["--"] else a.pytest_args
    resources = {}
    for r in a.resource:
        name, _, amount = r.partition("=")
        resources[name] = float(amount or 0.001)
    try:
        return run(args, address=a.address, workers=a.workers, resources=resources, gpus_per_unit=0 if a.cpu else 1,
                   results_path=a.results, benchmark_json=a.benchmark_json, max_retries=a.max_retries, ship=a.ship)
    except PlanningError as exc:
        print(f"vqbench cluster: {exc}", file=sys.stderr)
        return 4
