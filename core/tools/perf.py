"""Performance probes that print a table (run on a GPU box; CPU works for a smoke check).

    python -m core.tools.perf peaks                          # measured bandwidth and bf16 TFLOP/s
    python -m core.tools.perf modes --model qwen2.5-vl-7b    # HF eager vs fast (static cache + compile)
    python -m core.tools.perf overhead --model qwen2.5-vl-7b # suite timer vs a bare loop, same engine
    python -m core.tools.perf summarize RESULTS.jsonl        # one row per engine, timed records only
    python -m core.tools.perf bare-vllm RESULTS.jsonl --model qwen2.5-vl-7b --rounds 5
                                                       # vLLM's own loop vs the suite's cell, same engine

Numbers go to stdout as a Markdown table and, with ``--json FILE``, to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from core import dataset
from core import device as devices
from core.formats import get_format
from core.models import registry
from core.requests import EngineOptions, Request
from core.settings import Settings
from core.suite.timing import benchmark_timer
from core.suite.timing import rounds as timed_rounds
from core.tasks import AnomalyTask
from core.video import load_frames


def _request(max_new_tokens: int) -> Request:
    clip = dataset.fixture_clips()[4]
    task = AnomalyTask()
    frames = load_frames(clip.path, Settings().sampling())
    return Request(clip=clip, frames=frames, messages=task.messages(clip), candidates=task.candidates(clip),
                   max_new_tokens=max_new_tokens)


def _rounds(fn, n: int, warmup: int) -> list[float]:
    return timed_rounds(fn, rounds=n, warmup_rounds=warmup)[1]


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
                rf = annotate(fake, shape=b.model_shape(), lm_weight_bytes=b.lm_weight_bytes(),
                              peaks=measure_peaks(dev.index))
                row.update(floor_s=rf["floor_s"], ratio=rf["ratio"])
            rows.append(row)
    return rows


def overhead(model: str, fmt: str, rounds: int, tokens: int) -> list[dict[str, Any]]:
    """The suite's cell timer (core.suite.timing, as the suite calls it) vs a bare loop."""
    from core.backends.hf import HFBackend

    dev = devices.primary()
    req = _request(tokens)
    b = HFBackend(registry.resolve(model), get_format(fmt), dev, EngineOptions(ignore_eos=True))
    rows = []
    with b:
        _rounds(lambda: b.generate(req), 3, 0)
        for i in range(2):  # interleave to cancel drift
            bare = _rounds(lambda: b.generate(req), rounds, 1)
            _, suite = benchmark_timer(None, rounds=rounds, warmup_rounds=1)(lambda: b.generate(req))
            rows.append({"pass": i + 1, "bare_median_s": statistics.median(bare),
                         "suite_median_s": statistics.median(suite),
                         "overhead_pct": 100 * (statistics.median(suite) / statistics.median(bare) - 1)})
    return rows


def summarize(path: Path, reference: str = "bf16") -> list[dict[str, Any]]:
    """One row per engine of a results file (timed records only): latency, TTFT, decode per token,
    speedup over the reference format on the same backend, memory, weights, roofline, agreement
    with the reference format."""
    from core import results
    from core.report.summary import reference_engine, speedup
    from core.report.summary import summarize as engine_summaries

    res = results.load(path)
    summaries = engine_summaries(res, reference=reference)
    by_engine = {s["engine"]: s for s in summaries}
    answers = {(r["model"], r["backend"], r["device"], r["task"], r["video"], r["format"]): r.get("predicted")
               for r in res.answers() if r.get("status", "ok") == "ok"}
    rows = []
    for s in summaries:
        mine = {k[:5]: v for k, v in answers.items() if k[5] == s["format"] and k[:3] == (s["model"], s["backend"],
                                                                                           s["device"])}
        ref = {k[:5]: v for k, v in answers.items() if k[5] == reference and k[:3] == (s["model"], s["backend"],
                                                                                        s["device"])}
        both = [k for k in mine if k in ref]
        peak = s["peak"]["nvml"] if s["device"] != "cpu" else s["peak"]["host"]
        ref_engine = reference_engine(s["engine"], by_engine, reference)
        ref_summary = by_engine.get(ref_engine) if ref_engine and ref_engine[1] == s["backend"] else None
        rows.append({"engine": "-".join(s["engine"]), "mode": s["mode"], "timed": s["videos"], "err": s["errors"],
                     "median_s": s["latency_s"], "ttft_s": s["ttft_s"],
                     "decode_ms_tok": 1000 / s["decode_tok_s"] if s["decode_tok_s"] else None,
                     "speedup": speedup(s, ref_summary) if ref_summary and s["latency_s"] else None,
                     "weights_MiB": (s["weight_bytes"] or 0) / 2**20, "quant_s": s["quantize_s"],
                     "peak_GiB": (peak or 0) / 2**30, "x_floor": s["roofline"].get("ratio"),
                     "agree": f"{sum(mine[k] == ref[k] for k in both)}/{len(both)}" if both else "-"})
    return rows


