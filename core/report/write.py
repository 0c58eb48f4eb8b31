"""``vqbench report``: read results files and write report.md and report.html."""

from __future__ import annotations

from pathlib import Path

from core.base.atomic import write_text
from core.base.results import load, load_many
from core.report.html import render_html
from core.report.markdown import render_markdown


def write_report(inputs: list[Path], out_dir: Path, *, baseline: Path | None = None,
                 title: str | None = None) -> dict[str, Path]:
    """Write report.md and report.html for ``inputs`` (merged) into ``out_dir``; returns their paths."""
    results = load_many(inputs)
    base = load(baseline) if baseline is not None else None
    title = title or "vqbench report: " + ", ".join(Path(p).name for p in inputs)
    out_dir = Path(out_dir)
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    write_text(paths["markdown"], render_markdown(results, baseline=base, title=title))
    write_text(paths["html"], render_html(results, baseline=base, title=title))
    return paths
