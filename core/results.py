"""Results written as they happen: one JSON line per finished cell, flushed and fsynced, so a run
killed halfway still leaves every finished cell in a file that ``vqbench report`` reads.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

SCHEMA = "vqbench.results/1"

BENCHMARK_EXTRA_KEYS = ("model", "backend", "format", "device", "gpu_class", "task", "video", "truth", "predicted",
                        "parsed", "correct", "answer", "candidate_logprobs", "timings", "tokens", "load", "memory",
                        "frames", "mode", "mode_note", "rounds_s", "roofline", "gpu_name", "status")
"""The record fields a cell puts into pytest-benchmark's ``extra_info``."""


class ResultsWriter:
    """Append-only JSON-lines writer; each record is one ``write`` of one line on an O_APPEND file."""

    def __init__(self, path: Path | str, *, header: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if header is not None:
            self.write({"type": "header", "schema": SCHEMA, **header})

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=_default) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


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
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue


def cells(path: Path | str) -> list[dict[str, Any]]:
    """Only the cell records of a results file (later records of a cell id replace earlier ones)."""
    by_id: dict[str, dict[str, Any]] = {}
    for rec in read(path):
        if rec.get("type") == "cell":
            by_id[rec["cell"]] = rec
    return list(by_id.values())
