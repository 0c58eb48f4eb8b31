"""Safety defaults applied by the CLI and the pytest plugin: offline unless the user opts in.

vqbench never downloads models or data: every ``from_pretrained`` passes ``local_files_only``, and
the hub libraries are put in offline mode so a mistake cannot reach the network either.
Set ``VQBENCH_ALLOW_HUB=1`` to leave the hub libraries' own settings alone.
"""

from __future__ import annotations

import os

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def enforce_offline() -> None:
    """Put huggingface_hub / transformers / datasets in offline mode (unless VQBENCH_ALLOW_HUB=1)."""
    if os.environ.get("VQBENCH_ALLOW_HUB") == "1":
        return
    for var in OFFLINE_VARS:
        os.environ.setdefault(var, "1")
