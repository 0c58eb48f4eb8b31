"""Reports of benchmark results: load a results file (or pytest-benchmark JSON), summarize each
engine, and render the seeds' tables (speed per format, answers per video with flips, changes
against a baseline) as Markdown. ``core.report_html`` renders the same sections as HTML with plots.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.compare import cell_key, latency_s, rounds_of
from core.errors import VqbenchError

REFERENCE_FORMAT = "bf16"
FLIP_MARK = "≠"
LATENCY_NOTE = ("Latency is the median of the timed rounds per video (the generate call: processor, prefill and "
                "decode), averaged over videos; TTFT is the prefill time; video decode is per video and not in the "
                "latency.")
BASELINE_NOTE = ("A is the baseline, B this run. A change is significant when the bootstrap 95% interval of the "
                 "change in median round time excludes 0%; with 3 rounds a side, when the rounds do not overlap.")
EngineKey = tuple[str, str, str, str]


class ReportInputError(VqbenchError):
    """A file given to the report is missing, unreadable, or holds no benchmark cells."""


def load(path: Path | str) -> list[dict[str, Any]]:
    """Cell records of a vqbench results file (JSON lines) or a pytest-benchmark JSON, auto-detected."""
    from core import results

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read results ({exc.strerror}); pass a file written by "
                               "'pytest --results FILE' or '--benchmark-json FILE'") from None
    doc = _whole_json(text)
    records = _from_benchmark_json(doc) if isinstance(doc, dict) and "benchmarks" in doc else results.cells(path)
    if not records:
        raise ReportInputError(
            f"{path}: no benchmark cells found (is it empty, a truncated pytest-benchmark JSON, or another "
            "kind of file?); write one with 'pytest bench/test_cells.py --results FILE' or '--benchmark-json FILE'")
    return records


def _whole_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _from_benchmark_json(doc: dict[str, Any]) -> list[dict[str, Any]]:
    gpu_class = ((doc.get("machine_info") or {}).get("vqbench") or {}).get("gpu_class")
    records = []
    for bench in doc.get("benchmarks") or []:
        info = bench.get("extra_info") or {}
        if not info.get("model"):
            continue  # a benchmark that is not a vqbench cell
        rec: dict[str, Any] = {"type": "cell", "status": "ok", "cell": bench.get("param") or bench.get("name"), **info}
        if gpu_class and not rec.get("gpu_class"):
            rec["gpu_class"] = gpu_class
        if bench.get("stats"):
            rec["stats"] = bench["stats"]
            if not rec.get("rounds_s") and bench["stats"].get("data"):
                rec["rounds_s"] = list(bench["stats"]["data"])
        records.append(rec)
    return records


def merge(record_lists: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Records of several inputs as one list; a cell seen twice keeps its later record."""
    by_key: dict[tuple, dict[str, Any]] = {}
    for records in record_lists:
        for rec in records:
            by_key[cell_key(rec)] = rec
    return list(by_key.values())


# --- summaries -------------------------------------------------------------------------------------

def engine_of(rec: dict[str, Any]) -> EngineKey:
    """(model, backend, format, device): what loads once and answers every video."""
    return tuple(str(rec.get(k)) for k in ("model", "backend", "format", "device"))  # type: ignore[return-value]


