"""Tables of ``load`` records: per engine, the offline rate, the largest rate meeting the SLO, the camera
streams one device holds, the KV capacity, and each one's ratio to the reference format of the same model,
backend and device class; and the throughput-vs-latency points each sweep measured.

``python -m core.load.report RESULTS.jsonl`` prints them (markdown)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        for line in Path(p).read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("type") == "load":
                    out.append(rec)
    return out


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Per (model, backend, gpu_class, task, format): the newest figures of each scenario."""
    rows: dict[tuple, dict[str, Any]] = {}
    newest: dict[tuple, Mapping[str, Any]] = {}
    for rec in sorted(records, key=lambda r: r.get("time", 0)):  # a later run of a scenario replaces an earlier one
        newest[(rec.get("engine"), rec.get("task"), rec.get("scenario"))] = rec
    for rec in sorted(newest.values(), key=lambda r: r.get("time", 0)):
        key = (rec.get("model"), rec.get("backend"), rec.get("gpu_class"), rec.get("task"), rec.get("format"))
        row = rows.setdefault(key, {})
        row.setdefault("machines", set()).add(machine_id(rec))
        if rec.get("status") != "ok":
            row.setdefault("errors", []).append(f"{rec.get('scenario')}: {rec.get('error')}")
            if rec.get("scenario") == "sweep":  # the points it finished before it failed still stand
                row["sweep_points"] = _curve(rec.get("finished_points") or [])
            continue
        res, cap = rec["result"], rec.get("capacity") or {}
        row["capacity"] = cap.get("concurrent_videos")
        row["kv_tokens"] = cap.get("kv_cache_tokens")
        row["weights_gib"] = cap.get("weights_gib")
        row["kv_gib"] = cap.get("kv_cache_gib")
        row["alone_e2e_p50"] = ((rec.get("alone") or {}).get("e2e_s") or {}).get("p50")
        row.setdefault("batch_drift", {})[rec["scenario"]] = rec["batch_drift"]
        if rec["scenario"] == "offline":
            row["offline_vps"] = res.get("videos_per_s")
            row["offline_tok_s"] = res.get("output_tokens_per_s")
        elif rec["scenario"] == "sweep":
            row["slo_rate"] = res.get("largest_rate_per_s")
            row["slo"] = res.get("slo_e2e_s")
            row["sweep_converged"] = res.get("converged")
            row["sweep_points"] = _curve(res["points"])
            row["sweep_confirmation"] = _curve([res["confirmation"]])[0] if res.get("confirmation") else None
        elif rec["scenario"] == "camera":
            row["streams"] = res.get("largest_streams")
            row["period"] = res.get("period_s")
            row["streams_exact"] = res.get("exact")
        elif rec["scenario"] == "server":
            row["server"] = {"rate": res["offered"]["rate_per_s"], "p99": res["e2e_s"].get("p99"),
                             "goodput": (res.get("slo") or {}).get("goodput_per_s")}
    return rows


def machine_id(rec: Mapping[str, Any]) -> str | None:
    """The machine a record was measured on (GPU: its card's NVML UUID and the host; CPU: the host and its
    CPU), or None where the record cannot say (records written before 2026-12-07 name no machine)."""
    m = rec.get("machine") or {}
    if rec.get("device") == "cpu":
        return f"{m['host']} / {m.get('cpu')}" if m.get("host") else None
    return f"{m['gpu_uuid']} / {m.get('host')}" if m.get("gpu_uuid") else None


