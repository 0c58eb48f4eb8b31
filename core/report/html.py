"""The report as one self-contained HTML file: the Markdown report's tables plus matplotlib plots
embedded as base64 PNG (no network, no external files). Without matplotlib it renders tables only.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.base.records import CellRecord
from core.base.results import Results
from core.plan.catalog import BACKENDS
from core.report.markdown import as_results
from core.report.sections import sections, setup_lines
from core.report.summary import REFERENCE_FORMAT, device_label, engine_of, real_kernels, reference_engine, summarize
from core.report.tables import FLIP_MARK, Mark, Table

STAGE_COLORS = {"video decode": "#8C8C8C", "processor": "#CCB974", "prefill (TTFT)": "#4C72B0", "decode": "#DD8452"}
_NUMBER = re.compile(r"^[-+]?\d[\d.,]*( ?(s|%|GiB|MiB|x faster|x slower))?$")


@dataclass(frozen=True)
class Plot:
    """One embedded figure: the section it belongs to, a caption, and the PNG as base64."""

    section: str
    caption: str
    png_b64: str


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1500px;
     color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
p.setup{color:#555;margin:2px 0} p.note{color:#555;font-size:13px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:13px}
.scroll{overflow-x:auto;max-width:100%}
th,td{border:1px solid #d9d9d9;padding:4px 8px;white-space:nowrap}
th{background:#f3f4f6;text-align:left;white-space:normal;vertical-align:bottom}
tr:nth-child(even) td{background:#fafafa} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.flip,td.change{background:#fde2e1 !important;font-weight:600} td.error{color:#b00020;font-style:italic}
td.regression{background:#f8c9c9 !important;font-weight:700} td.improvement{background:#d5f0d5 !important}
td.ref{color:#666;font-style:italic} caption{caption-side:top;text-align:left;color:#444;padding:4px 0}
.plots{display:flex;flex-wrap:wrap;gap:18px} figure{margin:0;border:1px solid #e3e3e3;padding:8px;background:#fff}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#555;font-size:12px;margin-top:4px;max-width:720px}
"""


def _backend_color(backend: str) -> str | None:
    """A backend's bar colour (``BackendInfo.color``); None (matplotlib picks) for one the catalog lacks."""
    info = BACKENDS.get(backend)
    return info.color if info is not None else None


def _cell(cell: str | Mark, tag: str = "td") -> str:
    text, cls = (cell.text, cell.kind) if isinstance(cell, Mark) else (str(cell), "")
    if isinstance(cell, Mark) and cell.kind == "flip":
        text = f"{text} {FLIP_MARK}"
    if tag == "td" and not cls and _NUMBER.match(text):
        cls = "num"
    return f"<{tag}{f' class={cls}' if cls else ''}>{_text(text)}</{tag}>"


def _text(text: str) -> str:
    return html.escape(text, quote=False)


