"""Results on disk, written as they happen and read in one place.

Writing: one JSON line per record, flushed and fsynced, so a run killed halfway still leaves every
finished cell in a file that ``vqbench report`` reads. Reading: ``load`` takes a results file or a
pytest-benchmark JSON and returns ``Results``, which keeps timed and scoring records apart (see
``core.base.records``): latency comes from timed records only, answers from timed records or, where a
cell was never timed, its scoring record.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.base.errors import VqbenchError
from core.base.records import CellRecord, HeaderRecord, kind_of

SCHEMA = "vqbench.results/2"
CellKey = tuple[str, str, str, str, str, str, str]


class ReportInputError(VqbenchError):
    """A results file is missing, unreadable, or holds no benchmark cells."""


def new_run_id() -> str:
    """An id for one run (a pytest session with its workers, one ``vqbench run``): stamped on every record
    it writes, so one results file can hold several runs apart."""
    import time

    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"


class ResultsWriter:
    """Append-only JSON-lines writer; each record is one ``write`` of one line on an O_APPEND file,
    so several processes (xdist workers) can share one file without tearing each other's lines.

    ``run_id`` is stamped on the header and every record that has none: a results file reused by
    several sessions keeps each session's records apart (``load(path, run_id=...)``)."""

    def __init__(self, path: Path | str, *, header: HeaderRecord | None = None, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if _torn(self.path):  # a run killed mid-line: end that line, or the next record would join it
            os.write(self._fd, b"\n")
        if header is not None:
            first: HeaderRecord = {"type": "header", "schema": SCHEMA}
            first.update(header)
            self.write(first)

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (a ``core.base.records`` kind), stamped with the writer's run id."""
        if self.run_id is not None and "run_id" not in record:
            record = {**record, "run_id": self.run_id}
        line = (json.dumps(record, sort_keys=True, default=_default) + "\n").encode()
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"{self.path}: results writer is closed")
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _torn(path: Path) -> bool:
    """The file is non-empty and its last line has no newline."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def read(path: Path | str) -> Iterator[dict[str, Any]]:
    """Records of a results file; a torn last line (a killed run) is skipped, not an error."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


# --- identity and latency of a cell --------------------------------------------------------------

def gpu_class_of(rec: Mapping[str, Any]) -> str:
    """The class of the hardware a record ran on (cpu, sm90, sm100 ...); '' where an old record
    of a GPU cell does not say."""
    return str(rec.get("gpu_class") or ("cpu" if rec.get("device") == "cpu" else ""))


def cell_key(rec: Mapping[str, Any]) -> CellKey:
    """What identifies a cell across runs: (model, backend, format, device, GPU class, task, video).
    The GPU class keeps an H100 and a B200 measurement of one cell apart when runs are merged
    (``vqbench report a b``, a Ray cluster of mixed nodes)."""
    return (str(rec.get("model")), str(rec.get("backend")), str(rec.get("format")), str(rec.get("device")),
            gpu_class_of(rec), str(rec.get("task")), str(rec.get("video")))


def rounds_of(rec: Mapping[str, Any]) -> list[float]:
    """The per-round seconds of a timed record (results file or pytest-benchmark ``stats.data``)."""
    rounds = rec.get("rounds_s") or (rec.get("stats") or {}).get("data") or []
    return [float(x) for x in rounds if x is not None]


def latency_s(rec: Mapping[str, Any]) -> float | None:
    """Per-video latency of a timed record: the median of its timed rounds."""
    rounds = rounds_of(rec)
    return statistics.median(rounds) if rounds else None


# --- reading runs --------------------------------------------------------------------------------

