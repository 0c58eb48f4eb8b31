"""docs/adding-an-engine.md against the code: every file and ``module:name`` it names exists, its code
is valid, it names every field of the catalog entry, and the entry it shows, added at run time, is
everywhere the page says the catalog reaches (marker, options, verdicts, schedule, report, formats)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import re
import shutil
from types import SimpleNamespace

import pytest

from core.base import paths
from core.plan import capability, catalog
from core.plan.catalog import BackendInfo, EngineCosts
from core.plan.formats import FORMATS, Route, get_format

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]

PAGE = paths.PROJECT_ROOT / "docs" / "adding-an-engine.md"
TEXT = PAGE.read_text(encoding="utf-8")
NEW_FILE = "core/backends/sglang.py"
"""The one file the page tells you to write (it does not exist here)."""
NEW_MODULE = "core.backends.sglang"

_FENCED = re.compile(r"```python\n(.*?)```", re.S)
_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"^[\w.-]+(/[\w.-]+)*\.(py|md|toml|ini)$")
_SYMBOL = re.compile(r"^core(\.\w+)*:[A-Za-z_][\w.]*$")


def _blocks() -> list[str]:
    return _FENCED.findall(TEXT)


def _spans() -> list[str]:
    return _SPAN.findall(_FENCED.sub("", TEXT))


def _block(start: str) -> str:
    (block,) = [b for b in _blocks() if b.lstrip().startswith(start)]
    return block


def page_entry() -> BackendInfo:
    """The catalog entry the page shows, evaluated."""
    return eval(_block("BackendInfo("), {"BackendInfo": BackendInfo, "EngineCosts": EngineCosts})


def page_route() -> tuple[str, Route]:
    """The route the page shows (``"name": Route(...)``), evaluated."""
    ((name, route),) = eval("{" + _block('"sglang": Route(') + "}", {"Route": Route}).items()
    return name, route


def _resolve(symbol: str) -> None:
    """Import ``module:attr.attr``; a last part may be a dataclass field without a default."""
    module, attrs = symbol.split(":")
    obj = importlib.import_module(module)
    *owners, last = attrs.split(".")
    for part in owners:
        obj = getattr(obj, part)
    if hasattr(obj, last):
        return
    assert dataclasses.is_dataclass(obj) and last in {f.name for f in dataclasses.fields(obj)}, symbol


def test_every_file_the_page_names_exists():
    paths_named = {s for s in _spans() if _PATH.match(s) and ("/" in s or s in ("pyproject.toml", "tox.ini"))}
    assert NEW_FILE in paths_named and "core/plan/catalog.py" in paths_named and "core/plan/formats.py" in paths_named
    missing = sorted(p for p in paths_named - {NEW_FILE} if not (paths.PROJECT_ROOT / p).exists())
    assert not missing, missing
    assert not (paths.PROJECT_ROOT / NEW_FILE).exists()  # else this page is an example of nothing


def test_every_symbol_the_page_names_exists():
    symbols = {s for s in _spans() if _SYMBOL.match(s) and not s.startswith(NEW_MODULE)}
    assert {"core.plan.catalog:BackendInfo", "core.backends.base:Backend", "core.plan.catalog:PACKAGES"} <= symbols
    for symbol in sorted(symbols):
        _resolve(symbol)
    for command in re.findall(r"`python -m ([\w.]+)", TEXT):
        assert importlib.util.find_spec(command) is not None, command
    for section in re.findall(r"`\[([\w.:-]+)\]`", TEXT):  # pyproject.toml and tox.ini sections it points at
        where = paths.PROJECT_ROOT / ("tox.ini" if section.startswith("testenv") else "pyproject.toml")
        assert f"[{section}]" in where.read_text(encoding="utf-8") or section == "testenv:sglang", section


def test_the_page_names_every_field_of_a_catalog_entry():
    """A field added to BackendInfo is a fact a new engine may have to declare: the page says what it is."""
    spans = set(_spans()) | set(re.findall(r"\b(\w+)=", _block("BackendInfo(")))
    assert {f.name for f in dataclasses.fields(BackendInfo)} <= spans, \
        {f.name for f in dataclasses.fields(BackendInfo)} - spans


def test_the_backend_sketch_is_a_complete_backend():
    from core.backends.base import Backend

    namespace: dict = {"__name__": NEW_MODULE}
    # defines only: the engine itself is imported inside the methods
    exec(compile(_block('"""SGLang'), NEW_FILE, "exec"), namespace)
    (cls,) = [v for v in namespace.values() if inspect.isclass(v) and issubclass(v, Backend) and v is not Backend]
    assert not inspect.isabstract(cls) and cls.name == page_entry().name
    assert page_entry().target == f"{NEW_MODULE}:{cls.__name__}"
    tree = ast.parse(_block('"""SGLang'))
    top_level = {a.name.split(".")[0] for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in n.names} | {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert "sglang" not in top_level  # heavy imports stay inside the methods


@pytest.fixture
def engine(monkeypatch):
    """The page's catalog entry and its bf16 route, added at run time."""
    entry = page_entry()
    name, route = page_route()
    assert name == entry.name and name not in catalog.BACKENDS
    monkeypatch.setitem(catalog.BACKENDS, entry.name, entry)
    bf16 = FORMATS["bf16"]
    monkeypatch.setitem(FORMATS, "bf16", dataclasses.replace(bf16, backends={**bf16.backends, name: route}))
    return entry


def test_a_catalog_entry_gives_a_marker_and_the_options(engine):
    from core import cli
    from core.plan import settings
    from core.suite.plugin import markers

    assert engine.description in markers()[engine.name]
    assert engine.name in settings.Settings().backends
    (backends,) = [f for f in settings.options() if f.name == "backends"]
    assert engine.name in backends.metadata["option"].help_text()
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser.add_argument, "pytest")
    assert engine.name in parser.format_help()
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert engine.name in sub.choices["run"].format_help()


