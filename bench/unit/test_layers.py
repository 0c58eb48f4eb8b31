"""The folder list is the architecture: core/ is grouped by stage, and each package's ``__init__``
docstring says which other packages of core it may import ("May import: ..."). This checks every
import of every module, lazy ones inside functions included, against those words, and that the
packages named form no circle."""

from __future__ import annotations

import ast
import re

import pytest

from core.base import paths

pytestmark = pytest.mark.cpu

CORE = paths.PROJECT_ROOT / "core"
FRONTS = {"suite", "commands", "tools"}
"""The front doors and the developer tools: they may import any stage (``core.cli`` is a module)."""


def _packages() -> dict[str, set[str] | None]:
    """Each stage package -> the packages its docstring allows (None: a front, anything)."""
    allowed: dict[str, set[str] | None] = {}
    for init in sorted(CORE.glob("*/__init__.py")):
        name = init.parent.name
        if name in FRONTS:
            allowed[name] = None
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        said = re.search(r"May import:(.*)", doc, re.S)
        assert said, f"core/{name}/__init__.py does not say what it may import ('May import: ...')"
        text = said.group(1).split("\n\n")[0]
        allowed[name] = set() if "nothing of core" in text else set(re.findall(r"``core\.(\w+)", text))
    return allowed


def _imports(path) -> set[str]:
    """The top-level core packages (or modules) a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "core":
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names if a.name != "__version__"}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("core.")}
    return found


def test_every_package_says_what_it_may_import_and_keeps_to_it():
    allowed = _packages()
    assert {"base", "inputs", "models", "plan", "metrics", "quant", "backends", "cells", "load",
            "report"} <= set(allowed)
    broken = []
    for pkg, may in allowed.items():
        if may is None:
            continue
        assert may <= set(allowed), f"core/{pkg} names packages that do not exist: {may - set(allowed)}"
        for module in sorted((CORE / pkg).rglob("*.py")):
            for other in sorted(_imports(module) - may - {pkg}):
                broken.append(f"{module.relative_to(CORE.parent)} imports core.{other}")
    assert not broken, "imports the package docstrings do not allow:\n" + "\n".join(broken)


def test_the_stages_form_no_circle():
    allowed = {k: v for k, v in _packages().items() if v is not None}
    order: list[str] = []
    while len(order) < len(allowed):
        ready = sorted(p for p, may in allowed.items() if p not in order and may <= set(order))
        assert ready, f"a circle among {sorted(set(allowed) - set(order))}"
        order += ready
    assert order[0] == "base"
