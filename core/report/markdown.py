"""The report as Markdown: speed per format, answers per video, changes against a baseline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.base.results import Results, from_records
from core.report.sections import sections, setup_lines
from core.report.summary import REFERENCE_FORMAT
from core.report.tables import markdown_table


def as_results(data: Results | Iterable[dict[str, Any]]) -> Results:
    """Results as they are, or a list of records (a results file's lines) read into Results."""
    return data if isinstance(data, Results) else from_records(data)


def render_markdown(data: Results | Iterable[dict[str, Any]], *,
                    baseline: Results | Iterable[dict[str, Any]] | None = None,
                    title: str = "vqbench report", reference: str = REFERENCE_FORMAT) -> str:
    results = as_results(data)
    base = as_results(baseline) if baseline is not None else None
    parts = [f"# {title}", "", *setup_lines(results), ""]
    for sec in sections(results, baseline=base, reference=reference):
        parts += [f"## {sec.title}", ""]
        for p in sec.paragraphs:
            parts += [p, ""]
        for table in sec.tables:
            if table.caption:
                parts += [table.caption, ""]
            parts += [markdown_table(table.headers, table.rows), ""]
    return "\n".join(parts)