def bare_vllm(model: str, fmt: str, rounds: int, *, videos: str, max_videos: int, suite_results: Path | None,
              passes: int = 2) -> list[dict[str, Any]]:
    """vLLM's own loop against the suite's cell, on one engine and the same requests.

    The suite's engine is loaded once (its settings, its warm-up); then, interleaved ``passes``
    times, every clip is timed (1 warm-up + ``rounds`` rounds, median) by:

    * ``bare``: what a user writes: reset vLLM's prefix, multimodal-processor and encoder caches,
      then ``LLM.generate`` of the chat prompt and frames, greedy, no log-probs;
    * ``suite``: the suite's timer around ``VLLMBackend.generate`` with its ``before_round``;
    * ``warm``: ``bare`` without the resets (a server that has seen the video before).

    With ``suite_results`` (the suite's ``--results`` file from a run just before, on this machine),
    the suite's reported figure for this engine is compared with the bare loop too.
    """
    import vllm

    from core import results
    from core.backends.vllm import VLLMBackend
    from core.capability import check
    from core.matrix import Cell, Engine, EnginePlan
    from core.runner import build_request, sampling_for
    from core.tasks import get_task

    dev = devices.primary()
    settings = Settings(videos=videos, max_videos=max_videos)
    spec, f = registry.resolve(model), get_format(fmt)
    task = get_task("anomaly")
    clips = dataset.load(videos or task.default_dataset)[: max_videos or None]
    plan = EnginePlan(Engine(spec.name, "vllm", f.id, dev.kind), spec, f, check("vllm", f, dev, spec=spec))
    backend = VLLMBackend(spec, f, dev, settings.engine_options())
    reqs = []
    for clip in clips:
        cell = Cell(plan, task, clip)
        reqs.append(build_request(cell, load_frames(clip.path, sampling_for(cell, settings)), settings))
    with backend:
        llm, family, processor = backend.llm, backend.family, backend.processor
        params = vllm.SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens,
                                     ignore_eos=settings.ignore_eos)

        def reset() -> None:
            llm.reset_prefix_cache()
            llm.reset_mm_cache()
            llm.llm_engine.reset_encoder_cache()

        def bare(req, before):
            return timed_rounds(lambda: llm.generate([family.vllm_inputs(processor, req)], params, use_tqdm=False),
                                rounds=rounds, warmup_rounds=1, before_round=before)[1]

        def suite(req):
            return timed_rounds(lambda: backend.generate(req), rounds=rounds, warmup_rounds=1,
                                before_round=backend.before_round)[1]

        def mean_median(per_clip: list[list[float]]) -> float:
            return statistics.fmean(statistics.median(x) for x in per_clip)

        rows = []
        for i in range(passes):
            b = mean_median([bare(r, reset) for r in reqs])
            s = mean_median([suite(r) for r in reqs])
            rows.append({"engine": plan.engine.id, "pass": i + 1, "videos": len(reqs), "bare_s": b, "suite_s": s,
                         "suite/bare": s / b})
        warm = mean_median([bare(r, None) for r in reqs])
        rows.append({"engine": plan.engine.id, "pass": "warm (caches kept, labelled)", "videos": len(reqs),
                     "bare_s": warm})
    if suite_results is not None and suite_results.exists():
        timed = [r for r in results.load(suite_results).speed() if r["engine"] == plan.engine.id
                 and r["video"] in {c.id for c in clips}]
        if timed:
            reported = mean_median([r["rounds_s"] for r in timed])
            b = statistics.fmean(r["bare_s"] for r in rows if isinstance(r["pass"], int))
            rows.append({"engine": plan.engine.id, "pass": "suite's results file", "videos": len(timed),
                         "bare_s": b, "suite_s": reported, "suite/bare": reported / b})
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
    p.add_argument("probe", choices=["peaks", "modes", "overhead", "summarize", "bare-vllm"])
    p.add_argument("results", nargs="?", type=Path, help="summarize, bare-vllm: the suite's results JSON-lines file")
    p.add_argument("--videos", default="", help="bare-vllm: clips (default: the fixture clips)")
    p.add_argument("--max-videos", type=int, default=4)
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
    elif a.probe == "bare-vllm":
        rows = bare_vllm(a.model, a.format, a.rounds, videos=a.videos, max_videos=a.max_videos, suite_results=a.results)
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