def _mean(xs: Iterable[float | None]) -> float | None:
    vals = [float(x) for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def _ordered_engines(records: list[dict[str, Any]], reference: str) -> list[EngineKey]:
    first: dict[EngineKey, int] = {}
    for i, rec in enumerate(records):
        first.setdefault(engine_of(rec), i)
    return sorted(first, key=lambda e: (e[0], e[3], e[1], e[2] != reference, first[e]))


def reference_engine(eng: EngineKey, engines: Iterable[EngineKey], reference: str) -> EngineKey | None:
    """The engine a format is compared with: the reference format on the same backend and device,
    else on the same device (Hugging Face first), else anywhere for the same model."""
    cands = [e for e in engines if e[0] == eng[0] and e[2] == reference]
    for same in (lambda e: e[1] == eng[1] and e[3] == eng[3], lambda e: e[3] == eng[3], lambda e: True):
        found = sorted((e for e in cands if same(e)), key=lambda e: (e[1] != "hf", e))
        if found:
            return found[0]
    return None


def summarize(records: list[dict[str, Any]], *, reference: str = REFERENCE_FORMAT) -> list[dict[str, Any]]:
    """One summary per engine (model, backend, format, device), reference format first."""
    groups: dict[EngineKey, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[engine_of(rec)].append(rec)
    out = []
    for eng in _ordered_engines(records, reference):
        ok = [r for r in groups[eng] if r.get("status", "ok") == "ok"]
        load = next((r["load"] for r in ok if r.get("load")), {})
        lat = {cell_key(r)[4:]: latency_s(r) for r in ok}
        timings = [r.get("timings") or {} for r in ok]
        per_tok = _mean(t.get("decode_per_token_s") for t in timings)
        rounds = [rounds_of(r) for r in ok]
        mem = [r.get("memory") or {} for r in ok]
        roof = [r["roofline"] for r in ok if isinstance(r.get("roofline"), dict)]
        out.append({
            "engine": eng, "model": eng[0], "backend": eng[1], "format": eng[2], "device": eng[3],
            "videos": len(ok), "errors": len(groups[eng]) - len(ok),
            "mode": next((r["mode"] for r in ok if r.get("mode")), None),
            "mode_note": next((r["mode_note"] for r in ok if r.get("mode_note")), ""),
            "load_s": load.get("load_s"), "quantize_s": load.get("quantize_s"),
            "quantize_cached": load.get("quantize_cached"), "weight_bytes": load.get("weight_bytes"),
            "latency": lat, "latency_s": _mean(lat.values()), "total_s": sum(v for v in lat.values() if v) or None,
            "latency_lo_s": _mean(min(x) if x else latency_s(r) for x, r in zip(rounds, ok)),
            "latency_hi_s": _mean(max(x) if x else latency_s(r) for x, r in zip(rounds, ok)),
            "rounds": max((len(x) for x in rounds), default=0),
            "ttft_s": _mean(t.get("prefill_s") for t in timings),
            "processor_s": _mean(t.get("processor_s") for t in timings),
            "decode_s": _mean(t.get("decode_s") for t in timings),
            "video_decode_s": _mean(t.get("video_decode_s") for t in timings),
            "decode_tok_s": 1.0 / per_tok if per_tok else None,
            "peak": {k: max((m[k] for m in mem if m.get(k) is not None), default=None)
                     for k in ("torch_peak_over_baseline_bytes", "nvml_peak_over_baseline_bytes", "rss_peak_bytes")},
            "roofline": {k: _mean(r.get(k) for r in roof) for k in sorted({k for r in roof for k, v in r.items()
                                                                          if isinstance(v, (int, float))})},
        })
    return out


def speedup(summary: dict[str, Any], ref: dict[str, Any]) -> float | None:
    """Reference latency over this engine's, on the videos both ran (2.0 = twice as fast)."""
    common = [k for k in summary["latency"] if summary["latency"][k] and ref["latency"].get(k)]
    if not common:
        return None
    return sum(ref["latency"][k] for k in common) / sum(summary["latency"][k] for k in common)


# --- tables ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mark:
    """A table cell that renderers highlight: kind is flip, change, error, regression, improvement or ref."""

    text: str
    kind: str


@dataclass
class Table:
    """Headers and rows of one table, shared by the Markdown and HTML renderers."""

    headers: list[str]
    rows: list[list[str | Mark]]
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


def _peak(s: dict[str, Any]) -> str:
    p = s["peak"]
    if s["device"] != "cpu":
        return (f"torch {fmt_bytes(p['torch_peak_over_baseline_bytes'])} · "
                f"NVML {fmt_bytes(p['nvml_peak_over_baseline_bytes'])}")
    return f"RSS {fmt_bytes(p['rss_peak_bytes'])}"


def _versus(s: dict[str, Any], ref: dict[str, Any] | None) -> str | Mark:
    if ref is s:
        return Mark("reference", "ref")
    x = speedup(s, ref) if ref is not None else None
    if x is None:
        return "—"
    text = f"{x:.2f}x faster" if x >= 1 else f"{1 / x:.2f}x slower"
    return text if ref["backend"] == s["backend"] else f"{text} (vs {ref['backend']})"


def _speed_row(s: dict[str, Any], ref: dict[str, Any] | None, *, roofline: bool) -> list[str | Mark]:
    quant = "—" if not s["quantize_s"] else fmt_s(s["quantize_s"]) + (" (cached)" if s["quantize_cached"] else "")
    row: list[str | Mark] = [
        s["model"], s["backend"], s["format"], s["device"], s["mode"] or "—", str(s["videos"]), fmt_s(s["load_s"]),
        quant, fmt_s(s["latency_s"]), fmt_s(s["total_s"]), _versus(s, ref), fmt_s(s["ttft_s"]),
        f"{s['decode_tok_s']:.1f}" if s["decode_tok_s"] else "—", fmt_s(s["video_decode_s"]), _peak(s),
        fmt_bytes(s["weight_bytes"])]
    if roofline:
        ratio = s["roofline"].get("ratio")
        row.append(f"{ratio:.2f}" if ratio is not None else "—")
    row.append(Mark(str(s["errors"]), "error") if s["errors"] else "0")
    return row


def speed_section(summaries: list[dict[str, Any]], *, reference: str) -> Section:
    """Table (a): one row per engine with load, latency, TTFT, decode rate, memory and errors."""
    by_eng = {s["engine"]: s for s in summaries}
    roof = any(s["roofline"] for s in summaries)
    headers = ["model", "backend", "format", "device", "mode", "videos", "load s", "quantize s", "latency s/video",
               "total s", f"vs {reference}", "TTFT s", "decode tok/s", "video decode s", "peak memory", "weights"]
    headers += ["roofline ratio"] * roof + ["errors"]
    rows = []
    for s in summaries:
        ref = reference_engine(s["engine"], by_eng, reference)
        rows.append(_speed_row(s, by_eng[ref] if ref else None, roofline=roof))
    notes = [LATENCY_NOTE]
    mode_notes = [(f"{s['backend']}/{s['format']} on {s['device']} is {s['mode']}"
                   + (f": {s['mode_note'].rstrip('.')}" if s["mode_note"] else "")
                   + ". Its speed and memory are not those of the format's own kernels.")
                  for s in summaries if s["mode"] not in (None, "native")]
    notes += list(dict.fromkeys(mode_notes))  # once per backend/format/device, not once per model
    if any(s["device"] != "cpu" for s in summaries):
        notes.append("GPU peak memory is this process's peak over its own baseline while answering: torch's "
                     "allocator and NVML's per-process figure (NVML adds the CUDA context and cached blocks).")
    if any(s["device"] == "cpu" for s in summaries):
        notes.append("CPU peak memory is the process's peak resident set so far (ru_maxrss): it never falls within "
                     "a run, so an engine run later inherits earlier peaks. Compare CPU memory across separate runs.")
    return Section("Speed and memory", notes, [Table(headers, rows)])


def _answer_label(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "—"
    return "error" if rec.get("status", "ok") != "ok" else str(rec.get("predicted"))


@dataclass
class _Tally:
    """Agreement with the reference and accuracy of one column of the answer table."""

    agree: int = 0
    compared: int = 0
    right: int = 0
    judged: int = 0

    def score(self, rec: dict[str, Any], truth: str | None) -> None:
        if truth is not None:
            self.judged += 1
            correct = rec.get("correct")
            self.right += int(correct if correct is not None else rec.get("predicted") == truth)


def _answer_cell(rec: dict[str, Any] | None, ref: dict[str, Any] | None, tally: _Tally,
                 truth: str | None) -> str | Mark:
    text = _answer_label(rec)
    if rec is None or text == "error":
        return Mark(text, "error") if text == "error" else text
    tally.score(rec, truth)
    if ref is None or ref is rec or _answer_label(ref) == "error":
        return text
    tally.compared += 1
    if text == ref.get("predicted"):
        tally.agree += 1
        return text
    return Mark(text, "flip")


def answers_section(records: list[dict[str, Any]], *, reference: str) -> Section:
    """Table (b): per (model, task), the predicted label of every video in every format, flips marked,
    then each format's agreement with the reference and its accuracy where the truth is known."""
    section = Section("Answers per video")
    by_group: dict[tuple[str, str], dict[tuple[EngineKey, str], dict[str, Any]]] = defaultdict(dict)
    for rec in records:
        by_group[(str(rec.get("model")), str(rec.get("task")))][(engine_of(rec), str(rec.get("video")))] = rec
    for (model, task), cells in sorted(by_group.items()):
        engines = _ordered_engines(list(cells.values()), reference)
        videos = list(dict.fromkeys(v for _, v in cells))
        refs = {e: reference_engine(e, engines, reference) for e in engines}
        many_backends, many_devices = len({e[1] for e in engines}) > 1, len({e[3] for e in engines}) > 1
        label = {e: (f"{e[1]}/" if many_backends else "") + e[2] + (f"@{e[3]}" if many_devices else "")
                 for e in engines}
        truth = {v: next((c["truth"] for (_, w), c in cells.items() if w == v and c.get("truth")), None)
                 for v in videos}
        has_truth = any(truth.values())
        tallies = {e: _Tally() for e in engines}
        rows = []
        for v in videos:
            answers = [_answer_cell(cells.get((e, v)), cells.get((refs[e], v)), tallies[e], truth[v])
                       for e in engines]
            agrees = not any(isinstance(a, Mark) and a.kind == "flip" for a in answers)
            rows.append([v] + [truth[v] or "—"] * has_truth + answers + ["yes" if agrees else Mark("no", "change")])
        headers = ["video"] + ["truth"] * has_truth + [label[e] for e in engines] + [f"agrees with {reference}"]
        section.tables.append(Table(headers, rows, caption=f"{model}, task {task}: predicted label per format; "
                                    f"{FLIP_MARK} marks a label that differs from {reference} on the same backend."))
        summary = [[label[e], "reference" if refs[e] == e else "—" if refs[e] is None else
                    _rate(tallies[e].agree, tallies[e].compared)]
                   + [_rate(tallies[e].right, tallies[e].judged)] * has_truth for e in engines]
        section.tables.append(Table(["format", f"agreement with {reference}"] + ["accuracy"] * has_truth, summary))
    return section


def _rate(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}% ({k}/{n})" if n else "—"


def baseline_section(baseline: list[dict[str, Any]], records: list[dict[str, Any]], *,
                     threshold_pct: float = 5.0) -> Section:
    from core.compare import compare

    cmp = compare(baseline, records, threshold_pct=threshold_pct)
    headers, rows, kinds = cmp.table()
    marked: list[list[str | Mark]] = []
    for row, kind in zip(rows, kinds):
        out: list[str | Mark] = list(row)
        if kind in ("regression", "improvement"):
            out[5] = Mark(row[5], kind)
        if "->" in row[6]:
            out[6] = Mark(row[6], "change")
        marked.append(out)
    return Section("Against the baseline", [cmp.summary(), *cmp.notes, BASELINE_NOTE],
                   [Table(*cmp.engine_table()), Table(headers, marked)])


def roofline_section(summaries: list[dict[str, Any]]) -> Section | None:
    keys = sorted({k for s in summaries for k in s["roofline"]})
    if not keys:
        return None
    rows = [[s["model"], s["backend"], s["format"], s["device"], *(fmt_s(s["roofline"].get(k)) for k in keys)]
            for s in summaries if s["roofline"]]
    return Section("Roofline", ["Mean over videos of each cell's roofline figures."],
                   [Table(["model", "backend", "format", "device", *keys], rows)])


def errors_section(records: list[dict[str, Any]]) -> Section | None:
    bad = [r for r in records if r.get("status", "ok") != "ok"]
    if not bad:
        return None
    rows = [[str(r.get("cell") or "/".join(cell_key(r))), str(r.get("error_type", "")),
             str(r.get("error", "")).splitlines()[0][:200] if r.get("error") else ""] for r in bad]
    return Section("Errors", [f"{len(bad)} cells failed."], [Table(["cell", "error", "message"], rows)])


def setup_lines(records: list[dict[str, Any]]) -> list[str]:
    """What the numbers were measured on: machine, frames per clip, tokens, rounds."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    machines = sorted({str(r.get("gpu_name") or r.get("gpu_class")) for r in ok} - {"None"})
    frames = sorted({(f.get("frames"), f.get("sampled_fps"), f.get("width"), f.get("height"))
                     for r in ok if (f := r.get("frames"))}, key=str)
    videos = {(r.get("task"), r.get("video")) for r in records}
    lines = [f"{len(records)} cells, {len(videos)} videos" + (f", on {', '.join(machines)}" if machines else "") + "."]
    if len(frames) == 1 and frames[0][0]:
        n, fps, w, h = frames[0]
        lines.append(f"Each clip: {n} frames at {fps:g} fps, {w}x{h}; "
                     f"{_mean((r.get('tokens') or {}).get('video') for r in ok):.0f} video tokens on average; "
                     f"{max((len(rounds_of(r)) for r in ok), default=0)} timed rounds per cell.")
    return lines


def sections(records: list[dict[str, Any]], *, baseline: list[dict[str, Any]] | None = None,
             reference: str = REFERENCE_FORMAT) -> list[Section]:
    """Every section of the report, for the Markdown and HTML renderers alike."""
    summaries = summarize(records, reference=reference)
    out = [speed_section(summaries, reference=reference), answers_section(records, reference=reference)]
    if baseline is not None:
        out.append(baseline_section(baseline, records))
    out += [s for s in (roofline_section(summaries), errors_section(records)) if s is not None]
    return out


# --- Markdown --------------------------------------------------------------------------------------

def _md_cell(cell: str | Mark) -> str:
    if isinstance(cell, Mark):
        text = cell.text.replace("|", "\\|")
        return {"flip": f"**{text}** {FLIP_MARK}", "error": f"*{text}*", "regression": f"**{text}**",
                "change": f"**{text}**"}.get(cell.kind, text)
    return str(cell).replace("|", "\\|")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(records: list[dict[str, Any]], *, baseline: list[dict[str, Any]] | None = None,
                    title: str = "vqbench report", reference: str = REFERENCE_FORMAT) -> str:
    """The report as Markdown: speed per format, answers per video, changes against ``baseline``."""
    parts = [f"# {title}", "", *setup_lines(records), ""]
    for sec in sections(records, baseline=baseline, reference=reference):
        parts += [f"## {sec.title}", ""]
        for p in sec.paragraphs:
            parts += [p, ""]
        for table in sec.tables:
            if table.caption:
                parts += [table.caption, ""]
            parts += [markdown_table(table.headers, table.rows), ""]
    return "\n".join(parts)


def write_report(inputs: list[Path], out_dir: Path, *, baseline: Path | None = None,
                 title: str | None = None) -> dict[str, Path]:
    """Write report.md and report.html for ``inputs`` (merged) into ``out_dir``; returns their paths."""
    from core.atomic import write_text
    from core.report_html import render_html

    if not inputs:
        raise ReportInputError("no results files given; pass at least one results or pytest-benchmark JSON file")
    records = merge(load(p) for p in inputs)
    base = load(baseline) if baseline is not None else None
    title = title or "vqbench report: " + ", ".join(Path(p).name for p in inputs)
    out_dir = Path(out_dir)
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    write_text(paths["markdown"], render_markdown(records, baseline=base, title=title))
    write_text(paths["html"], render_html(records, baseline=base, title=title))
    return paths
