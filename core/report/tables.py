"""Presentation primitives shared by the Markdown and HTML renderers: marked cells, tables,
sections, and number formatting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FLIP_MARK = "≠"


@dataclass(frozen=True)
class Mark:
    """A table cell that renderers highlight: kind is flip, change, error, regression, improvement or ref."""

    text: str
    kind: str


@dataclass
class Table:
    """Headers and rows of one table, shared by the Markdown and HTML renderers."""

    headers: list[str]
    rows: Sequence[Sequence[str | Mark]]
    caption: str = ""


@dataclass
class Section:
    """A titled part of the report: plain-text paragraphs, then tables."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def fmt_s(x: float | None) -> str:
    """Seconds with about three significant digits; an em dash when unknown."""
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_bytes(n: float | None) -> str:
    """Bytes as GiB (1 GiB and up) or MiB."""
    if n is None:
        return "—"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _md_cell(cell: str | Mark) -> str:
    if isinstance(cell, Mark):
        text = cell.text.replace("|", "\\|")
        return {"flip": f"**{text}** {FLIP_MARK}", "error": f"*{text}*", "regression": f"**{text}**",
                "change": f"**{text}**"}.get(cell.kind, text)
    return str(cell).replace("|", "\\|")


def markdown_table(headers: list[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
