"""Performance probes that print a table (run on a GPU box; CPU works for a smoke check).

    python -m core.tools.perf peaks                          # measured bandwidth and bf16 TFLOP/s
    python -m core.tools.perf modes --model qwen2.5-vl-7b    # HF eager vs fast (static cache + compile)
    python -m core.tools.perf overhead --model qwen2.5-vl-7b # suite timer vs a bare loop, same engine
    python -m core.tools.perf summarize RESULTS.jsonl        # one row per engine, timed records only
    python -m core.tools.perf bare-vllm RESULTS.jsonl --model qwen2.5-vl-7b --rounds 5
                                                       # vLLM's own loop vs the suite's cell, same engine
    python -m core.tools.perf make-clips --folder /tmp/clips1080 --clips 64    # 1080p60 H.264 test clips
    python -m core.tools.perf decode-ahead --folder /tmp/clips1080 --model qwen2.5-vl-7b --backend vllm
                                                       # videos/s: decode-ahead vs the engine alone
    python -m core.tools.perf nvdec --folder /tmp/clips1080   # NVDEC vs PyAV: time and pixel difference

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

from core.inputs import dataset
from core.inputs.requests import EngineOptions, Request
from core.inputs.tasks import AnomalyTask
from core.inputs.video import load_frames
from core.models import registry
from core.plan import device as devices
from core.plan.formats import get_format
from core.plan.settings import Settings
from core.suite.timing import benchmark_timer
from core.suite.timing import rounds as timed_rounds


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
            gens: list[Any] = []
            times = _rounds(lambda b=b, gens=gens: gens.append(b.generate(req)), rounds, warmup=3 if fast else 1)
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
    from core.base import results
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
        rows.append({"engine": "-".join(s["engine"][:4]), "mode": s["mode"], "timed": s["videos"], "err": s["errors"],
                     "median_s": s["latency_s"], "ttft_s": s["ttft_s"],
                     "decode_ms_tok": 1000 / s["decode_tok_s"] if s["decode_tok_s"] else None,
                     "speedup": speedup(s, ref_summary) if ref_summary and s["latency_s"] else None,
                     "weights_MiB": (s["weight_bytes"] or 0) / 2**20,
                     "weights_estimated": s["weight_bytes_estimated"],  # dummy weights: params x nominal bytes
                     "quant_s": s["quantize_s"],
                     "peak_GiB": (peak or 0) / 2**30, "x_floor": s["roofline"].get("ratio"),
                     "agree": f"{sum(mine[k] == ref[k] for k in both)}/{len(both)}" if both else "-"})
    return rows


def bare_vllm(model: str, fmt: str, rounds: int, *, videos: str, max_videos: int, suite_results: Path | None,
              passes: int = 2) -> list[dict[str, Any]]:
    """vLLM's own loop against the suite's cell, on one engine and the same requests.

    The suite's engine is loaded once (its settings, its warm-up); then every clip is timed
    (1 warm-up each, then ``rounds x passes`` rounds a side, alternating round by round, medians) by:

    * ``bare``: what a user writes: reset vLLM's prefix, multimodal-processor and encoder caches,
      then ``LLM.generate`` of the chat prompt and frames, greedy, no log-probs;
    * ``suite``: the suite's timer around ``VLLMBackend.generate`` with its ``before_round``;
    * ``warm``: ``bare`` without the resets (a server that has seen the video before).

    With ``suite_results`` (the suite's ``--results`` file from a run just before, on this machine),
    the suite's reported figure for this engine is compared with the bare loop too.
    """
    import vllm

    from core.backends.vllm import VLLMBackend, prompt_inputs
    from core.base import results
    from core.cells.runner import build_request, sampling_for
    from core.inputs.tasks import get_task
    from core.plan.matrix import Cell

    dev = devices.primary()
    settings = Settings(videos=videos, max_videos=max_videos)
    task = get_task("anomaly")
    clips = dataset.load(videos or task.default_dataset)[: max_videos or None]
    plan = _run_plan(model, "vllm", fmt, "auto", settings)
    backend = VLLMBackend(plan.spec, plan.fmt, dev, settings.engine_options())
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

        def bare_once(req):
            return llm.generate([prompt_inputs(family, processor, req)], params, use_tqdm=False)

        def timed(fn, before):
            before()
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

        def mean_median(per_clip: list[list[float]]) -> float:
            return statistics.fmean(statistics.median(x) for x in per_clip)

        # Round by round, alternating which goes first: drift of the machine or the engine (seen:
        # 15% between two passes of the same loop) then falls on both sides alike.
        bare_rounds: list[list[float]] = [[] for _ in reqs]
        suite_rounds: list[list[float]] = [[] for _ in reqs]
        for i, req in enumerate(reqs):
            timed(lambda req=req: bare_once(req), reset)  # warm-up of each side
            timed(lambda req=req: backend.generate(req), backend.before_round)
            for r in range(rounds * passes):
                pair = [(bare_rounds, lambda req=req: timed(lambda: bare_once(req), reset)),
                        (suite_rounds, lambda req=req: timed(lambda: backend.generate(req), backend.before_round))]
                for book, run in (pair if r % 2 == 0 else pair[::-1]):
                    book[i].append(run())
        b, s_ = mean_median(bare_rounds), mean_median(suite_rounds)
        ratios = [statistics.median(x) / statistics.median(y) for x, y in zip(suite_rounds, bare_rounds)]
        rows = [{"engine": plan.engine.id, "pass": f"interleaved, {rounds * passes} rounds a side per clip",
                 "videos": len(reqs), "bare_s": b, "suite_s": s_, "suite/bare": s_ / b,
                 "per-clip ratio min..max": f"{min(ratios):.3f}..{max(ratios):.3f}"}]
        warm = [[timed(lambda req=req: bare_once(req), lambda: None) for _ in range(rounds)] for req in reqs]
        rows.append({"engine": plan.engine.id, "pass": "warm (caches kept, labelled)", "videos": len(reqs),
                     "bare_s": mean_median(warm)})
    if suite_results is not None and suite_results.exists():
        recorded = [r for r in results.load(suite_results).speed() if r["engine"] == plan.engine.id
                    and r["video"] in {c.id for c in clips}]
        if recorded:
            reported = statistics.fmean(statistics.median(r.get("rounds_s") or [0.0]) for r in recorded)
            b = rows[0]["bare_s"]
            rows.append({"engine": plan.engine.id, "pass": "suite's results file", "videos": len(recorded),
                         "bare_s": b, "suite_s": reported, "suite/bare": reported / b})
    return rows


def make_clips(folder: Path, *, clips: int, size: str = "1920x1080", fps: int = 60, seconds: float = 6.0,
               unique: int = 8) -> list[Path]:
    """A folder of ``clips`` H.264 clips (``core.inputs.synth.encode_large``): ``unique`` distinct scenes,
    the rest copies under other names (decoding a copy costs the same; engines run with their caches
    reset per request). Reused when already there."""
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    from core.inputs import synth

    w, h = (int(x) for x in size.lower().split("x"))
    folder.mkdir(parents=True, exist_ok=True)
    kinds = synth.KINDS
    first = [folder / f"u{i:02d}_{kinds[i % len(kinds)]}.mp4" for i in range(min(unique, clips))]
    todo = [p for p in first if not p.is_file()]
    if todo:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=max(1, min(4, len(todo))),
                                 mp_context=multiprocessing.get_context("spawn")) as ex:
            list(ex.map(_encode_one, [(str(p), kinds[i % len(kinds)], i, w, h, fps, seconds)
                                      for i, p in enumerate(first) if p in todo]))
    out = list(first)
    for i in range(len(first), clips):
        dst = folder / f"c{i:03d}.mp4"
        if not dst.is_file():
            shutil.copyfile(first[i % len(first)], dst)
        out.append(dst)
    return out


def _encode_one(args) -> str:
    from core.inputs import synth

    path, kind, seed, w, h, fps, seconds = args
    tmp = Path(path).with_suffix(".part.mp4")
    synth.encode_large(tmp, kind=kind, seed=seed, width=w, height=h, fps=fps, seconds=seconds)
    tmp.replace(path)
    return path


def _run_plan(model: str, backend: str, fmt: str, device: str, settings: Settings):
    """The engine's plan as ``vqbench run`` makes it (``core.plan.matrix.select_engine``)."""
    from core.base.errors import Unsupported
    from core.plan.matrix import select_engine

    plan = select_engine(settings, model=model, backend=backend, fmt=fmt, device=device).plan
    if not plan.verdict:
        raise Unsupported(plan.verdict.reason)
    return plan


def decode_ahead(folder: Path, *, model: str, backend: str, fmt: str, device: str, clips: int, passes: int = 2,
                 decoder: str = "pyav", workers: int | None = None) -> list[dict[str, Any]]:
    """End-to-end videos/s over a folder, three ways, on one loaded engine, interleaved ``passes`` times:

    * ``engine alone``: every clip decoded beforehand (untimed); the timed loop only answers
      (``run_cell``, the cell ``vqbench run`` times) - the ceiling;
    * ``decode-ahead``: ``vqbench run``'s loop (``answer_clips``): workers decode while the engine
      answers; the clock includes starting the worker pool and waiting for the first clip;
    * ``serial``: the same loop with no workers (decode, then answer: vqbench before decode-ahead).

    ``ratio`` is videos/s over the engine alone's (goal >= 0.9 for the 7B shape in vLLM bf16 on 16
    cores). ``steady`` leaves out the wait for the first clip (pool start and its decode)."""
    import time

    from core.cells.answering import answer_clips, one_round
    from core.cells.runner import EnginePool, FrameCache, run_cell, sampling_for
    from core.inputs.decode import resolve_decoder
    from core.inputs.tasks import get_task
    from core.plan.matrix import Cell

    settings = Settings(videos=str(folder), ignore_eos=True)
    paths = dataset.scan(folder).clips[:clips]
    plan = _run_plan(model, backend, fmt, device, settings)
    task = get_task("anomaly")
    pool = EnginePool(settings)
    used, why = resolve_decoder(decoder)
    rows: list[dict[str, Any]] = []
    try:
        cache = FrameCache(max_bytes=64 * 2**30)
        t0 = time.perf_counter()
        for clip in paths:  # pre-decode (untimed) and warm the engine up on the first clip
            cache.get(clip, sampling_for(Cell(plan, task, clip), settings))
        predecode_s = time.perf_counter() - t0
        run_cell(Cell(plan, task, paths[0]), pool, cache, settings, timer=one_round)
        engine_vps = None
        for i in range(passes):
            t0 = time.perf_counter()
            lat = [run_cell(Cell(plan, task, c), pool, cache, settings, timer=one_round)["timings"]["total_s"]
                   for c in paths]
            wall = time.perf_counter() - t0
            engine_vps = len(paths) / wall
            rows.append({"pass": i + 1, "mode": "engine alone (pre-decoded)", "videos": len(paths), "wall_s": wall,
                         "videos_per_s": engine_vps, "ratio": 1.0, "engine_s": sum(lat),
                         "decode_s": predecode_s if i == 0 else None})
            for mode, w in (("decode-ahead", workers), ("serial (no workers)", 0)):
                plans: list[Any] = []
                t0 = time.perf_counter()
                done = list(answer_clips(paths, plan=plan, task=task, pool=pool, settings=settings,
                                         decoder=used, workers=w, on_plan=plans.append))
                wall = time.perf_counter() - t0
                ok = [d.record for d in done if d.record["status"] == "ok"]
                first_wait = done[0].wait_s if done else 0.0
                vps = len(done) / wall
                rows.append({"pass": i + 1, "mode": f"{mode} [{used}]", "videos": len(done), "wall_s": wall,
                             "videos_per_s": vps, "ratio": vps / engine_vps,
                             "steady_ratio": (len(done) - 1) / max(wall - first_wait, 1e-9) / engine_vps
                             if len(done) > 1 else None,
                             "engine_s": sum(r["timings"]["total_s"] for r in ok),
                             "decode_s": sum(r["timings"]["video_decode_s"] for r in ok),
                             "wait_s": sum(d.wait_s for d in done), "errors": len(done) - len(ok),
                             "workers": plans[0].workers if plans else None,
                             "ahead": plans[0].ahead if plans else None})
    finally:
        pool.release()
    if why:
        rows.append({"pass": "-", "mode": f"nvdec unavailable: {why}"})
    return rows


def _nvdec_sequential(job):
    from core.inputs import nvdec as nv

    return nv.load_frames(job.path, job.spec, fallback=False, access="sequential")


def _nvdec_random(job):
    from core.inputs import nvdec as nv

    return nv.load_frames(job.path, job.spec, fallback=False, access="random")


def nvdec(folder: Path, *, clips: int, sweep: tuple[int, ...] = (2, 4, 7)) -> list[dict[str, Any]]:
    """NVDEC (``--decoder nvdec``) against PyAV on the same clips, as ``vqbench run`` samples them:
    per-clip decode latency in one process (NVDEC reading every frame in order, and seeking to each
    sampled frame), throughput of the decode-ahead pool (PyAV sized to the cores; NVDEC with each
    worker count of ``sweep``), and the pixel difference of the frames the model would see (mean,
    99th percentile and max absolute difference, 0-255)."""
    import time

    import numpy as np

    from core.inputs import decode

    spec = Settings().sampling()
    paths = [c.path for c in dataset.scan(folder).clips[:clips]]
    used, why = decode.resolve_decoder("nvdec")
    rows: list[dict[str, Any]] = []

    def timed(jobs, workers, ahead, fn=decode.decode):
        t0 = time.perf_counter()
        outs = list(decode.DecodeAhead(jobs, workers=workers, ahead=ahead, fn=fn))
        return outs, time.perf_counter() - t0

    frames: dict[str, list[Any]] = {}
    variants = [("pyav", "pyav", decode.decode)]
    if used == "nvdec":
        variants += [("nvdec sequential", "nvdec", _nvdec_sequential), ("nvdec random access", "nvdec", _nvdec_random)]
    for label, name, fn in variants:
        jobs = [decode.Job(str(p), spec, decoder=name) for p in paths]
        outs, serial = timed(jobs, 1, 1, fn)  # one worker, one clip at a time: per-clip latency
        frames[label] = [o.frames for o in outs]
        ok = [f for f in frames[label] if f is not None]
        row = {"decoder": label, "clips": len(paths), "errors": len(paths) - len(ok),
               "decode_s_per_clip": statistics.fmean(f.decode_s for f in ok) if ok else None,
               "one_process_videos_per_s": len(paths) / serial}
        if name == "pyav" and ok:
            p = decode.plan(clips=len(jobs), clip_bytes=max(f.array.nbytes for f in ok), decoder="pyav")
            pooled_jobs = [decode.Job(j.path, j.spec, threads=p.threads) for j in jobs]
            row.update(pool_workers=p.workers, pool_videos_per_s=len(paths) / timed(pooled_jobs, p.workers, p.ahead)[1])
        rows.append(row)
        if not ok:
            rows[-1]["first_error"] = str(next(o.error for o in outs if o.error is not None))[:300]
    if used == "nvdec":
        jobs = [decode.Job(str(p), spec, decoder="nvdec") for p in paths]
        for w in sweep:
            _, wall = timed(jobs, w, 2 * w)
            rows.append({"decoder": "nvdec (auto access)", "clips": len(paths), "pool_workers": w,
                         "pool_videos_per_s": len(paths) / wall})
        diffs, p99, peak, same = [], [], 0, 0
        for a, b in zip(frames["pyav"], frames["nvdec sequential"]):
            if a is None or b is None or a.array.shape != b.array.shape:
                continue
            same += a.indices == b.indices
            d = np.abs(a.array.astype(np.int16) - b.array.astype(np.int16))
            diffs.append(float(d.mean()))
            p99.append(float(np.percentile(d, 99)))
            peak = max(peak, int(d.max()))
        rows.append({"decoder": "nvdec vs pyav", "clips": len(diffs), "same_frame_indices": same,
                     "pixel_mean_abs_diff": statistics.fmean(diffs) if diffs else None,
                     "pixel_p99_abs_diff": max(p99) if p99 else None, "pixel_max_abs_diff": peak})
    else:
        rows.append({"decoder": "nvdec", "clips": 0, "errors": f"unavailable: {why}"})
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
    p.add_argument("probe", choices=["peaks", "modes", "overhead", "summarize", "bare-vllm", "make-clips",
                                     "decode-ahead", "nvdec"])
    p.add_argument("results", nargs="?", type=Path, help="summarize, bare-vllm: the suite's results JSON-lines file")
    p.add_argument("--videos", default="", help="bare-vllm: clips (default: the fixture clips)")
    p.add_argument("--max-videos", type=int, default=4)
    p.add_argument("--model", default="tiny")
    p.add_argument("--format", default="bf16")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--tokens", type=int, default=7)
    p.add_argument("--json", type=Path)
    p.add_argument("--folder", type=Path, default=Path("/tmp/vqbench-clips"),
                   help="make-clips, decode-ahead, nvdec: the clips' folder (made when missing)")
    p.add_argument("--clips", type=int, default=64, help="make-clips, decode-ahead, nvdec: how many clips")
    p.add_argument("--size", default="1920x1080", help="make-clips: WIDTHxHEIGHT (default 1920x1080)")
    p.add_argument("--clip-fps", type=int, default=60, help="make-clips: frames per second (default 60)")
    p.add_argument("--seconds", type=float, default=6.0, help="make-clips: clip length (default 6)")
    p.add_argument("--backend", default="vllm", help="decode-ahead: the engine's backend (default vllm)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--decoder", default="pyav", choices=["pyav", "nvdec"], help="decode-ahead: decoder")
    p.add_argument("--workers", type=int, default=None, help="decode-ahead: decode workers (default auto)")
    p.add_argument("--passes", type=int, default=2, help="decode-ahead: interleaved passes")
    a = p.parse_args(argv)
    if a.probe == "peaks":
        from core.metrics.roofline import measure_peaks

        dev = devices.primary()
        if dev.kind != "cuda":
            print(f"no GPU: {devices.no_gpu_reason()}", file=sys.stderr)
            return 2
        pk = measure_peaks(dev.index)
        rows = [{"gpu": dev.name, "bandwidth_GBps": pk["bandwidth_Bps"] / 1e9,
                 "bf16_TFLOPs": pk["matmul_flops"] / 1e12}]
    elif a.probe == "summarize":
        rows = summarize(a.results)
    elif a.probe == "bare-vllm":
        rows = bare_vllm(a.model, a.format, a.rounds, videos=a.videos, max_videos=a.max_videos, suite_results=a.results)
    elif a.probe in ("make-clips", "decode-ahead", "nvdec"):
        if not any(a.folder.glob("*.mp4")) or a.probe == "make-clips":
            made = make_clips(a.folder, clips=a.clips, size=a.size, fps=a.clip_fps, seconds=a.seconds)
            print(f"{len(made)} clips in {a.folder}", file=sys.stderr)
        if a.probe == "make-clips":
            rows = [{"folder": str(a.folder), "clips": len(list(a.folder.glob("*.mp4"))), "size": a.size,
                     "fps": a.clip_fps, "seconds": a.seconds}]
        elif a.probe == "decode-ahead":
            rows = decode_ahead(a.folder, model=a.model, backend=a.backend, fmt=a.format, device=a.device,
                                clips=a.clips, passes=a.passes, decoder=a.decoder, workers=a.workers)
        else:
            rows = nvdec(a.folder, clips=a.clips)
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
