"""The report's sections as data (``Section``/``Table``), rendered by ``markdown`` and ``html`` alike.

Speed is ranked among engines that run the format's own kernels only; fake-quant and emulated
engines get their own table, labelled as emulation, and never a "vs bf16" figure. Their answers and
drift stay in the answer tables with everyone else's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.base.records import CellRecord
from core.base.results import Results, cell_key, rounds_of
from core.report.summary import (
    REFERENCE_FORMAT,
    EngineKey,
    device_label,
    engine_of,
    mean,
    ordered_engines,
    parents_of,
    real_kernels,
    reference_engine,
    speedup,
    summarize,
)
from core.report.tables import FLIP_MARK, Mark, Section, Table, fmt_bytes, fmt_s

LATENCY_NOTE = ("Latency is the median of the timed rounds per video (the generate call: processor, prefill and "
                "decode), averaged over videos; TTFT is the prefill time; video decode is per video and not in the "
                "latency. Only timed records count: untimed scoring runs (goldens, drift) never change these figures.")
BASELINE_NOTE = ("A is the baseline, B this run. A change is significant when the bootstrap 95% interval of the "
                 "change in median round time excludes 0%; with 3 rounds a side, when the rounds do not overlap.")
EMULATION_NOTE = ("These engines do not run the format's own kernels (fake-quant: the format's numerics in bf16; "
                  "emulated: slower stand-in kernels), or their records do not say (mode '—': results written "
                  "before vqbench recorded one), so their latency and memory are not ranked against native "
                  "engines. Their answers and drift are in the tables below.")


def _peak(s: dict[str, Any]) -> str:
    p = s["peak"]
    if s["device"] != "cpu":
        nvml = "NVML device used" if p.get("nvml_source") == "device" else "NVML"
        if s["backend"] == "vllm":  # the engine's up-front reservation, the same for every format: not a peak
            return f"reserved: {nvml} {fmt_bytes(p['nvml'])}"
        return f"torch {fmt_bytes(p['torch'])} · {nvml} {fmt_bytes(p['nvml'])}"
    return f"RSS {fmt_bytes(p['host'])}"


def weights_text(s: dict[str, Any]) -> str:
    """An engine's weights: measured bytes, or "~X (estimate)" where nothing was measured."""
    if s.get("weights_source") == "none":
        return "—"
    if s.get("weight_bytes_estimated"):
        return f"~{fmt_bytes(s['weight_bytes'])} (estimate)"
    return fmt_bytes(s["weight_bytes"])


def _versus(s: dict[str, Any], ref: dict[str, Any] | None) -> str | Mark:
    if ref is s:
        return Mark("reference", "ref")
    x = speedup(s, ref) if ref is not None else None
    if x is None or ref is None:
        return "—"
    text = f"{x:.2f}x faster" if x >= 1 else f"{1 / x:.2f}x slower"
    return text if ref["backend"] == s["backend"] else f"{text} (vs {ref['backend']})"


def _model(s: dict[str, Any]) -> str:
    """The model column: a pre-quantized checkpoint names the model it was quantized from."""
    return f"{s['model']} (checkpoint of {s['parent']})" if s.get("parent") else s["model"]


def _quant(s: dict[str, Any]) -> str:
    return "—" if not s["quantize_s"] else fmt_s(s["quantize_s"]) + (" (cached)" if s["quantize_cached"] else "")


def _errors(s: dict[str, Any]) -> str | Mark:
    return Mark(str(s["errors"]), "error") if s["errors"] else "0"


def _mode_note(s: dict[str, Any]) -> str:
    """Why an engine is in the table apart: its mode and the mode's note, or that its records name none."""
    where = f"{s['backend']}/{s['format']} on {device_label(s)}"
    if not s["mode"]:
        return f"{where}: its records name no mode (older results)."
    return f"{where} is {s['mode']}" + (f": {s['mode_note'].rstrip('.')}" if s["mode_note"] else "") + "."


