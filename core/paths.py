"""Where the suite keeps built models, quantized artifacts and decoded-video caches."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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
