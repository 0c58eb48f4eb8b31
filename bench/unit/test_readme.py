"""The README and docs/: generated blocks (options, support matrix) match the code that generates them, every
relative link resolves, and every command the README shows exists."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex

import pytest

from core.base import paths
from core.tools import readme

pytestmark = pytest.mark.cpu

ROOT = paths.PROJECT_ROOT
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _rel(path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", list(readme.FILES), ids=_rel)
def test_generated_readme_blocks_are_current(path):
    text = path.read_text(encoding="utf-8")
    assert readme.render(text, readme.FILES[path], _rel(path)) == text, \
        f"{_rel(path)} is stale: run `python -m core.tools.readme`"


def test_every_generated_block_lives_in_one_file():
    placed = [name for names in readme.FILES.values() for name in names]
    assert sorted(placed) == sorted(readme.BLOCKS)
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for name in readme.BLOCKS:
            if f"<!-- {name} -->" in text:
                assert name in readme.FILES.get(page, ()), \
                    f"{_rel(page)} has a <!-- {name} --> block no one regenerates"


def test_every_option_is_in_the_readme_with_its_flags():
    from core.plan.settings import options

    table = readme.options_table()
    page = readme.OPTIONS_DOC.read_text(encoding="utf-8")
    for f in options():
        assert f"`{f.name}`" in table and f"`{f.name}`" in page
        for flag in f.metadata["option"].flags:
            assert f"`{flag}`" in table and f"`{flag}`" in page


FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The page without its fenced code blocks (a link inside code is not a link)."""
    return FENCE.sub("", text)


def _anchors(path) -> set[str]:
    """GitHub's heading anchors of a Markdown page: lower case, punctuation dropped, spaces to hyphens."""
    slugs: set[str] = set()
    for line in _prose(path.read_text(encoding="utf-8")).splitlines():
        if m := re.match(r"#{1,6} (.+)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n, base = 1, slug
            while slug in slugs:
                slug, n = f"{base}-{n}", n + 1
            slugs.add(slug)
    return slugs


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_resolves(page):
    links = LINK.findall(_prose(page.read_text(encoding="utf-8")))
    bad = []
    for target in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: {_rel(dest)} has no heading #{anchor}")
    assert not bad, f"{_rel(page)}: " + "; ".join(bad)
    if page.name == "README.md":
        assert any("docs/" in t for t in links), "the README links no docs page"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from core import cli

    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _pytest_flags(pytestconfig) -> set[str]:
    """pytest's own options and every installed plugin's (pytest-benchmark, xdist, syrupy, timeout, this
    project's), from this session's parser, plus the project's options table."""
    from core.plan.settings import options

    known = set(pytestconfig._parser.optparser._option_string_actions)
    return known | {flag for f in options() for flag in f.metadata["option"].flags}


def _commands(text: str):
    """(the command as shown, argv) of every vqbench, pytest and `python -m` command in the page's fenced code blocks;
    continuation lines joined, comments dropped, `&&`, `;` and `|` split."""
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line)
            for piece in re.split(r"&&|;|\|", line):
                words = piece.split()
                while words and re.match(r"[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value cmd
                    words.pop(0)
                if words and words[0] in ("vqbench", "pytest", "python", "python3"):
                    yield piece.strip(), shlex.split(" ".join(words))


def _check_pytest_args(args: list[str], known: set[str]) -> list[str]:
    bad = []
    for arg in args:
        if not arg.startswith("-") or arg == "--":
            continue
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]  # -rs is -r with its value
        if name not in known:
            bad.append(name)
    return bad


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_command_shown_exists(page, pytestconfig):
    """Every `vqbench SUBCOMMAND` (and its options, where its parser is `vqbench`'s own), every pytest option
    and every `python -m MODULE` of the project in a page's code blocks exists."""
    text = page.read_text(encoding="utf-8")
    subcommands = _subcommands()
    pytest_flags = _pytest_flags(pytestconfig)
    bad, checked = [], 0
    for shown, argv in _commands(text):
        checked += 1
        if argv[0] in ("python", "python3"):
            if argv[1:2] != ["-m"] or len(argv) < 3:
                continue  # a script or an inline program: not checked
            if argv[2] == "pytest":
                argv = argv[2:]
            elif argv[2].split(".")[0] in ("core", "bench"):
                if importlib.util.find_spec(argv[2]) is None:
                    bad.append(f"{shown}: no module {argv[2]}")
                continue
            else:
                continue  # pip, tox: not this project's
        if argv[0] == "pytest":
            bad += [f"{shown}: pytest has no option {name}" for name in _check_pytest_args(argv[1:], pytest_flags)]
            continue
        if len(argv) < 2 or argv[1] not in subcommands:
            bad.append(f"{shown}: no `vqbench {argv[1] if len(argv) > 1 else ''}` subcommand")
            continue
        rest = argv[2:]
        cut = rest.index("--") if "--" in rest else len(rest)
        own, passed = rest[:cut], rest[cut + 1:]
        if argv[1] == "cluster":  # its own parser, built when it runs; what follows -- is pytest's
            bad += [f"{shown}: pytest has no option {name}" for name in _check_pytest_args(passed, pytest_flags)]
        elif argv[1] != "bundle":
            flags = _flags(subcommands[argv[1]])
            bad += [f"{shown}: `vqbench {argv[1]}` has no option {a.split('=', 1)[0]}" for a in own
                    if a.startswith("-") and a.split("=", 1)[0] not in flags]
    assert not bad, f"{_rel(page)}: " + "; ".join(bad)
    if page.name == "README.md":
        assert checked >= 4, f"only {checked} commands found in the README's code blocks"
        inline = set(re.findall(r"`vqbench ([a-z][\w-]*)", text))
        assert inline and inline <= set(subcommands), f"README names unknown subcommands: {inline - set(subcommands)}"