def speed_section(summaries: list[dict[str, Any]], *, reference: str) -> Section:
    """One row per engine on real kernels: load, latency, speedup, TTFT, decode rate, memory, errors;
    then, apart, the engines whose latency is emulation."""
    native = [s for s in summaries if real_kernels(s)]
    emulated = [s for s in summaries if not real_kernels(s)]
    by_eng = {s["engine"]: s for s in native}
    roof = any(s["roofline"] for s in native)
    headers = ["model", "backend", "format", "device", "videos", "load s", "quantize s", "latency s/video",
               "total s", f"vs {reference}", "TTFT s", "decode tok/s", "video decode s", "memory held", "weights"]
    headers += ["roofline ratio"] * roof + ["errors"]
    rows = []
    parents = {s["model"]: s["parent"] for s in summaries if s.get("parent")}
    for s in native:
        ref = reference_engine(s["engine"], by_eng, reference, parents)
        row: list[str | Mark] = [
            _model(s), s["backend"], s["format"], device_label(s), str(s["videos"]), fmt_s(s["load_s"]), _quant(s),
            fmt_s(s["latency_s"]), fmt_s(s["total_s"]), _versus(s, by_eng[ref] if ref else None), fmt_s(s["ttft_s"]),
            f"{s['decode_tok_s']:.1f}" if s["decode_tok_s"] else "—", fmt_s(s["video_decode_s"]), _peak(s),
            weights_text(s)]
        if roof:
            ratio = s["roofline"].get("ratio")
            row.append(f"{ratio:.2f}" if ratio is not None else "—")
        row.append(_errors(s))
        rows.append(row)
    notes = [LATENCY_NOTE]
    if any(s["device"] != "cpu" for s in summaries):
        notes.append("GPU peak memory is the engine's peak over the memory its processes held before it loaded, "
                     "summed over every process of the engine (vLLM runs its engine core in a child process): "
                     "torch's allocator (this process) and NVML's per-process figures.")
    if any(s["device"] != "cpu" and s["backend"] == "vllm" for s in summaries):
        notes.append("vLLM's 'reserved' memory is what its engine takes up front (gpu_memory_utilization of the "
                     "device, mostly KV cache), whatever the format: it is not a peak and does not tell formats "
                     "apart. The load section's capacity table does (weights as loaded, KV cache, concurrent videos).")
    if any(s["peak"].get("nvml_source") == "device" for s in summaries):
        notes.append("'NVML device used': NVML attributed no memory to the engine's processes (a container with its "
                     "own PID namespace hides their host PIDs from it), so the figure is the device's used memory over "
                     "its pre-load baseline, which includes any other process on the GPU.")
    if any(s.get("weight_bytes_estimated") for s in summaries):
        notes.append("Weights shown as '~X (estimate)' were not measured: a shape-only or config-only checkpoint "
                     "loads dummy weights and has no weight files, so the figure is the parameter count times the "
                     "format's nominal bytes per weight.")
    if any(s["device"] == "cpu" for s in summaries):
        notes.append("CPU peak memory is the engine's own peak resident memory over the baseline its processes "
                     "held before it loaded, summed over every process of the engine.")
    tables = [Table(headers, rows)] if rows else []
    if emulated:
        e_headers = ["model", "backend", "format", "device", "mode", "videos", "load s", "quantize s",
                     "emulated latency s/video", "memory held", "weights", "errors"]
        e_rows: list[list[str | Mark]] = [
            [_model(s), s["backend"], s["format"], device_label(s), s["mode"] or "—", str(s["videos"]),
             fmt_s(s["load_s"]), _quant(s), fmt_s(s["latency_s"]), _peak(s), weights_text(s), _errors(s)]
            for s in emulated]
        tables.append(Table(e_headers, e_rows, caption=EMULATION_NOTE))
        notes += list(dict.fromkeys(_mode_note(s) for s in emulated))  # once per backend/format/device, not per model
    return Section("Speed and memory", notes, tables)


