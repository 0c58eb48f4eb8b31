"""The README's generated blocks (options, support matrix) match the code that generates them."""

from __future__ import annotations

import pytest

from core import paths
from core.tools import readme

pytestmark = pytest.mark.cpu


def test_generated_readme_blocks_are_current():
    text = (paths.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.render(text) == text, "README.md is stale: run `python -m core.tools.readme`"


def test_every_option_is_in_the_readme_with_its_flags():
    from core.settings import options

    table = readme.options_table()
    for f in options():
        assert f"`{f.name}`" in table
        for flag in f.metadata["option"].flags:
            assert f"`{flag}`" in table
