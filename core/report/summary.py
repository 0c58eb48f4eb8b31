"""Per-engine summaries of a run: latency from timed records only, answers from every cell.

An engine is (model, backend, format, device, GPU class): runs merged from two GPU classes keep
their engines apart. Its latency figures come from its timed records (``Results.speed()``): a
scoring re-run made for goldens or drift never moves them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from core.base.records import CellRecord, LoadDetails
from core.base.results import Results, cell_key, gpu_class_of, latency_s, rounds_of

REFERENCE_FORMAT = "bf16"
EngineKey = tuple[str, str, str, str, str]
REAL_KERNEL_MODES = {"native", "export"}
"""Modes whose latency is the format's own speed ('export' is how older results named checkpoints). A record
with no mode (older results) is not ranked: nothing says its kernels were the format's own."""


def engine_of(rec: Mapping[str, Any]) -> EngineKey:
    """(model, backend, format, device, GPU class): what loads once and answers every video, on one
    class of hardware."""
    return (str(rec.get("model")), str(rec.get("backend")), str(rec.get("format")), str(rec.get("device")),
            gpu_class_of(rec))


def device_label(summary: dict[str, Any]) -> str:
    """The device column of a summary: cpu, or cuda with its GPU class (cuda sm90) where known."""
    device, gpu_class = summary["device"], summary.get("gpu_class")
    return f"{device} {gpu_class}" if gpu_class and gpu_class != device else device


def mean(xs: Iterable[float | None]) -> float | None:
    vals = [float(x) for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def parents_of(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each pre-quantized checkpoint's model name -> the model it was quantized from (its
    ``--reference-model``, which cell records carry as ``reference_model``): a checkpoint sits beside
    that model in the report and is compared with it."""
    return {str(r["model"]): str(r["reference_model"]) for r in records if r.get("reference_model")}


def ordered_engines(records: Iterable[Mapping[str, Any]], reference: str,
                    parents: Mapping[str, str] | None = None) -> list[EngineKey]:
    """Engines grouped by model (a checkpoint right after the model it was quantized from), the
    reference format first within each device and backend."""
    parents = parents or {}
    first: dict[EngineKey, int] = {}
    for i, rec in enumerate(records):
        first.setdefault(engine_of(rec), i)
    return sorted(first, key=lambda e: (parents.get(e[0], e[0]), e[0] in parents, e[0], e[3], e[4], e[1],
                                        e[2] != reference, first[e]))


def reference_engine(eng: EngineKey, engines: Iterable[EngineKey], reference: str,
                     parents: Mapping[str, str] | None = None) -> EngineKey | None:
    """The engine a format is compared with: the reference format of the same model (a checkpoint's:
    of the model it was quantized from) on the same backend, device and GPU class, else on the same
    device and GPU class (Hugging Face first), else on the same device, else anywhere."""
    model = (parents or {}).get(eng[0], eng[0])
    cands = [e for e in engines if e[0] == model and e[2] == reference]
    for same in (lambda e: e[1] == eng[1] and e[3:] == eng[3:], lambda e: e[3:] == eng[3:], lambda e: e[3] == eng[3],
                 lambda e: True):
        found = sorted((e for e in cands if same(e)), key=lambda e: (e[1] != "hf", e))
        if found:
            return found[0]
    return None


def real_kernels(summary: dict[str, Any]) -> bool:
    """Whether an engine's latency is the format's own speed (not fake-quant or emulation)."""
    return summary.get("mode") in REAL_KERNEL_MODES


def _peak(mem: list[dict[str, Any]], *keys: str) -> float | None:
    for key in keys:
        vals = [m[key] for m in mem if m.get(key) is not None]
        if vals:
            return max(vals)
    return None


def summarize(results: Results, *, reference: str = REFERENCE_FORMAT) -> list[dict[str, Any]]:
    """One summary per engine (reference format first): latency, TTFT, decode rate, memory, load.
    Engines with only scoring records (never timed) have no latency."""
    timed: dict[EngineKey, list[CellRecord]] = defaultdict(list)
    for rec in results.speed():
        timed[engine_of(rec)].append(rec)
    answered: dict[EngineKey, list[CellRecord]] = defaultdict(list)
    for rec in results.answers():
        answered[engine_of(rec)].append(rec)
    out = []
    parents = parents_of(results.answers())
    for eng in ordered_engines(results.answers(), reference, parents):
        ok = timed.get(eng, [])
        every = answered[eng]
        good = [r for r in every if r.get("status", "ok") == "ok"]
        load = next((r["load"] for r in good if r.get("load")), LoadDetails())
        lat = {cell_key(r)[5:]: latency_s(r) for r in ok}  # (task, video)
        timings = [r.get("timings") or {} for r in ok]
        per_tok = mean(t.get("decode_per_token_s") for t in timings)
        rounds = [rounds_of(r) for r in ok]
        mem = [r.get("memory") or {} for r in ok]
        roof = [rf for r in ok if isinstance(rf := r.get("roofline"), dict)]
        out.append({
            "engine": eng, "model": eng[0], "backend": eng[1], "format": eng[2], "device": eng[3],
            "gpu_class": eng[4] or None, "parent": parents.get(eng[0]),
            "videos": len(ok), "answered": len(good), "errors": len(every) - len(good),
            "mode": next((r["mode"] for r in good if r.get("mode")), None),
            "mode_note": next((r["mode_note"] for r in good if r.get("mode_note")), ""),
            "load_s": load.get("load_s"), "quantize_s": load.get("quantize_s"),
            "quantize_cached": load.get("quantize_cached"), "weight_bytes": load.get("weight_bytes"),
            "weights_source": load.get("weights_source"),
            "weight_bytes_estimated": bool(load.get("weight_bytes_estimated")),
            "latency": lat, "latency_s": mean(lat.values()), "total_s": sum(v for v in lat.values() if v) or None,
            "latency_lo_s": mean(min(x) for x in rounds if x),
            "latency_hi_s": mean(max(x) for x in rounds if x),
            "rounds": max((len(x) for x in rounds), default=0),
            "ttft_s": mean(t.get("prefill_s") for t in timings),
            "processor_s": mean(t.get("processor_s") for t in timings),
            "decode_s": mean(t.get("decode_s") for t in timings),
            "video_decode_s": mean(t.get("video_decode_s") for t in timings),
            "decode_tok_s": 1.0 / per_tok if per_tok else None,
            "peak": {
                "torch": _peak(mem, "torch_peak_over_baseline_bytes"),
                "nvml": _peak(mem, "nvml_peak_over_baseline_bytes"),
                "nvml_source": "device" if any(m.get("nvml_source") == "device" for m in mem) else "processes",
                "host": _peak(mem, "host_peak_over_baseline_bytes", "rss_peak_bytes"),
            },
            "roofline": {k: mean(r.get(k) for r in roof) for k in sorted({k for r in roof for k, v in r.items()
                                                                         if isinstance(v, (int, float))})},
        })
    return out


def speedup(summary: dict[str, Any], ref: dict[str, Any]) -> float | None:
    """Reference latency over this engine's, on the videos both ran (2.0 = twice as fast)."""
    common = [k for k in summary["latency"] if summary["latency"][k] and ref["latency"].get(k)]
    if not common:
        return None
    return sum(ref["latency"][k] for k in common) / sum(summary["latency"][k] for k in common)
