"""Reports of benchmark results: summaries per engine (``summary``), the report's sections as data
(``sections``, ``tables``), rendered as Markdown (``markdown``) and self-contained HTML with plots
(``html``); run-against-run comparison (``compare``); ``write`` puts them on disk. Results are
read in ``core.base.results``.

May import: ``core.base``, ``core.inputs``, ``core.models``, ``core.plan``, ``core.metrics``, ``core.load``.
"""

from core.report.markdown import render_markdown
from core.report.tables import FLIP_MARK

__all__ = ["FLIP_MARK", "render_markdown"]