def test_a_catalog_entry_and_a_route_give_verdicts_and_the_rest_defaults(engine, tmp_path, monkeypatch):
    from core.plan import device
    from core.plan.matrix import plan_engines
    from core.plan.schedule import engine_costs
    from core.plan.settings import build
    from core.report.html import _backend_color

    h100 = device.DeviceInfo(kind="cuda", name="NVIDIA H100", capability=(9, 0), memory_gib=80)
    assert capability.check(engine.name, get_format("bf16"), h100, check_packages=False).runnable
    cpu = capability.check(engine.name, get_format("bf16"), device.CPU, check_packages=False)
    assert cpu.structural and cpu.reason == engine.cpu
    assert "has no path for fp8" in capability.check(engine.name, get_format("fp8"), h100).reason
    # its package, a PackageInfo beside the entry in the catalog
    assert not set(engine.packages) <= set(catalog.PACKAGES)
    monkeypatch.setitem(catalog.PACKAGES, "sglang",
                        catalog.PackageInfo("sglang", ("sglang",), "pip install 'vqbench[sglang]'"))
    try:
        assert "needs 'sglang', which is not installed: pip install 'vqbench[sglang]'" in \
            capability.check(engine.name, get_format("bf16"), h100).reason
    finally:
        capability.installed.cache_clear()
        capability.version.cache_clear()

    monkeypatch.setattr(device, "primary", lambda: device.CPU)
    s = build(tmp_path, {"models": ["tiny"], "gpu_models": ["tiny"], "backends": [engine.name],
                         "formats": ["bf16"]}, env={})
    plans = {p.engine.id: p for p in plan_engines(s)}
    assert plans["tiny-sglang-bf16-cpu"].verdict.structural
    assert plans["tiny-sglang-bf16-cuda"].marks == ["gpu", engine.name]

    plan = SimpleNamespace(engine=SimpleNamespace(backend=engine.name, device="cuda", id="e"),
                           spec=SimpleNamespace(approx_params_b=1.0), fmt=SimpleNamespace(quantized=False),
                           verdict=SimpleNamespace(runnable=True, mode="native"))
    rounds = SimpleNamespace(rounds=3, warmup_rounds=1)
    d = EngineCosts()
    assert engine_costs(plan, 2, rounds) == pytest.approx(
        (d.load_s + d.load_s_per_b, 2 * 4 * (d.answer_s + d.answer_s_per_b)))
    assert _backend_color(engine.name) is None


def test_a_vit_format_names_why_an_engine_that_did_not_declare_it_cannot_run_it(engine, monkeypatch):
    fp8 = FORMATS["fp8"]
    monkeypatch.setitem(FORMATS, "fp8", dataclasses.replace(
        fp8, backends={**fp8.backends, engine.name: Route(how="checkpoint", quantization="modelopt")}))
    vit = get_format("fp8+vit")
    assert engine.name not in vit.backends and vit.not_supported[engine.name] == catalog.NO_QUANTIZED_VISION
    assert engine.name in get_format("fp8").backends


CONFTEST = '''
import dataclasses

from core.plan import catalog
from core.plan.catalog import BackendInfo, EngineCosts
from core.plan.formats import FORMATS, Route

ENTRY = {entry}
catalog.BACKENDS[ENTRY.name] = ENTRY
FORMATS["bf16"] = dataclasses.replace(FORMATS["bf16"], backends={{**FORMATS["bf16"].backends, {route}}})
'''


def test_a_pytest_session_selects_the_new_engine_by_its_marker(pytester):
    """The page's entry and route (a conftest adds them before the plugin configures): its cells carry its
    marker, which --strict-markers accepts because the plugin registered it from the catalog."""
    shutil.copy(paths.PROJECT_ROOT / "bench" / "test_cells.py", pytester.path / "test_cells.py")
    pytester.makeconftest(CONFTEST.format(entry=_block("BackendInfo(").strip(),
                                          route=_block('"sglang": Route(').strip()))
    res = pytester.runpytest_subprocess("test_cells.py", "-p", "no:cacheprovider", "-p", "vqbench", "--strict-markers",
                                        "-m", "gpu and sglang", "--collect-only", "-q", "--model", "tiny",
                                        "--gpu-model", "tiny", "--backend", "hf", "--backend", "sglang",
                                        "--format", "bf16", "--max-videos", "2")
    assert res.ret == 0, res.outlines
    collected = [line for line in res.outlines if "::" in line]
    assert collected == [f"test_cells.py::test_cell[tiny-sglang-bf16-cuda-anomaly-normal_0{i}]" for i in (1, 2)], \
        res.outlines
    res = pytester.runpytest_subprocess("--markers", "-p", "no:cacheprovider", "-p", "vqbench")
    res.stdout.fnmatch_lines(["@pytest.mark.sglang: a matrix test of the sglang backend: SGLang offline engine"])
