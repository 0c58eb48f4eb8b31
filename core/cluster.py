"""``vqbench cluster``: the matrix on a Ray cluster, when it outgrows one machine.

The matrix is cut into work units exactly as ``-n N`` cuts it (``core.schedule``: engine groups,
longest first, dominant unjudged groups split). Each unit becomes a Ray task that asks for one GPU
(and, with ``--resource``, a custom resource such as a GPU class Ray was started with) and runs
this suite's pytest on that unit (``--unit NAME --unit-workers N``) on the node Ray picked; goldens
are checked there, against that node's GPU class. The task streams every record back as its cell
finishes (a generator task), and the driving process writes one results file and one
pytest-benchmark JSON. A node or worker lost mid-run loses only its unit: Ray runs the task once
more elsewhere (``max_retries``) and records that were streamed twice are kept once; if it is lost
again, the unit's unanswered cells are recorded as errors saying so.

The cluster's nodes need this project and its dependencies installed (or a shared checkout), as
for any Ray job; ``working_dir`` ships the checkout itself when the driver is not on the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core import paths

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


def run_unit(unit: str, workers: int, pytest_args: list[str], repo: str | None,
             run_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The body of a unit's Ray task: run pytest on the unit and yield each record as it is written,
    then one ``unit`` record with the exit status and where it ran. The unit's pytest stamps its
    records with the cluster run's ``run_id`` (``VQBENCH_RUN_ID``)."""
    import socket

    cwd = repo or os.getcwd()
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    yield {"type": "unit-start", "unit": unit, "pid": os.getpid(), "node": socket.gethostname(), "gpu": gpus,
           "time": time.time()}
    with tempfile.TemporaryDirectory(prefix="vqbench-unit-") as tmp:
        results = Path(tmp) / "unit.jsonl"
        results.touch()
        cmd = [sys.executable, "-m", "pytest", *pytest_args, "-p", "no:cacheprovider", "-q",
               "--unit", unit, "--unit-workers", str(workers), "--results", str(results)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [cwd, os.environ.get("PYTHONPATH")]))}
        if run_id is not None:
            env["VQBENCH_RUN_ID"] = run_id
        t0 = time.perf_counter()
        with open(Path(tmp) / "pytest.log", "w") as log, open(results, encoding="utf-8") as feed:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=_set_parent_death_signal)
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
        tail = (Path(tmp) / "pytest.log").read_text(errors="replace").strip().splitlines()[-3:]
        yield {"type": "unit", "unit": unit, "exit": proc.returncode, "wall_s": round(time.perf_counter() - t0, 3),
               "node": socket.gethostname(), "gpu": gpus, "pid": os.getpid(), "summary": tail}


class WorkerLost(RuntimeError):
    """The Ray worker (or node) running a unit died, and its retries too."""


def _cells_of_units(matrix, plan) -> dict[str, list]:
    """Every cell of the matrix, by the work unit it belongs to."""
    from core.matrix import Cell
    from core.tasks import get_task

    out: dict[str, list] = {}
    for p in matrix.plans:
        for name in matrix.settings.tasks_for(p.engine.model):
            for clip in matrix.clips_for(name):
                cell = Cell(p, get_task(name), clip)
                unit = plan.by_param.get(cell.id)
                if unit:
                    out.setdefault(unit, []).append(cell)
    return out


def parse_settings(pytest_args: list[str]):
    """The suite's settings for ``pytest_args``, parsed the way the pytest plugin parses them."""
    from core import settings

    parser = argparse.ArgumentParser(add_help=False)
    settings.add_arguments(parser.add_argument, "pytest")
    ns, _ = parser.parse_known_args(pytest_args)
    return settings.build(Path.cwd(), settings.given(ns, "pytest"))


