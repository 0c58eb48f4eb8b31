"""Reading what is installed in another python environment (a recipe's venv, llm-compressor's own
environment): a short script run with that python prints one JSON line, so nothing is imported here."""
from __future__ import annotations

import json
from collections.abc import Iterable

_PROBE_HEAD = r"""
import importlib.metadata as md, importlib.util as u, json, sys
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
"""


def versions_probe(names: Iterable[str], then: str = "") -> str:
    """A script printing one JSON line ``{name: version or None}``; ``then`` may add keys to ``state``
    (it runs after the versions are read, with ``md``, ``u``, ``json`` and ``sys`` imported)."""
    return (_PROBE_HEAD + f"state = {{n: version(n) for n in {tuple(names)!r}}}\n" + then.strip("\n") + "\n"
            + "print(json.dumps(state))\n")


def last_json_line(text: str) -> dict:
    """The probe's answer: the last line of its output (whatever a sitecustomize printed before it)."""
    return json.loads(text.strip().splitlines()[-1])