@dataclass
class Results:
    """The records of one or more runs, by kind. Each cell's records are replayed oldest first (by
    their ``time``; in the order read where a record has none) and the newest outcome wins: a
    success replaces an earlier error and the earlier record of its own kind only (a scoring re-run
    never replaces a timed measurement); an error replaces every earlier record of the cell, so an
    older run's latency or answer can never stand in for a cell whose latest attempt failed."""

    timed: dict[CellKey, CellRecord] = field(default_factory=dict)
    scoring: dict[CellKey, CellRecord] = field(default_factory=dict)
    errors: dict[CellKey, CellRecord] = field(default_factory=dict)
    engines: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    load: list[dict[str, Any]] = field(default_factory=list)
    """Load-scenario records (``core.load``), as written."""
    headers: list[dict[str, Any]] = field(default_factory=list)
    _machine_class: str = field(default="", repr=False, compare=False)
    """The GPU class of the machine named by the last header read (a file's own run)."""
    _history: dict[CellKey, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    """Every record of a cell in the order read (``timed``/``scoring``/``errors`` are replayed from it)."""

    def add(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type", "cell")
        if kind == "cell":
            if not gpu_class_of(rec) and self._machine_class:
                # written before error records named their GPU class: the class of the run's machine
                rec = {**rec, "gpu_class": self._machine_class}
            key = cell_key(rec)
            self._history.setdefault(key, []).append(rec)
            self._replay(key)
        elif kind == "engine":
            self.engines.append(rec)
        elif kind == "drift":
            self.drift.append(rec)
        elif kind == "session":
            self.sessions.append(rec)
        elif kind == "load":
            self.load.append(rec)
        elif kind == "header":
            self.headers.append(rec)
            self._machine_class = str((rec.get("machine") or {}).get("gpu_class") or "")

    def _replay(self, key: CellKey) -> None:
        for book in (self.timed, self.scoring, self.errors):
            book.pop(key, None)
        # The ignores below: a record read back is a plain dict; add() filed it here as a cell
        # (type "cell"), so the books hold it as the CellRecord it was written as.
        for rec in _chronological(self._history[key]):
            if rec.get("status", "ok") != "ok":
                self.timed.pop(key, None)
                self.scoring.pop(key, None)
                self.errors[key] = rec  # type: ignore[assignment]
            else:
                self.errors.pop(key, None)
                (self.timed if kind_of(rec) == "timed" else self.scoring)[key] = rec  # type: ignore[assignment]

    def extend(self, other: Results) -> None:
        for key, recs in other._history.items():
            self._history.setdefault(key, []).extend(recs)
            self._replay(key)
        for attr in ("engines", "drift", "sessions", "headers", "load"):
            getattr(self, attr).extend(getattr(other, attr))

    def speed(self) -> list[CellRecord]:
        """Timed records only: the cells whose latency may be reported."""
        return list(self.timed.values())

    def answers(self) -> list[CellRecord]:
        """One answer per cell: its timed record, else its scoring record, else its error."""
        out = {**self.errors, **self.scoring, **self.timed}
        return list(out.values())

    def __bool__(self) -> bool:
        return bool(self.timed or self.scoring or self.errors or self.load)


def _chronological(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A cell's records oldest first: by ``time`` when every one has it (ties keep the order read),
    else in the order read (a pytest-benchmark JSON's cells carry no time)."""
    if all(isinstance(r.get("time"), (int, float)) for r in recs):
        return sorted(recs, key=lambda r: r["time"])  # stable: equal times keep the order read
    return list(recs)


def from_records(records: Iterable[dict[str, Any]]) -> Results:
    res = Results()
    for rec in records:
        res.add(rec)
    return res


def load(path: Path | str, *, run_id: str | None = None) -> Results:
    """The records of a vqbench results file (JSON lines) or a pytest-benchmark JSON, auto-detected;
    with ``run_id``, only the records one session (or ``vqbench cluster`` run) wrote into a results
    file that other sessions appended to as well (a pytest-benchmark JSON holds one session)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read results ({exc.strerror}); pass a file written by "
                               "'pytest --results FILE' or '--benchmark-json FILE'") from None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "benchmarks" in doc:
        res = from_records(_from_benchmark_json(doc))
    else:
        res = from_records(r for r in read(path) if run_id is None or r.get("run_id") == run_id)
    if not res:
        raise ReportInputError(
            f"{path}: no benchmark cells or load records found (is it empty, a truncated pytest-benchmark JSON, "
            "or another kind of file?); write one with 'pytest bench/test_cells.py --results FILE' or "
            "'--benchmark-json FILE'")
    return res


def load_many(paths: Iterable[Path | str]) -> Results:
    """Several results files as one run (shards, or the workers of one session)."""
    merged = Results()
    for p in paths:
        merged.extend(load(p))
    if not merged:
        raise ReportInputError("no results files given; pass at least one results or pytest-benchmark JSON file")
    return merged


def _from_benchmark_json(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    gpu_class = ((doc.get("machine_info") or {}).get("vqbench") or {}).get("gpu_class")
    for bench in doc.get("benchmarks") or []:
        info = bench.get("extra_info") or {}
        if not info.get("model"):
            continue  # a benchmark that is not a vqbench cell
        rec: dict[str, Any] = {"type": "cell", "status": "ok", "cell": bench.get("param") or bench.get("name"),
                               **info, "kind": "timed"}
        if gpu_class and not rec.get("gpu_class"):
            rec["gpu_class"] = gpu_class
        if bench.get("stats"):
            rec["stats"] = bench["stats"]
            if not rec.get("rounds_s") and bench["stats"].get("data"):
                rec["rounds_s"] = list(bench["stats"]["data"])
        yield rec


def load_sessions(path: Path | str, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """The session records of a results file (one per process that ran cells); with ``run_id``, of
    that run only."""
    return [r for r in read(path) if r.get("type") == "session" and (run_id is None or r.get("run_id") == run_id)]