def run(pytest_args: list[str], *, address: str | None = None, workers: int | None = None,
        resources: dict[str, float] | None = None, gpus_per_unit: float = 1.0, results_path: Path,
        benchmark_json: Path | None = None, max_retries: int = 1, ship: bool | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None, ray_init: dict[str, Any] | None = None) -> int:
    """Run the matrix of ``pytest_args`` on Ray; returns 0 when every unit passed."""
    import ray

    from core.matrix import Matrix
    from core.results import ResultsWriter

    if not ray.is_initialized():
        ray.init(address=address, **(ray_init or {}), **({"runtime_env": {
            "working_dir": str(paths.PROJECT_ROOT), "excludes": RUNTIME_EXCLUDES}} if ship else {}))
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("GPU", 0) // max(gpus_per_unit, 1e-9))) if gpus_per_unit else 1
    matrix = Matrix(parse_settings(pytest_args))
    plan = matrix.schedule(workers)
    units = plan.order()
    cells_of = _cells_of_units(matrix, plan)
    task = ray.remote(run_unit).options(num_returns="streaming", num_gpus=gpus_per_unit, max_retries=max_retries,
                                        resources=resources or None)
    repo = None if ship else str(paths.PROJECT_ROOT)
    run_id = f"cluster-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    streams = {task.remote(u, workers, pytest_args, repo, run_id): u for u in units}
    writer = ResultsWriter(results_path, header={"command": "cluster", "pytest_args": pytest_args,
                                                 "workers": workers, "schedule": plan.summary()}, run_id=run_id)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    outcome: dict[str, dict[str, Any]] = {}
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
                outcome[unit] = {"type": "unit", "unit": unit, "exit": None, "lost": f"{type(exc).__name__}: {exc}"}
                continue
            try:
                rec = ray.get(ref)
            except Exception as exc:  # noqa: BLE001
                pending.pop(gen)
                outcome[unit] = {"type": "unit", "unit": unit, "exit": None, "lost": f"{type(exc).__name__}: {exc}"}
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
            out = outcome.get(unit) or {"type": "unit", "unit": unit, "exit": None, "lost": "no result"}
            if out.get("exit") is None:
                from core.runner import error_record

                answered = {c for c, _ in seen}
                lost = WorkerLost(f"unit {unit} was lost {max_retries + 1} times ({out.get('lost')}); this cell "
                                  "did not run")
                for cell in cells_of.get(unit, []):
                    if cell.id not in answered and cell.plan.verdict.runnable:
                        writer.write({**error_record(cell, lost, kind="timed"), "unit": unit})
            writer.write(out)
    finally:
        wall = time.perf_counter() - t0
        writer.write({"type": "cluster", "wall_s": round(wall, 3), "units": len(units), "workers": workers,
                      "busy_s": round(sum(o.get("wall_s") or 0 for o in outcome.values()), 3)})
        writer.close()
    if benchmark_json is not None:
        from core import results
        from core.suite.benchjson import to_document

        # This run's cells only (as pytest-benchmark writes), even when --results names a file that
        # earlier runs appended to.
        try:
            timed = results.load(results_path, run_id=run_id).speed()
        except results.ReportInputError:
            timed = []  # every unit was lost or deselected: no cell
        benchmark_json.write_text(json.dumps(to_document(timed, machine_info={
            "vqbench": {"cluster": {"workers": workers, "units": len(units), "run_id": run_id}}}),
            indent=2, default=str))
    # exit 5: pytest collected nothing for the unit (its cells are deselected, e.g. by -m)
    failed = [u for u in units if (outcome.get(u) or {}).get("exit") not in (0, 5)]
    _print_summary(units, outcome, wall, workers)
    return 1 if failed else 0


def _print_summary(units: list[str], outcome: dict[str, dict[str, Any]], wall: float, workers: int) -> None:
    busy = sum(o.get("wall_s") or 0 for o in outcome.values())
    print(f"vqbench cluster: {len(units)} units on {workers} workers in {wall:.1f} s "
          f"(units' own time {busy:.1f} s; {busy / wall if wall else 0:.2f}x of one worker's wall)", file=sys.stderr)
    for u in units:
        o = outcome.get(u, {})
        where = f"{o.get('node', '?')} GPU {o.get('gpu') or '-'}"
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
    p.add_argument("--cpu", action="store_true", help="units ask for no GPU (CPU cells, e.g. a test cluster)")
    p.add_argument("--max-retries", type=int, default=1, help="runs of a lost unit elsewhere (default 1)")
    p.add_argument("--ship", action="store_true", help="ship this checkout to the cluster (runtime_env working_dir)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then the pytest arguments")
    a = p.parse_args(argv)
    args = a.pytest_args[1:] if a.pytest_args[:1] == ["--"] else a.pytest_args
    resources = {}
    for r in a.resource:
        name, _, amount = r.partition("=")
        resources[name] = float(amount or 0.001)
    return run(args, address=a.address, workers=a.workers, resources=resources, gpus_per_unit=0 if a.cpu else 1,
               results_path=a.results, benchmark_json=a.benchmark_json, max_retries=a.max_retries, ship=a.ship)
