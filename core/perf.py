"""Performance probes that print a table (run on a GPU box; CPU works for a smoke check).

    python -m core.perf peaks                               # measured bandwidth and bf16 TFLOP/s
    python -m core.perf modes --model qwen2.5-vl-7b         # HF eager vs fast (static cache + compile)
    python -m core.perf overhead --model qwen2.5-vl-7b      # suite timer vs a bare loop, same engine

Numbers go to stdout as a Markdown table and, with ``--json FILE``, to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from core import dataset, device as devices
from core.backends.base import EngineOptions, Request
from core.formats import get_format
from core.models import registry
from core.settings import Settings
from core.tasks import AnomalyTask
from core.video import load_frames


def _request(max_new_tokens: int) -> Request:
    clip = dataset.fixture_clips()[4]
    task = AnomalyTask()
    frames = load_frames(clip.path, Settings().sampling())
    return Request(clip=clip, frames=frames, messages=task.messages(clip), candidates=task.candidates(clip),
                   max_new_tokens=max_new_tokens)


def _rounds(fn, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def modes(model: str, fmt: str, rounds: int, tokens: int) -> list[dict[str, Any]]:
    """HF eager vs fast mode on one model: median total, prefill, decode per token, roofline ratio."""
    from core.backends.hf import HFBackend
    from core.metrics.roofline import annotate, measure_peaks

    dev = devices.primary()
    req = _request(tokens)
    rows = []
    for fast in (False, True):
        b = HFBackend(registry.resolve(model), get_format(fmt), dev, EngineOptions(fast=fast, ignore_eos=True))
        with b:
            gens = []
            times = _rounds(lambda: gens.append(b.generate(req)), rounds, warmup=3 if fast else 1)
            g = gens[-1]
            row = {"model": model, "format": fmt, "mode": "fast (static cache + compile)" if fast else "eager",
                   "median_s": statistics.median(times), "min_s": min(times),
                   "prefill_s": statistics.median(x.timings["prefill_s"] for x in gens[-rounds:]),
                   "video_tokens": g.video_tokens, "new_tokens": g.new_tokens}
            row["decode_per_token_s"] = statistics.median(
                x.timings["decode_s"] / max(x.new_tokens - 1, 1) for x in gens[-rounds:])
            if dev.kind == "cuda":
                fake = {"tokens": {"prompt": g.prompt_tokens, "video": g.video_tokens, "new": g.new_tokens},
                        "timings": {"generate_s": row["median_s"], "prefill_s": row["prefill_s"],
                                    "decode_per_token_s": row["decode_per_token_s"]}}
                rf = annotate(fake, config=b.model_config(), lm_weight_bytes=b.lm_weight_bytes(),
                              peaks=measure_peaks(dev.index))
                row.update(floor_s=rf["floor_s"], ratio=rf["ratio"])
            rows.append(row)
    return rows


def overhead(model: str, fmt: str, rounds: int, tokens: int) -> list[dict[str, Any]]:
    """The suite's cell timer (bench.timing, as pytest-benchmark calls it) vs a bare loop."""
    from core.backends.hf import HFBackend

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.timing import benchmark_timer

    class _NoBenchmark:  # the timer's own loop: what runs when pytest-benchmark is off (xdist)
        disabled = True

    dev = devices.primary()
    req = _request(tokens)
    b = HFBackend(registry.resolve(model), get_format(fmt), dev, EngineOptions(ignore_eos=True))
    rows = []
    with b:
        _rounds(lambda: b.generate(req), 3, 0)
        for i in range(2):  # interleave to cancel drift
            bare = _rounds(lambda: b.generate(req), rounds, 1)
            _, suite = benchmark_timer(_NoBenchmark(), rounds=rounds, warmup_rounds=1)(lambda: b.generate(req))
            rows.append({"pass": i + 1, "bare_median_s": statistics.median(bare),
                         "suite_median_s": statistics.median(suite),
                         "overhead_pct": 100 * (statistics.median(suite) / statistics.median(bare) - 1)})
    return rows


def summarize(path: Path, reference: str = "bf16") -> list[dict[str, Any]]:
    """One row per engine of a results file: latency, memory, weights, roofline, agreement."""
    from core import results

    cells = results.cells(path)
    engines: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        engines.setdefault(c["engine"], []).append(c)
    rows = []
    for eng, cs in sorted(engines.items()):
        ok = [c for c in cs if c["status"] == "ok"]
        row: dict[str, Any] = {"engine": eng, "ok": len(ok), "err": len(cs) - len(ok)}
        if ok:
            c0 = ok[0]
            row["median_s"] = statistics.median(statistics.median(c["rounds_s"]) if c.get("rounds_s")
                                                else c["timings"]["total_s"] for c in ok)
            row["ttft_s"] = statistics.median(c["timings"]["prefill_s"] for c in ok)
            row["vid_tok"] = c0["tokens"]["video"]
            row["weights_MiB"] = c0["load"].get("weight_bytes", 0) / 2**20
            row["quant_s"] = c0["load"].get("quantize_s")
            mem = c0.get("memory", {})
            row["peak_GiB"] = (mem.get("torch_peak_allocated_bytes") or mem.get("rss_peak_bytes") or 0) / 2**30
            rf = [c["roofline"]["ratio"] for c in ok if (c.get("roofline") or {}).get("ratio")]
            row["x_floor"] = statistics.median(rf) if rf else None
            ref = engines.get(eng.replace(f"-{c0['format']}-", f"-{reference}-", 1), [])
            ref_by = {c["video"]: c for c in ref if c["status"] == "ok"}
            pairs = [(c, ref_by[c["video"]]) for c in ok if c["video"] in ref_by]
            row["agree"] = f"{sum(a['predicted'] == b['predicted'] for a, b in pairs)}/{len(pairs)}" if pairs else "-"
        else:
            row["error"] = cs[0].get("error", "")[:120]
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("probe", choices=["peaks", "modes", "overhead", "summarize"])
    p.add_argument("results", nargs="?", type=Path, help="summarize: a results JSON-lines file")
    p.add_argument("--model", default="tiny")
    p.add_argument("--format", default="bf16")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--tokens", type=int, default=7)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if a.probe == "peaks":
        from core.metrics.roofline import measure_peaks

        dev = devices.primary()
        if dev.kind != "cuda":
            print(f"no GPU: {devices.no_gpu_reason()}", file=sys.stderr)
            return 2
        pk = measure_peaks(dev.index)
        rows = [{"gpu": dev.name, "bandwidth_GBps": pk["bandwidth_Bps"] / 1e9, "bf16_TFLOPs": pk["matmul_flops"] / 1e12}]
    elif a.probe == "summarize":
        rows = summarize(a.results)
    elif a.probe == "modes":
        rows = modes(a.model, a.format, a.rounds, a.tokens)
    else:
        rows = overhead(a.model, a.format, a.rounds, a.tokens)
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
