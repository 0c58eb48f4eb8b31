"""Safety defaults applied by the CLI and the pytest plugin: offline unless the user opts in.

vqbench never downloads models or data: every ``from_pretrained`` passes ``local_files_only``, and
the hub libraries are put in offline mode so a mistake cannot reach the network either. Every model
``from_pretrained`` passes ``use_safetensors=use_safetensors(allow_pickle)``.
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


def use_safetensors(allow_pickle: bool) -> bool | None:
    """``from_pretrained``'s ``use_safetensors``: True (safetensors only) unless ``--allow-pickle``,
    then None. ``--allow-pickle`` allows a pickle checkpoint, it never requires one: False would make
    transformers look for ``pytorch_model.bin`` only and fail on every safetensors checkpoint. With
    None, transformers (5.x ``_get_resolved_checkpoint_files``) takes ``model.safetensors`` (or its
    index) first and a ``.bin`` only when there is none, so safetensors still win when a directory
    holds both (bench/unit/test_checkpoint_loading.py holds transformers to that)."""
    return None if allow_pickle else True
