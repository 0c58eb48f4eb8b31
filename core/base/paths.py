"""Where the suite keeps built models, quantized artifacts and decoded-video caches."""

from __future__ import annotations

import os
from pathlib import Path


def _project_root() -> Path:
    """The checkout holding ``fixtures/`` and ``golden/`` (they are data, not package files).

    ``$VQBENCH_ROOT`` if set; else the tree ``core/`` was imported from (an editable install or a
    run from the checkout); else, for a non-editable install, the nearest directory at or above the
    working directory that has ``fixtures/clips/manifest.csv``. Falls back to the package's parent,
    so error messages name a concrete path."""
    env = os.environ.get("VQBENCH_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "fixtures" / "clips" / "manifest.csv").is_file():
        return here
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / "fixtures" / "clips" / "manifest.csv").is_file() and (d / "core").is_dir():
            return d
    return here


PROJECT_ROOT = _project_root()
FIXTURES_DIR = PROJECT_ROOT / "fixtures"
GOLDEN_DIR = PROJECT_ROOT / "golden"


def cache_dir() -> Path:
    """The cache root: ``$VQBENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/vqbench`` or ``~/.cache/vqbench``."""
    env = os.environ.get("VQBENCH_CACHE")
    if env:
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vqbench"
    root.mkdir(parents=True, exist_ok=True)
    return root
