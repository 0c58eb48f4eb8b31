"""Atomic writes: files and whole directories appear complete or not at all.

Used by the model builder, the quantized-artifact cache and the incremental results file, so a
crash or Ctrl-C never leaves a half-written entry that a later run mistakes for a good one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

COMPLETE_MARKER = ".vqbench-complete.json"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (one builder at a time across processes, e.g. xdist workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_marker(directory: Path) -> dict | None:
    """The completion record of a built directory, or None if it is missing or unreadable."""
    try:
        return json.loads((directory / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None


def build_directory(
    final: Path,
    build: Callable[[Path], dict],
    *,
    validate: Callable[[Path, dict], bool] | None = None,
) -> tuple[Path, bool]:
    """Return ``(final, built)``: reuse ``final`` if complete and valid, else build it atomically.

    ``build(tmpdir)`` fills a temporary sibling directory and returns a JSON-able record that is
    stored as the completion marker; the directory is then renamed into place. A directory without
    a marker (a crash mid-build) or failing ``validate`` is removed and rebuilt.
    """
    final = Path(final)
    with file_lock(final.parent / f".{final.name}.lock"):
        if final.exists():
            record = read_marker(final)
            if record is not None and (validate is None or validate(final, record)):
                return final, False
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.building."))
        try:
            record = build(tmp)
            write_text(tmp / COMPLETE_MARKER, json.dumps(record, indent=2, sort_keys=True))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final, True