def _answer_label(rec: Mapping[str, Any] | None) -> str:
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

    def score(self, rec: Mapping[str, Any], truth: str | None) -> None:
        if truth is not None:
            self.judged += 1
            correct = rec.get("correct")
            self.right += int(correct if correct is not None else rec.get("predicted") == truth)


def _answer_cell(rec: Mapping[str, Any] | None, ref: Mapping[str, Any] | None, tally: _Tally,
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


def _rate(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}% ({k}/{n})" if n else "—"


def answers_section(records: list[CellRecord], *, reference: str) -> Section:
    """Per (model, task), the predicted label of every video in every format, flips marked, then each
    format's agreement with the reference and its accuracy where the truth is known."""
    section = Section("Answers per video")
    parents = parents_of(records)  # a checkpoint's answers sit beside the model it was quantized from
    by_group: dict[tuple[str, str], dict[tuple[EngineKey, str], CellRecord]] = defaultdict(dict)
    for rec in records:
        model = str(rec.get("model"))
        by_group[(parents.get(model, model), str(rec.get("task")))][(engine_of(rec), str(rec.get("video")))] = rec
    for (model, task), cells in sorted(by_group.items()):
        engines = ordered_engines(list(cells.values()), reference, parents)
        videos = list(dict.fromkeys(v for _, v in cells))
        refs = {e: reference_engine(e, engines, reference, parents) for e in engines}
        many_backends, many_devices = len({e[1] for e in engines}) > 1, len({e[3:] for e in engines}) > 1
        label = {e: (f"{e[1]}/" if many_backends else "") + e[2]
                 + (f"@{e[4] if e[4] and e[4] != e[3] else e[3]}" if many_devices else "")
                 + (f" ({e[0]})" if e[0] != model else "") for e in engines}
        truth = {v: next((c["truth"] for (_, w), c in cells.items() if w == v and c.get("truth")), None)
                 for v in videos}
        has_truth = any(truth.values())
        tallies = {e: _Tally() for e in engines}
        rows = []
        for v in videos:
            answers = [_answer_cell(cells.get((e, v)), cells.get((ref, v)) if (ref := refs[e]) is not None else None,
                                    tallies[e], truth[v])
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


def baseline_section(baseline: Results, results: Results, *, threshold_pct: float = 5.0) -> Section:
    from core.report.compare import compare

    cmp = compare(baseline.speed(), results.speed(), threshold_pct=threshold_pct)
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
    rows = [[s["model"], s["backend"], s["format"], device_label(s), *(fmt_s(s["roofline"].get(k)) for k in keys)]
            for s in summaries if s["roofline"]]
    return Section("Roofline", ["Mean over videos of each cell's roofline figures."],
                   [Table(["model", "backend", "format", "device", *keys], rows)])


def errors_section(results: Results) -> Section | None:
    bad = list(results.errors.values())
    if not bad:
        return None
    rows = [[str(r.get("cell") or "/".join(cell_key(r))), str(r.get("error_type", "")),
             str(r.get("error", "")).splitlines()[0][:200] if r.get("error") else ""] for r in bad]
    return Section("Errors", [f"{len(bad)} cells failed."], [Table(["cell", "error", "message"], rows)])


def time_section(results: Results) -> Section | None:
    """Where each session's wall time went (phases), and every engine load with its parts."""
    if not results.sessions and not results.engines:
        return None
    sec = Section("Where the time went", ["Each process's wall time split into phases; a phase's own time excludes "
                                          "the phases nested in it, so the phases and 'unattributed' add up to the "
                                          "wall time."])
    if results.sessions:
        phases = list(dict.fromkeys(p for s in results.sessions for p in s.get("phases", {})))
        headers = ["process", "wall s", *phases, "unattributed s", "engine loads"]
        rows = [[str(s.get("worker", "main")), fmt_s(s.get("wall_s")),
                 *(fmt_s(s.get("phases", {}).get(p)) for p in phases), fmt_s(s.get("unattributed_s")),
                 str(sum((s.get("loads") or {}).values()))] for s in results.sessions]
        sec.tables.append(Table(headers, rows))
    loads = [e for e in results.engines if e.get("event") == "load"]
    if loads:
        rows = []
        for e in loads:
            d = e.get("details") or {}
            det = d.get("details") or {}
            rows.append([e["engine"], fmt_s(d.get("wall_s")), fmt_s(d.get("load_s")), fmt_s(d.get("quantize_s")),
                         fmt_s(det.get("engine_s")), fmt_s(det.get("warmup_s")), str(d.get("load_count", "—"))])
        sec.tables.append(Table(["engine", "load wall s", "load s", "quantize/export s", "engine start s",
                                 "warm-up s", "load #"], rows))
    closes = [e for e in results.engines if e.get("event") == "close"]
    leaks = [e for e in closes if not (e.get("details") or {}).get("returned_to_baseline", True)]
    if closes:
        sec.paragraphs.append(f"{len(closes)} engines closed; {len(closes) - len(leaks)} returned to their pre-load "
                              "memory within tolerance" + (f"; not returned: {', '.join(e['engine'] for e in leaks)}"
                                                           if leaks else "."))
    return sec


def setup_lines(results: Results) -> list[str]:
    """What the numbers were measured on: machine, frames per clip, tokens, rounds."""
    every = results.answers()
    ok = [r for r in every if r.get("status", "ok") == "ok"]
    machines = sorted({str(r.get("gpu_name") or r.get("gpu_class")) for r in ok} - {"None"})
    frames = sorted({(f.get("frames"), f.get("sampled_fps"), f.get("width"), f.get("height"))
                     for r in ok if (f := r.get("frames"))}, key=str)
    videos = {(r.get("task"), r.get("video")) for r in every}
    lines = [f"{len(every)} cells, {len(videos)} videos" + (f", on {', '.join(machines)}" if machines else "") + "."]
    if len(frames) == 1 and frames[0][0]:
        n, fps, w, h = frames[0]
        lines.append(f"Each clip: {n} frames at {fps:g} fps, {w}x{h}; "
                     f"{mean(t.get('video') for r in ok if (t := r.get('tokens'))):.0f} video tokens on average; "
                     f"{max((len(rounds_of(r)) for r in results.speed()), default=0)} timed rounds per cell.")
    from core.report.drift import clock_lines

    return lines + clock_lines(results)


def load_section(results: Results) -> Section | None:
    """The load scenarios (``core.load``): per engine the offline rate, the largest rate at the SLO, camera
    streams, KV capacity and their ratios to the reference format; and the sweep's throughput-latency points."""
    if not results.load:
        return None
    from core.load.report import markdown

    lines = markdown(results.load)
    tables, current, caption = [], [], ""
    for line in lines + [""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            if current:
                tables.append(Table(current[0], [r for r in current[2:]], caption=caption))
                current, caption = [], ""
            if line.strip():
                caption = line.strip()
    return Section("Under load (a real vLLM server)", [
        "Each engine served by `vllm serve` with its cells' own arguments; its clips answered alone first (the "
        "reference for batch drift). Largest rate: Poisson arrivals meeting p99 end-to-end latency within the SLO "
        "(judged on the max where a point has fewer than 100 requests). Camera streams: each sends a clip per "
        "period; the largest count whose p99 stays within it. KV capacity: vLLM's own KV cache tokens over one "
        "request's tokens."], tables)


def sections(results: Results, *, baseline: Results | None = None,
             reference: str = REFERENCE_FORMAT) -> list[Section]:
    """Every section of the report, for the Markdown and HTML renderers alike."""
    summaries = summarize(results, reference=reference)
    out = [speed_section(summaries, reference=reference), answers_section(results.answers(), reference=reference)]
    from core.report.drift import drift_section, history_section

    out += [s for s in (drift_section(results), history_section(results)) if s is not None]
    if baseline is not None:
        out.append(baseline_section(baseline, results))
    out += [s for s in (load_section(results), roofline_section([s for s in summaries if real_kernels(s)]),
                        time_section(results), errors_section(results)) if s is not None]
    return out