def table_html(table: Table) -> str:
    head = "".join(_cell(h, "th") for h in table.headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    cap = f"<caption>{_text(table.caption)}</caption>" if table.caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def render_html(data, *, baseline=None, title: str = "vqbench report", reference: str = REFERENCE_FORMAT) -> str:
    """The report as a standalone HTML page with tables and embedded PNG plots."""
    results = as_results(data)
    base = as_results(baseline) if baseline is not None else None
    secs = sections(results, baseline=base, reference=reference)
    try:
        plots = make_plots(results, reference=reference)
        plot_note = ""
    except ImportError:
        plots, plot_note = [], "Plots need matplotlib, which is not installed: pip install 'vqbench[report]'."
    by_section: dict[str, list[Plot]] = defaultdict(list)
    for plot in plots:
        by_section[plot.section].append(plot)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{_text(title)}</title><style>{CSS}</style></head><body>", f"<h1>{_text(title)}</h1>"]
    out += [f'<p class="setup">{_text(line)}</p>' for line in setup_lines(results)]
    if plot_note:
        out.append(f'<p class="note">{_text(plot_note)}</p>')
    for sec in secs:
        out.append(f"<section><h2>{_text(sec.title)}</h2>")
        out += [f'<p class="note">{_text(p)}</p>' for p in sec.paragraphs]
        out += [table_html(t) for t in sec.tables]
        if by_section.get(sec.title):
            out.append('<div class="plots">')
            out += [f'<figure><img alt="{html.escape(p.caption)}" src="data:image/png;base64,{p.png_b64}">'
                    f"<figcaption>{_text(p.caption)}</figcaption></figure>" for p in by_section[sec.title]]
            out.append("</div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


# --- plots -----------------------------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def make_plots(results: Results, *, reference: str = REFERENCE_FORMAT) -> list[Plot]:
    """Latency, memory and time-split plots per (model, device) for engines on real kernels (emulation
    is never plotted beside them); a drift heatmap per (model, task) over every engine's answers."""
    import matplotlib  # noqa: F401 - raises ImportError early when missing

    summaries = [s for s in summarize(results, reference=reference) if s["videos"] and real_kernels(s)]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        groups[(s["model"], device_label(s))].append(s)
    plots = []
    for (model, device), group in groups.items():
        where = f"{model} on {device}"
        plots.append(Plot("Speed and memory", f"Latency per video, {where}: mean of per-video medians; "
                          "error bars span the mean fastest and slowest round (engines on the formats' own kernels "
                          "only).", _png(_latency_fig(group))))
        plots.append(Plot("Speed and memory", f"Weights and peak memory, {where}.", _png(_memory_fig(group))))
        plots.append(Plot("Speed and memory", f"Where the time goes, {where}: mean seconds per video.",
                          _png(_stages_fig(group))))
    by_task: dict[tuple[str, str], list[CellRecord]] = defaultdict(list)
    for rec in results.answers():
        if rec.get("status", "ok") == "ok" and rec.get("candidate_logprobs"):
            by_task[(str(rec.get("model")), str(rec.get("task")))].append(rec)
    for (model, task), recs in sorted(by_task.items()):
        plots.append(Plot("Answers per video", f"Answer margin, {model}, task {task}: log p(reference answer) minus "
                          "the best other candidate; red cells changed their answer.",
                          _png(_drift_fig(recs, reference=reference))))
    for drift in results.drift:
        report = drift.get("report") or {}
        name = f"{drift.get('engine')} ({drift.get('task')})"
        if (report.get("vocab") or {}).get("clips"):
            plots.append(Plot(DRIFT_SECTION, f"Full-vocabulary KL at the answer position per clip, {name}: the clips "
                              "that dominate are at the top (top-k + rest: a lower bound).", _png(_kl_fig(report))))
        if report.get("vision"):
            plots.append(Plot(DRIFT_SECTION, f"Vision-tower embeddings against the reference per frame group, {name}: "
                              "relative error (0: identical; the cell text is the cosine similarity).",
                              _png(_vision_fig(report))))
    curves: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for point in results.load:
        if point.get("status") == "ok" and point.get("scenario") == "sweep":
            curves[(str(point.get("model")), str(point.get("gpu_class")))].append(point)
    for (model, gpu_class), points in sorted(curves.items()):
        plots.append(Plot(LOAD_SECTION, f"Throughput against latency, {model} on {gpu_class}: each sweep point's "
                          "served videos/s and p99 end-to-end latency (hollow: judged on the max, fewer than 100 "
                          "requests; grey: missed the SLO); the dashed line is the SLO.", _png(_load_fig(points))))
    return plots


DRIFT_SECTION = "Drift against the reference"
LOAD_SECTION = "Under load (a real vLLM server)"


def _load_fig(recs: list[dict[str, Any]]):
    """One line per format: served videos/s against p99 (or max) end-to-end latency at each sweep point."""
    fig, ax = _figure(6.5, 3.6)
    newest = {r.get("format"): r for r in sorted(recs, key=lambda r: r.get("time", 0))}
    slo = None
    for fmt, rec in sorted(newest.items(), key=lambda kv: str(kv[0])):
        points = sorted(rec["result"]["points"], key=lambda p: p["offered"]["rate_per_s"])
        xs = [p.get("videos_per_s") or 0.0 for p in points]
        ys = [p["e2e_s"].get("p99") if p["e2e_s"].get("p99") is not None else p["e2e_s"].get("max") for p in points]
        line, = ax.plot(xs, ys, "-", label=str(fmt))
        for x, y, p in zip(xs, ys, points):
            estimable = p["e2e_s"].get("p99") is not None
            color = line.get_color() if p["slo"]["met"] else "#999999"
            ax.plot([x], [y], "o", color=color, markerfacecolor=color if estimable else "none")
        slo = rec["result"].get("slo_e2e_s") or slo
    if slo:
        ax.axhline(slo, linestyle="--", color="#444444", linewidth=1)
    ax.set_xlabel("served videos/s")
    ax.set_ylabel("p99 end-to-end latency, s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def _kl_fig(report: dict[str, Any]):
    clips = report["vocab"]["clips"]
    rows = sorted(((c, pos[0]["kl"]) for c, pos in clips.items() if pos), key=lambda kv: kv[1])
    fig, ax = _figure(6.5, max(2.2, 0.28 * len(rows) + 1.0))
    ax.barh([c for c, _ in rows], [k for _, k in rows], color="#C44E52")
    ax.set_xlabel("KL(reference || candidate), nats")
    if rows and max(k for _, k in rows) > 0 and min(k for _, k in rows) > 0:
        ax.set_xscale("log")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _vision_fig(report: dict[str, Any]):
    import numpy as np

    clips = sorted(report["vision"])
    groups = max(len(report["vision"][c]["groups"]) for c in clips)
    data = np.full((len(clips), groups), np.nan)
    cos = [[""] * groups for _ in clips]
    for i, c in enumerate(clips):
        for j, g in enumerate(report["vision"][c]["groups"]):
            data[i, j] = g["rel_err"]
            cos[i][j] = f"{g['cos']:.4f}"
    fig, ax = _figure(max(4.0, 0.7 * groups + 2.5), max(2.2, 0.3 * len(clips) + 1.2))
    im = ax.imshow(data, cmap="Reds", aspect="auto", vmin=0.0)
    ax.set_xticks(range(groups), [str(j) for j in range(groups)])
    ax.set_xlabel("frame group")
    ax.set_yticks(range(len(clips)), clips, fontsize=8)
    if len(clips) * groups <= 300:
        for i in range(len(clips)):
            for j in range(groups):
                ax.text(j, i, cos[i][j], ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label="relative error")
    return fig


def _label(s: dict[str, Any], many_backends: bool) -> str:
    return f"{s['backend']}/{s['format']}" if many_backends else s["format"]


def _latency_fig(group: list[dict[str, Any]]):
    formats = list(dict.fromkeys(s["format"] for s in group))
    backends = list(dict.fromkeys(s["backend"] for s in group))
    fig, ax = _figure(max(5.0, 1.1 * len(formats) + 2), 3.6)
    width = 0.8 / len(backends)
    for i, backend in enumerate(backends):
        rows = [(formats.index(s["format"]), s) for s in group if s["backend"] == backend and s["latency_s"]]
        if not rows:
            continue
        x = [j + (i - (len(backends) - 1) / 2) * width for j, _ in rows]
        y = [s["latency_s"] for _, s in rows]
        err = [[max(0.0, s["latency_s"] - s["latency_lo_s"]) for _, s in rows],
               [max(0.0, s["latency_hi_s"] - s["latency_s"]) for _, s in rows]]
        bars = ax.bar(x, y, width, yerr=err, capsize=3, label=backend, color=_backend_color(backend))
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    ax.set_xticks(range(len(formats)), formats, rotation=30, ha="right")
    ax.set_ylabel("seconds per video")
    ax.legend(title="backend", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _memory_fig(group: list[dict[str, Any]]):
    many = len({s["backend"] for s in group}) > 1
    labels = [_label(s, many) for s in group]
    gib = 2**30
    weights = [(s["weight_bytes"] or 0) / gib for s in group]
    estimated = [bool(s.get("weight_bytes_estimated")) for s in group]
    gpu = any(s["device"] != "cpu" for s in group)
    device_used = any(s["peak"].get("nvml_source") == "device" for s in group)
    key, name = (("nvml", "peak over baseline (NVML, " + ("device used" if device_used else "engine processes") + ")")
                 if gpu else ("host", "peak over baseline (resident, engine processes)"))
    peaks = [(s["peak"].get(key) or 0) / gib for s in group]
    fig, ax = _figure(max(5.0, 0.9 * len(group) + 2), 3.6)
    x = range(len(group))
    weights_label = "weights (hatched, ~: estimate, not measured)" if any(estimated) else "weights"
    for offset, vals, label, color in ((-0.2, weights, weights_label, "#4C72B0"), (0.2, peaks, name, "#C44E52")):
        bars = ax.bar([i + offset for i in x], vals, 0.4, label=label, color=color)
        marks = estimated if vals is weights else [False] * len(vals)
        for bar, est in zip(bars, marks):
            if est:
                bar.set_hatch("//")
        ax.bar_label(bars, labels=[("~" if m else "") + f"{v:.2f}" for v, m in zip(vals, marks)], fontsize=7,
                     padding=2)
    ax.set_xticks(list(x), labels, rotation=30, ha="right")
    ax.set_ylabel("GiB")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _stages_fig(group: list[dict[str, Any]]):
    many = len({s["backend"] for s in group}) > 1
    labels = [_label(s, many) for s in group]
    fig, ax = _figure(7.0, max(2.4, 0.45 * len(group) + 1.2))
    left = [0.0] * len(group)
    stages = {"video decode": "video_decode_s", "processor": "processor_s", "prefill (TTFT)": "ttft_s",
              "decode": "decode_s"}
    for name, key in stages.items():
        vals = [s[key] or 0.0 for s in group]
        ax.barh(labels, vals, left=left, label=name, color=STAGE_COLORS[name])
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds per video")
    ax.legend(fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return fig


def answer_margins(recs: Sequence[Mapping[str, Any]], *, reference: str
                   ) -> tuple[list[str], list[str], list[list[float | None]], list[list[str]]]:
    """Videos, engine labels, and per (video, engine) the margin of the reference's answer and the label."""
    engines = list(dict.fromkeys(engine_of(r) for r in recs))
    engines.sort(key=lambda e: (e[3], e[4], e[1], e[2] != reference))
    cells = {(engine_of(r), str(r.get("video"))): r for r in recs}
    videos = list(dict.fromkeys(str(r.get("video")) for r in recs))
    many, many_where = len({e[1] for e in engines}) > 1, len({e[3:] for e in engines}) > 1
    names = [(f"{e[1]}/" if many else "") + e[2] + (f"@{e[4] or e[3]}" if many_where else "") for e in engines]
    margins, labels = [], []
    for v in videos:
        mrow, lrow = [], []
        for e in engines:
            rec, ref_eng = cells.get((e, v)), reference_engine(e, engines, reference)
            ref = cells.get((ref_eng, v)) if ref_eng else None
            target = (ref or rec or {}).get("predicted")
            lp = (rec or {}).get("candidate_logprobs") or {}
            others = [x for c, x in lp.items() if c != target]
            mrow.append(lp[target] - max(others) if target in lp and others else None)
            lrow.append(str((rec or {}).get("predicted", "")))
        margins.append(mrow)
        labels.append(lrow)
    return videos, names, margins, labels


def _drift_fig(recs: Sequence[Mapping[str, Any]], *, reference: str):
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    videos, names, margins, labels = answer_margins(recs, reference=reference)
    data = np.array([[np.nan if m is None else m for m in row] for row in margins], dtype=float)
    span = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
    fig, ax = _figure(max(4.5, 1.1 * len(names) + 2.5), max(2.5, 0.32 * len(videos) + 1.4))
    im = ax.imshow(data, cmap="RdBu", norm=TwoSlopeNorm(0.0, -span or -1.0, span or 1.0), aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(videos)), videos, fontsize=8)
    if len(videos) * len(names) <= 400:
        for i, row in enumerate(labels):
            for j, text in enumerate(row):
                ax.text(j, i, text[:8], ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="log-prob margin of reference answer")
    return fig
