"""Decode functions for the decode-ahead tests: importable by spawned worker processes (kept free of
pytest and test-only imports so the workers start fast)."""

from __future__ import annotations

import os
from pathlib import Path

from core.inputs.decode import Job, decode


def marked(job: Job):
    """Note (a file in the job's folder) that this job started, then decode it."""
    path = Path(job.path)
    (path.parent / "started").mkdir(exist_ok=True)
    (path.parent / "started" / path.name).write_text(str(os.getpid()))
    return decode(job)


def crashy(job: Job):
    """A decoder that dies (as FFmpeg crashing on a hostile file would) on files named crash*."""
    if Path(job.path).name.startswith("crash"):
        os._exit(3)
    return decode(job)