def same_machine(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether every figure of rows ``a`` and ``b`` comes from one known machine."""
    ma, mb = a.get("machines") or {None}, b.get("machines") or {None}
    return len(ma) == 1 and ma == mb and None not in ma


class CurvePoint(NamedTuple):
    """One sweep point as the report draws it (ordered by offered rate first)."""

    rate: float
    p99: float | None
    max: float | None
    videos_per_s: float | None
    met: bool
    requests: int
    over: int | None
    """Requests over the SLO (errors included); None for records that kept no counts."""
    verdict: str | None
    """``scenarios.slo_confidence``'s verdict at 95%."""


def _curve(points: Sequence[Mapping[str, Any]]) -> list[CurvePoint]:
    """Each sweep point's figures; the verdict is recomputed from the counts for records written before it
    was kept."""
    from core.load.scenarios import slo_confidence

    out = []
    for p in points:
        slo = p["slo"]
        conf = slo.get("confidence") or (slo_confidence(p["requests"] - slo["within"], p["requests"])
                                         if slo.get("within") is not None else {})
        out.append(CurvePoint(p["offered"]["rate_per_s"], p["e2e_s"].get("p99"), p["e2e_s"].get("max"),
                              p.get("videos_per_s"), slo["met"], p["requests"], conf.get("over"), conf.get("verdict")))
    return out


def confirmed_miss(curve: Sequence[CurvePoint]) -> float | None:
    """The lowest offered rate whose sample shows, at 95%, more than 1% of requests over the SLO."""
    missed = [point.rate for point in curve if point.verdict == "missed"]
    return min(missed) if missed else None


def _confirmation(point: CurvePoint | None) -> str:
    """What the sweep's confirmation point said about its rate (empty where none was run)."""
    if point is None:
        return ""
    counts = f"{point.over} of {point.requests} over"
    if point.verdict == "met":
        return f"; confirmed at 95%: {counts}"
    return f"; not confirmed at 95%: {counts} ({point.verdict})"


def drift_cell(by_scenario: Mapping[str, Mapping[str, Any]]) -> str:
    """Batch drift over a format's scenarios: one verdict (or each scenario's where they differ), the label
    flips and changed answers it rests on, and what the sample cannot tell. "inconclusive" alone read as
    "no idea" where 2,445 answers had flipped no label and only the accuracy test lacked clips."""
    if not by_scenario:
        return "-"
    statuses = {k: d.get("status") for k, d in sorted(by_scenario.items())}
    verdict = (next(iter(statuses.values())) if len(set(statuses.values())) == 1
               else ", ".join(f"{k}: {v}" for k, v in statuses.items()))
    n = sum(d.get("n") or 0 for d in by_scenario.values())
    if not n:  # a record that kept no counts
        return str(verdict)
    flips = sum(d.get("flips") or 0 for d in by_scenario.values())
    changed = sum(d.get("token_sequence_changes") or 0 for d in by_scenario.values())
    cannot = sorted({f"{t['metric']} needs {t['clips_needed']} clips, has {t['n']}"
                     for d in by_scenario.values() for t in (d.get("verdict") or {}).get("sensitivity", [])
                     if not t.get("conclusive") and t.get("clips_needed") is not None})
    return (f"{verdict}: {flips} label flips in {n:,} answers, {changed:,} with later tokens changed"
            + (f"; cannot tell: {'; '.join(cannot)}" if cannot else ""))


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _ratio(x: Any, ref: Any, mark: str = "") -> str:
    return f"{x / ref:.2f}x{mark}" if isinstance(x, (int, float)) and isinstance(ref, (int, float)) and ref else "-"


ELSEWHERE = "†"
ELSEWHERE_NOTE = (f"{ELSEWHERE}: a ratio against a bf16 run on another machine, or on one these records cannot show "
                  "is the same (no GPU UUID and host recorded): it compares machines as well as formats. On two "
                  "leases of one H100 model, one W8A8 checkpoint's largest rate at the SLO was 14.7 and 33.4 "
                  "videos/s (2026-12-07).")


def markdown(records: Sequence[Mapping[str, Any]], *, reference_format: str = "bf16") -> list[str]:
    rows = summarize(records)
    flagged = False
    lines = ["| model | device | format | offline videos/s | largest rate at SLO (videos/s) | camera streams | "
             "KV capacity (videos) | weights GiB | vs bf16: rate / streams / capacity | batch drift |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(rows, key=lambda k: tuple(str(x) for x in k)):
        model, backend, gclass, task, fmt = key
        r = rows[key]
        ref = rows.get((model, backend, gclass, task, reference_format), {})
        mark = "" if ref is r or same_machine(r, ref) else ELSEWHERE
        below = confirmed_miss(r.get("sweep_points") or [])
        slo = (f" (p99 e2e <= {r['slo']:g} s{'' if r.get('sweep_converged') else ', not converged'}"
               f"{f'; missed at 95% from {below:.3g}' if below is not None else ''}"
               f"{_confirmation(r.get('sweep_confirmation'))})" if r.get("slo") else "")
        streams = f"{r['streams']} at 1 clip/{r['period']:g} s" if r.get("streams") is not None else "-"
        drift = drift_cell(r.get("batch_drift") or {})
        ratios = [_ratio(r.get(k), ref.get(k), mark) for k in ("slo_rate", "streams", "capacity")]
        flagged = flagged or any(x.endswith(ELSEWHERE) for x in ratios)
        lines.append(f"| {model} | {gclass} | {fmt} | {_f(r.get('offline_vps'))} | {_f(r.get('slo_rate'))}{slo} | "
                     f"{streams} | {_f(r.get('capacity'))} | {_f(r.get('weights_gib'))} | "
                     f"{' / '.join(ratios)} | {drift} |")
        for err in r.get("errors", []):
            lines.append(f"|  |  | {fmt} error | {err[:200]} |  |  |  |  |  |  |")
    if flagged:
        lines = [ELSEWHERE_NOTE, "", *lines]
    curve = [f"| {k[0]} | {k[4]} | {rate:.3g} | {_f(p99)} | {_f(mx)} | {_f(vps)} | {'yes' if met else 'no'} | {n} "
             f"| {_f(over)} | {verdict or '-'} |"
             for k, r in sorted(rows.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
             for rate, p99, mx, vps, met, n, over, verdict in sorted(r.get("sweep_points") or [])]
    if curve:
        lines += ["",
                  "Throughput vs latency (each sweep point; p99 needs >= 100 requests, else judged on the max). "
                  "\"Meets SLO\" is the point's own p99; \"at 95%\" asks whether its sample shows at most 1% of "
                  "requests over the SLO (met: needs >= 299 requests and none over), more (missed), or cannot tell "
                  "(within noise); exact binomial bounds, requests taken as independent:",
                  "",
                  "| model | format | offered rate/s | p99 e2e s | max e2e s | served videos/s | meets SLO "
                  "| requests | over SLO | at 95% |",
                  "|---|---|---|---|---|---|---|---|---|---|", *curve]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if not args:
        print("usage: python -m core.load.report RESULTS.jsonl [...]", file=sys.stderr)
        return 2
    records = load_records(Path(a) for a in args)
    if not records:
        print("no load records in " + ", ".join(args))
        return 1
    print("\n".join(markdown(records)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
