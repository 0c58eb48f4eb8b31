"""The session's state: settings, the planned matrix, the engine pool, caches and the results file.

Cells run through ``run`` (timed, by ``bench/test_cells.py``), ``answer`` (a cell's answer for
goldens and drift: the timed record when the cell was timed, else one untimed scoring run) and
``rerun`` (a fresh untimed generation, for the reference's run-to-run check). Timed and scoring
records are kept apart, here and in the results file (``core.base.records``).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.base import timeline
from core.base.errors import DoesNotFit
from core.base.records import CellRecord, DriftRecord, SessionRecord
from core.plan import settings as settings_mod


class VqbenchState:
    """Session state shared by the plugin's hooks and fixtures."""

    def __init__(self, config: pytest.Config) -> None:
        from core.base.results import new_run_id
        from core.plan.matrix import Matrix
        from core.suite import xdist

        handed = xdist.from_controller(config)  # on an xdist worker: the controller's results file and run id
        given = settings_mod.given(config.option, "pytest")
        if handed.get("results"):
            given["results"] = handed["results"]
        self.settings = settings_mod.build(Path(str(config.rootpath)), given)
        self.temporary_results: Path | None = None
        """The controller's own results file when none was given: removed once its summary is written."""
        if xdist.is_controller(config) and not self.settings.results:
            self.settings = replace(self.settings, results=xdist.temporary_results())
            self.temporary_results = Path(self.settings.results)
        self.config = config
        self.worker = xdist.worker_id(config) or "main"
        self.matrix = Matrix(self.settings, updating_goldens=_updating_goldens(config))
        self.pool = None
        self.frames = None
        self.writer = None
        self.run_id: str = (handed.get("run_id") or config.getoption("vqbench_run_id", None)
                            or new_run_id())
        """One id for the whole run (the controller hands it to its xdist workers; ``vqbench cluster``
        gives each unit's pytest its own with ``--run-id``): the latency history's run, and the id
        stamped on every record this session writes (the merged --benchmark-json takes only these)."""
        self.timed: dict[str, CellRecord] = {}
        self.scoring: dict[str, CellRecord] = {}
        self.errors: dict[str, CellRecord] = {}
        self.load_key: tuple[str, str] | None = None
        self.load = None
        self.load_failures: dict[tuple[str, str], str] = {}
        self.load_records: list[dict[str, Any]] = []
        self.session: SessionRecord | None = None
        """This process's session record, once ``finish`` wrote it."""

    @property
    def plans(self):
        return self.matrix.plans

    def clips_for(self, task: str):
        return self.matrix.clips_for(task)

    def schedule(self, workers: int):
        return self.matrix.schedule(workers)

    def unit_of_param(self, param: str, workers: int) -> str | None:
        return self.matrix.unit_of_param(param, workers)

    def runtime(self):
        """The engine pool, frame cache and results writer (created on first use)."""
        if self.pool is None:
            from core.base.results import ResultsWriter
            from core.cells.runner import EnginePool, FrameCache
            from core.suite.xdist import machine_info

            self.writer = (ResultsWriter(self.settings.results, header={
                "settings": self.settings.to_dict(), "machine": machine_info(), "worker": self.worker},
                run_id=self.run_id) if self.settings.results else None)
            self.pool, self.frames = EnginePool(self.settings, on_event=self._write), FrameCache()
        return self.pool, self.frames

    def _write(self, record: Mapping[str, Any]) -> None:
        if self.writer is not None:
            self.writer.write(record)

    def save_drift(self, rec: DriftRecord) -> None:
        """Record a drift verdict (``core.metrics.judge``) in the results file (reports read it)."""
        self._write(rec)

    def _save(self, rec: CellRecord) -> CellRecord:
        book = self.errors if rec["status"] != "ok" else self.timed if rec["kind"] == "timed" else self.scoring
        book[rec["cell"]] = rec
        if rec["status"] == "ok":
            self.errors.pop(rec["cell"], None)
        self._write(rec)
        return rec

    def _execute(self, cell, *, timer=None) -> CellRecord:
        from core.cells.runner import error_record, run_cell

        pool, frames = self.runtime()
        try:
            rec = run_cell(cell, pool, frames, self.settings, timer=timer)
            if timer is not None and self.settings.history:
                from core.metrics.history import History, judge_record

                verdict = judge_record(History(self.settings.history), rec, run_id=self.run_id)
                if verdict is not None:
                    rec["history"] = verdict.to_dict()
        except DoesNotFit as exc:  # refused before loading (core.plan.estimate.plan_budget): a skip, like any verdict
            pytest.skip(str(exc))
        except BaseException as exc:
            if is_oom(exc):
                free_after_oom()
            if isinstance(exc, Exception):
                self._save(error_record(cell, exc, kind="timed" if timer else "scoring"))
            raise
        return self._save(rec)

    def run(self, cell, *, timer) -> CellRecord:
        """Time ``cell`` over rounds (``timer``, e.g. pytest-benchmark) and record it as timed."""
        return self._execute(cell, timer=timer)

    def answer(self, cell) -> CellRecord:
        """The cell's answer: its timed record if it was timed, else one untimed scoring run (cached).
        A failed cell re-raises nothing: its error record is returned."""
        for book in (self.timed, self.scoring, self.errors):
            if cell.id in book:
                return book[cell.id]
        try:
            with timeline.phase("scoring"):
                return self._execute(cell)
        except Exception:  # noqa: BLE001 - recorded as an error record by _execute
            return self.errors[cell.id]

    def rerun(self, cell) -> CellRecord:
        """A fresh untimed generation of ``cell`` (never replaces its timed record)."""
        try:
            with timeline.phase("scoring"):
                return self._execute(cell)
        except Exception:  # noqa: BLE001
            return self.errors[cell.id]

    def load_session(self, plan, task):
        """The engine's server under load (``core.load.session``), started once per (engine, task); the
        in-process engine gives its memory back first. A server that failed to start fails the engine's
        other scenarios at once, with the same reason."""
        from core.inputs.sampling import anchor
        from core.load.session import LoadSession

        key = (plan.engine.id, task.name)
        if key in self.load_failures:
            raise RuntimeError(self.load_failures[key])
        if self.load_key == key and self.load is not None:
            return self.load
        self.close_load()
        pool, frames = self.runtime()
        pool.release()
        logs = (Path(self.settings.results).resolve().parent if self.settings.results
                else Path(str(self.config.rootpath)) / "reports") / "server-logs"
        session = LoadSession(plan, task, self.settings, clips=self.clips_for(task.name),
                              frames_for=lambda clip: frames.get(clip, anchor(self.settings.sampling(), clip)),
                              log_dir=logs)
        try:
            session.start()
        except Exception as exc:
            self.load_failures[key] = f"the vLLM server for {plan.engine.id} could not serve the load: {exc}"
            raise
        self.load_key, self.load = key, session
        return session

    def save_load(self, rec: dict[str, Any]) -> None:
        """Write a load record; with --history, judge its throughput figures first (``core.load.gate``) and
        keep it for the history at the session's end."""
        if self.settings.history and rec.get("status") == "ok":
            from core.load import gate
            from core.metrics.history import History

            rec["history"] = gate.judge_record(History(self.settings.history), rec, run_id=self.run_id)
            self.load_records.append(rec)
        self._write(rec)

    def close_load(self) -> None:
        load, self.load, self.load_key = self.load, None, None
        if load is not None:
            load.close()

    def close(self) -> None:
        self.close_load()
        if self.pool is not None:
            self.pool.release()
        if self.writer is not None:
            self.writer.close()

    def finish(self, ledger: dict[str, Any]) -> SessionRecord:
        """Close the engine, add this process's timed cells to the latency history, write its
        session record, close the results file."""
        self.close_load()
        if self.pool is not None:
            self.pool.release()
        if self.settings.history and self.timed:
            from core.metrics.history import History, add_records

            add_records(History(self.settings.history), list(self.timed.values()), run_id=self.run_id)
        if self.settings.history and self.load_records:
            from core.load import gate
            from core.metrics.history import History

            gate.add_records(History(self.settings.history), self.load_records, run_id=self.run_id)
        rec: SessionRecord = {
            "type": "session", "worker": self.worker, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "wall_s": ledger["wall_s"], "phases": ledger["phases"], "unattributed_s": ledger["unattributed_s"],
            "loads": dict(self.pool.loads) if self.pool else {}, "engines": self.pool.history if self.pool else []}
        self._write(rec)
        self.close()
        self.session = rec
        return rec

    def session_summary(self) -> list[str]:
        """This process's time accounting and loads (the terminal summary of a plain run)."""
        rec = self.session
        if not rec or not rec["loads"]:
            return []
        return [*timeline.render(rec), *_loads_lines([rec])]

    def sessions_summary(self) -> list[str]:
        """Under xdist, on the controller: every worker's engines, loads and time (from the results file)."""
        from core.base import results

        if not self.settings.results or not Path(self.settings.results).exists():
            return []
        sessions = results.load_sessions(self.settings.results, run_id=self.run_id)
        if not sessions:
            return []
        lines = []
        for s in sorted(sessions, key=lambda s: s.get("worker", "")):
            busy = sum(e["wall_s"] for e in s.get("engines", []))
            lines.append(f"{s.get('worker')} (GPU {s.get('gpu') or '-'}): {len(s.get('engines', []))} engines, "
                         f"busy {busy:.1f} s of {s['wall_s']:.1f} s: "
                         + ", ".join(f"{e['engine']} {e['wall_s']:.1f} s" for e in s.get("engines", [])))
        walls = [s["wall_s"] for s in sessions]
        lines.append(f"workers: {len(sessions)}; longest {max(walls):.1f} s, shortest {min(walls):.1f} s "
                     f"(idle at the end: {sum(max(walls) - w for w in walls):.1f} worker-seconds)")
        merged: dict[str, float] = {}
        for s in sessions:
            for k, v in s["phases"].items():
                merged[k] = merged.get(k, 0.0) + v
        total = {"wall_s": sum(walls), "phases": merged, "unattributed_s": sum(s["unattributed_s"] for s in sessions)}
        return lines + ["time over all workers:", *timeline.render(total), *_loads_lines(sessions)]


def _loads_lines(sessions: Sequence[Mapping[str, Any]]) -> list[str]:
    loads: dict[str, int] = {}
    for s in sessions:
        for k, v in s["loads"].items():
            loads[k] = loads.get(k, 0) + v
    extra = {k: v for k, v in loads.items() if v > 1}
    line = f"engine loads: {sum(loads.values())} for {len(loads)} engines"
    return [line + (f"; loaded more than once: {extra}" if extra else " (each loaded once)")]


def _updating_goldens(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "update_snapshots", False))


def is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ in {"OutOfMemoryError", "OutOfMemory"} or "out of memory" in str(exc).lower()


def free_after_oom() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
