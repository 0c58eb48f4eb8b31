"""``vqbench run``: classify a folder of videos with one model/backend/format and write results
(JSON-lines as it goes, a JSON summary and a CSV ``id,answer``), with progress and a memory
estimate before loading.

* Every file of a scanned folder is answered or listed as passed over, with the reason
  (``core.dataset.scan``).
* Upcoming clips are decoded in worker processes while the engine answers the current one
  (``core.decode``); results keep their order and per-clip timings, each clip's decode time is its
  worker's own, and the time the engine waited for frames is reported beside it.
* ``--resume`` answers only what the results file has no answer for (``core.resume``).
* Before loading, the memory and context budget covers the clip with the most video tokens
  (``core.estimate``); a clip over it fails alone, saying which option to lower.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import capability, dataset, decode, resume, sampling
from core import device as devices
from core.errors import BudgetError, ConfigError, Unsupported, VideoError
from core.formats import get_format
from core.matrix import Cell, Engine, EnginePlan
from core.models import registry
from core.results import ResultsWriter
from core.runner import EngineLoadError, EnginePool, FrameCache, error_record, run_cell, sampling_for
from core.settings import Settings
from core.tasks import get_task
from core.video import VideoClip


def _one_round(fn, *, before_round=None):
    """A single timed round: ``vqbench run`` answers each video once, as the seeds' scripts do."""
    if before_round is not None:
        before_round()
    t0 = time.perf_counter()
    result = fn()
    return result, [time.perf_counter() - t0]


def _device(choice: str, cpu_dtype: str = "auto"):
    if choice == "cpu":
        return devices.cpu(cpu_dtype)
    gpu = devices.primary()
    if gpu.kind == "cpu":
        gpu = devices.cpu(cpu_dtype)
    if choice == "cuda" and gpu.kind != "cuda":
        raise Unsupported(f"--device cuda asked for, but there is no GPU: {devices.no_gpu_reason()}")
    return gpu


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="video", file=sys.stderr, dynamic_ncols=True)
    except ImportError:  # a plain counter when tqdm is missing
        class _Plain:
            n = 0

            def update(self, k: int = 1) -> None:
                self.n += k
                print(f"{desc}: {self.n}/{total}", file=sys.stderr)

            def set_postfix_str(self, s: str) -> None:
                pass

            def close(self) -> None:
                pass

        return _Plain()


def _say(text: str) -> None:
    print(text, file=sys.stderr)


# --- the budget of each clip ----------------------------------------------------------------------

@dataclass
class ClipBudget:
    """Checks clips against the engine's context and memory (``core.estimate``)."""

    family: Any
    config: dict[str, Any]
    budget: Any
    need: Callable[[Any], float | None]
    max_new_tokens: int
    costs: dict[str, Any] = field(default_factory=dict)
    """Expected cost per clip id, from header probes (absent: length unknown until decoded)."""

    def cost(self, clip_id: str, frames: int, height: int, width: int):
        from core.estimate import clip_cost

        return clip_cost(clip_id, frames, height, width, family=self.family, config=self.config)

    def problem(self, cost) -> str | None:
        return self.budget.check(cost, need_bytes=self.need(cost), max_new_tokens=self.max_new_tokens)


def _budget(settings: Settings, spec, fmt, backend: str, dev, plan: EnginePlan, task, clips: list[VideoClip],
            probes: dict[str, Any]) -> ClipBudget | None:
    """Expected frames and tokens of every clip, the estimate for the longest, printed; the engine
    refused when even that cannot fit. None when the model's config cannot be read."""
    from core import estimate
    from core.models.families import family as family_of
    from core.models.shape import ModelShape

    try:
        config_dir = registry.materialize(spec)
        config = json.loads((config_dir / "config.json").read_text())
        fam = family_of(spec.family)
        shape = ModelShape.from_config(config)
    except Exception as exc:  # noqa: BLE001 - an estimate is advice, never a blocker
        _say(f"  memory estimate unavailable ({type(exc).__name__}: {exc})")
        return None
    limit = shape.max_position_embeddings
    if backend in ("vllm", "trtllm"):
        context, option = (settings.max_model_len if spec.kind == "shape" or not limit
                           else min(limit, settings.max_model_len)), "--max-model-len"
    else:
        context, option = limit, "the model's max_position_embeddings"
    if dev.kind == "cuda" and dev.memory_gib:
        total_bytes = dev.memory_gib * 2**30
        where = f"{dev.memory_gib:.0f} GiB on {dev.name}"
    else:
        import psutil

        total_bytes = float(psutil.virtual_memory().available)
        where = f"{total_bytes / 2**30:.0f} GiB of available host memory (CPU run)"
    memory = total_bytes * 0.95 if backend == "hf" else None  # vLLM/TensorRT-LLM reserve theirs at load
    sampling_note = (f"--fps {settings.fps:g}" if not settings.nframes else f"--nframes {settings.nframes}") + \
        f", --max-frames {settings.max_frames}, --resolution {settings.resolution or 'auto'}"
    params_cache: dict[str, Any] = {}

    def need(cost) -> float | None:
        if memory is None:
            return None
        try:
            if "params" not in params_cache:
                params_cache["params"] = estimate.count_params(config_dir)
            est = estimate.estimate(config_dir, fmt, backend=backend, clip=cost, params=params_cache["params"],
                                    max_new_tokens=settings.max_new_tokens,
                                    eager_attention=settings.attn_implementation == "eager")
        except Exception:  # noqa: BLE001 - no estimate, no memory check (the context check stays)
            return None
        return est["total_bytes"]

    cb = ClipBudget(fam, config, estimate.Budget(backend=backend, device=where, context_tokens=context,
                                                 context_option=option, memory_bytes=memory,
                                                 settings_note=sampling_note),
                    need, settings.max_new_tokens)
    unknown = 0
    for clip in clips:
        p = probes.get(clip.id)
        shape_n = None
        if p is not None and p.video:
            shape_n = estimate.expected_frames(sampling_for(Cell(plan, task, clip), settings),
                                               total_frames=p.total_frames, fps=p.fps, height=p.height,
                                               width=p.width)
        if shape_n is None:
            unknown += p is not None and p.video
            continue
        cb.costs[clip.id] = cb.cost(clip.id, *shape_n)
    longest = max(cb.costs.values(), key=lambda c: (c.video_tokens, c.frame_bytes), default=None)
    try:
        est = estimate.estimate(config_dir, fmt, backend=backend, clip=longest, max_new_tokens=settings.max_new_tokens,
                                eager_attention=settings.attn_implementation == "eager")
        params_cache["params"] = est["params"]
    except Exception as exc:  # noqa: BLE001 - an estimate is advice, never a blocker
        _say(f"  memory estimate unavailable ({type(exc).__name__}: {exc})")
        return cb
    gib = est["total_bytes"] / 2**30
    note = " (fake-quant: bf16 weights, no memory savings)" if est["fake_quant_no_savings"] else ""
    act = est["activations"]
    clip_text = (f"for the longest clip, {longest.clip}: {longest.describe()}, {longest.frame_bytes / 2**20:.0f} MiB "
                 f"of frames" if longest else "for a text-only prompt (no clip length known before decoding)")
    _say(f"  estimated memory: {gib:.2f} GiB of {where}: weights {est['weights_bytes'] / 2**30:.2f} GiB{note}, "
         f"KV cache {est['kv_cache_bytes'] / 2**20:.1f} MiB, activations {est['activation_bytes'] / 2**20:.0f} MiB "
         f"(language model {act['lm'] / 2**20:.0f}, vision {act['vision'] / 2**20:.0f}, pixels "
         f"{act['pixels'] / 2**20:.0f}) {clip_text}")
    if unknown:
        _say(f"  {unknown} video{'s' if unknown > 1 else ''} of unknown length (raw streams): checked once decoded")
    if backend == "hf" and dev.kind == "cuda" and est["weights_bytes"] > total_bytes * 0.95:
        raise Unsupported(f"{spec.name} {fmt.id} needs ~{est['weights_bytes'] / 2**30:.1f} GiB for its weights alone; "
                          f"{dev.describe()} is too small")
    if backend != "hf" and dev.kind == "cuda":
        reserved = total_bytes * settings.gpu_memory_utilization
        kv_full = shape.kv_bytes_per_token(1 if fmt.kv_cache == "fp8" else 2) * (context or 0)
        if est["weights_bytes"] + kv_full > reserved:
            raise Unsupported(
                f"{spec.name} {fmt.id} needs ~{(est['weights_bytes'] + kv_full) / 2**30:.1f} GiB (weights "
                f"{est['weights_bytes'] / 2**30:.1f} GiB + a KV cache for one {context}-token request) of the "
                f"{reserved / 2**30:.1f} GiB --gpu-memory-utilization {settings.gpu_memory_utilization:g} leaves: lower "
                "--max-model-len or raise --gpu-memory-utilization")
    return cb


# --- the run --------------------------------------------------------------------------------------

@dataclass
class Answered:
    """One clip's record and how long the engine waited for its frames."""

    clip: VideoClip
    record: dict[str, Any]
    wait_s: float = 0.0


def answer_clips(clips: list[VideoClip], *, plan: EnginePlan, task, pool: EnginePool, settings: Settings,
                 decoder: str, budget: ClipBudget | None = None, workers: int | None = None,
                 budget_bytes: int | None = None, on_plan: Callable[[decode.Plan], None] | None = None,
                 timer=_one_round) -> Iterator[Answered]:
    """Answer ``clips`` in order with the engine of ``plan``, decoding ahead (``core.decode``):
    yields one record per clip (an error record for a clip that failed; an engine that fails to
    load raises ``EngineLoadError`` after its record). Shared by ``vqbench run`` and the perf probe."""
    if not clips:
        return
    frames = FrameCache(max_bytes=0)  # holds the clip being answered only: the workers' results wait in the pool
    failed: dict[str, BaseException] = {}
    jobs, decodable = [], []
    for clip in clips:
        cell = Cell(plan, task, clip)
        if clip.meta.get("probe_error"):
            failed[clip.id] = VideoError(clip.path, str(clip.meta["probe_error"]))
            continue
        cost = budget.costs.get(clip.id) if budget else None
        problem = budget.problem(cost) if budget and cost else None
        if problem:
            failed[clip.id] = BudgetError(f"{clip.id}: {problem}")
            continue
        jobs.append(decode.Job(str(clip.path), sampling_for(cell, settings), decoder=decoder))
        decodable.append(clip)
    known = [budget.costs[c.id].frame_bytes for c in decodable if budget and c.id in budget.costs]
    if known:
        largest = max(known)
    else:  # no length known before decoding: the sampler's bound (max frames at the largest frame size)
        res = settings.sampling().resolution
        largest = settings.max_frames * (res[0] * res[1] if res else sampling.VIDEO_MAX_PIXELS) * 3
    p = decode.plan(clips=len(jobs), clip_bytes=largest, workers=settings.decode_workers if workers is None
                    else workers, budget_bytes=budget_bytes or settings.decode_memory_bytes(), decoder=decoder,
                    device=plan.engine.device)
    jobs = [decode.Job(j.path, j.spec, decoder=j.decoder, threads=p.threads) for j in jobs]
    if on_plan is not None:
        on_plan(p)
    ahead = decode.DecodeAhead(jobs, workers=p.workers, ahead=p.ahead)
    outcomes = iter(ahead)
    try:
        ahead.start()
        try:  # load the engine while the first clips decode (a failure is raised again by the first cell)
            pool.get(plan)
        except EngineLoadError:
            pass
        for clip in clips:
            cell = Cell(plan, task, clip)
            wait = 0.0
            try:
                if clip.id in failed:
                    raise failed[clip.id]
                out = next(outcomes)
                wait = out.wait_s
                spec = jobs[out.index].spec
                item = out.error if out.error is not None else out.frames
                if out.error is None and budget is not None:
                    n, h, w, _ = out.frames.array.shape
                    problem = budget.problem(budget.cost(clip.id, n, h, w))
                    if problem:
                        item = BudgetError(f"{clip.id}: {problem}")
                frames.put(clip, spec, item)
                rec = run_cell(cell, pool, frames, settings, timer=timer)
                rec["timings"]["video_wait_s"] = wait
            except EngineLoadError as exc:
                yield Answered(clip, error_record(cell, exc, kind="timed"), wait)
                raise
            except Exception as exc:
                rec = error_record(cell, exc, kind="timed")
            yield Answered(clip, rec, wait)
    finally:
        ahead.close()


def run(settings: Settings, *, model: str, backend: str, fmt_name: str, task_name: str, device: str,
        output: Path, csv_path: Path | None, results_path: Path) -> int:
    """Run every clip through one engine; every finished clip is on disk before the next starts."""
    spec = registry.resolve(model, allow_pickle=settings.allow_pickle)
    fmt = get_format(fmt_name or spec.detected_format or "bf16")  # a pre-quantized checkpoint: its own format
    task = get_task(task_name)
    dev = _device(device, settings.cpu_dtype)
    verdict = capability.check(backend, fmt, dev, spec=spec)
    if not verdict:
        raise Unsupported(verdict.reason)
    source = settings.videos or task.default_dataset
    found = dataset.scan(source)
    clips = found.clips[: settings.max_videos] if settings.max_videos else found.clips
    gap = capability.task_verdict(task.name, clips)
    if not gap:
        raise Unsupported(gap.reason)
    eng = Engine(spec.name, backend, fmt.id, dev.kind)
    reference = _reference_plan(settings, spec, backend, dev)
    plan = EnginePlan(eng, spec, fmt, verdict, device_class=dev.gpu_class,
                      reference=reference.engine if reference is not None else None)
    decoder, why_not = decode.resolve_decoder(settings.decoder)
    where = str(Path(source).expanduser().resolve()) if Path(source).expanduser().exists() else str(source)
    ident = resume.identity(settings, model=spec.name, backend=backend, fmt=fmt.id, task=task.name, device=dev.kind,
                            videos=where, decoder_used=decoder)
    previous = resume.answered(results_path, ident, engine=eng.id) if settings.resume else {}
    previous = {c.id: previous[c.id] for c in clips if c.id in previous}
    todo = [c for c in clips if c.id not in previous]
    _say(f"vqbench run: {eng.id} on {dev.describe()}, {len(clips)} videos, task {task.name}")
    if spec.is_prequantized:
        _say(f"  pre-quantized checkpoint: {fmt.id} ({spec.prequantized.source}, fingerprint "
             f"{spec.prequantized.fingerprint}), loaded as it is"
             + (f"; drift against {reference.engine.id}" if reference else
                "; no drift measured (name the model it was quantized from with --reference-model PATH)"))
    if verdict.reason:
        _say(f"  note: {verdict.reason}")
    if found.skipped:
        _say(f"  {len(found.skipped)} file{'s' if len(found.skipped) > 1 else ''} in {where} passed over "
             "(not videos; listed at the end and in the JSON summary)")
    if why_not:
        _say(f"  decoder: nvdec unavailable ({why_not}); decoding with pyav")
    if settings.resume:
        _say(f"  resuming {results_path}: {len(previous)} of {len(clips)} videos already answered, "
             f"{len(todo)} to go")
    probes = dict(found.probes)
    missing = [c for c in todo if c.id not in probes]
    if missing:
        probes.update(dataset.probe_clips(missing))
    budget = _budget(settings, spec, fmt, backend, dev, plan, task, todo, probes) if todo else None
    writer = ResultsWriter(results_path, header={
        "settings": settings.to_dict(), "command": "run", "run": ident,
        "skipped": [s.to_dict() for s in found.skipped], "resumed": len(previous) if settings.resume else None})
    pool = EnginePool(settings, on_event=writer.write)
    # The checkpoint answers before its reference here: its vision embeddings wait for the reference's.
    pool.vision.keep_candidates = reference is not None
    new: dict[str, dict[str, Any]] = {}
    waits: list[float] = []
    decode_plan: list[decode.Plan] = []
    bars: list[Any] = []

    def started(p: decode.Plan) -> None:
        decode_plan.append(p)
        _say("  " + p.describe())
        bars.append(_progress(len(todo), eng.id))

    t0 = time.perf_counter()
    try:
        for done in answer_clips(todo, plan=plan, task=task, pool=pool, settings=settings, decoder=decoder,
                                 budget=budget, on_plan=started):
            bar = bars[0]
            rec = done.record
            writer.write(rec)
            new[done.clip.id] = rec
            waits.append(done.wait_s)
            bar.update(1)
            if rec["status"] == "ok":
                bar.set_postfix_str(f"{done.clip.id}: {rec['predicted']}")
            else:
                _say(f"\n  {done.clip.id}: {rec['error_type']}: {rec['error']}")
        records = [previous.get(c.id) or new[c.id] for c in clips]
        drift = (_drift(records, clips, reference, plan=plan, task=task, pool=pool, settings=settings,
                        decoder=decoder, writer=writer) if reference is not None else None)
    finally:
        for bar in bars:
            bar.close()
        pool.release()
        writer.close()
    wall = time.perf_counter() - t0
    summary = _summary(records, pool, wall, answered_now=len(new), waits=waits, resumed=len(previous),
                       skipped=len(found.skipped), decoder=decoder, plan=decode_plan[0] if decode_plan else None)
    output.parent.mkdir(parents=True, exist_ok=True)
    doc = {"engine": eng.id, "summary": summary, "results": records, "skipped": [s.to_dict() for s in found.skipped]}
    if spec.is_prequantized:
        doc["prequantized"] = spec.prequantized.to_dict()
    if drift is not None:
        doc["drift"] = drift
    output.write_text(json.dumps(doc, indent=2, default=str))
    if csv_path is not None:
        _write_csv(csv_path, records)
    _print_summary(summary, records, found.skipped)
    _say(f"results: {output} (JSON), {results_path} (JSON lines)" + (f", {csv_path} (CSV id,answer)" if csv_path else ""))
    return 0 if all(r["status"] == "ok" for r in records) and (drift is None or drift["passed"]) else 1


def _reference_plan(settings: Settings, spec, backend: str, dev) -> EnginePlan | None:
    """The --reference-model's engine (reference format, same backend and device) a pre-quantized
    checkpoint's drift is judged against; None without one. One that cannot run stops the run."""
    if not spec.is_prequantized or not settings.reference_model:
        return None
    ref_spec = registry.resolve(settings.reference_model, allow_pickle=settings.allow_pickle)
    if ref_spec.is_prequantized:
        raise ConfigError(f"--reference-model {settings.reference_model} is itself quantized "
                          f"({ref_spec.detected_format}): name the model {spec.name} was quantized from")
    ref_fmt = get_format(settings.reference_format)
    verdict = capability.check(backend, ref_fmt, dev, spec=ref_spec)
    if not verdict:
        raise Unsupported(f"reference {ref_spec.name} {ref_fmt.id} on {backend}: {verdict.reason}")
    return EnginePlan(Engine(ref_spec.name, backend, ref_fmt.id, dev.kind), ref_spec, ref_fmt, verdict,
                      device_class=dev.gpu_class)


def _drift(records: list[dict[str, Any]], clips: list[VideoClip], reference: EnginePlan, *, plan: EnginePlan, task,
           pool: EnginePool, settings: Settings, decoder: str, writer: ResultsWriter) -> dict[str, Any]:
    """Answer the clips with the reference engine (the pool closes the checkpoint's engine first) and judge
    the checkpoint's drift against it with the suite's gates and the detected format's thresholds."""
    from core.metrics.drift import compare_formats, usable_inputs
    from core.metrics.verdict import evaluate, thresholds_for

    _say(f"  reference: answering {len(clips)} videos with {reference.engine.id}")
    ref_records = [done.record for done in answer_clips(clips, plan=reference, task=task, pool=pool,
                                                        settings=settings, decoder=decoder)]
    for r in ref_records:
        writer.write(r)
    # Vision drift (HF): the checkpoint's embeddings were kept until the reference scored the same frames.
    late = {key.clip: stats for key, stats in pool.vision.late.items()}
    records = [({**r, "vision": late[r["video_path"]]} if r.get("video_path") in late and not r.get("vision")
                else r) for r in records]
    ref, cand = usable_inputs(ref_records, records)
    report = compare_formats(ref, cand, reference_format=reference.engine.format, candidate_format=plan.engine.format)
    verdict = evaluate(report, thresholds_for(plan.engine.format, settings.thresholds),
                       confidence=settings.drift_confidence, inconclusive=settings.drift_inconclusive)
    rec = {"type": "drift", "engine": plan.engine.id, "task": task.name, "passed": verdict.passed,
           "report": report.to_dict(), "status": verdict.to_dict()["status"], "verdict": verdict.to_dict(),
           "reference": reference.engine.id}
    writer.write(rec)
    _say(verdict.render())
    return {"reference": reference.engine.id, "passed": verdict.passed, "verdict": verdict.to_dict(),
            "report": report.to_dict()}


def _summary(records: list[dict[str, Any]], pool: EnginePool, wall: float, *, answered_now: int, waits: list[float],
             resumed: int, skipped: int, decoder: str, plan: decode.Plan | None) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == "ok"]
    load = next(iter(pool.load_records.values()), {})
    lat = [r["timings"]["total_s"] for r in ok]
    truth = [r for r in ok if r.get("truth") is not None]
    return {
        "videos": len(records), "ok": len(ok), "errors": len(records) - len(ok), "skipped_files": skipped,
        "resumed": resumed, "answered_now": answered_now,
        "model_load_s": load.get("load_s"), "quantize_s": load.get("quantize_s"),
        "total_inference_s": sum(lat), "avg_inference_per_video_s": sum(lat) / len(lat) if lat else None,
        "video_load_s": sum(r["timings"]["video_decode_s"] for r in ok),
        "video_wait_s": sum(waits), "wall_s": wall,
        "videos_per_s": answered_now / wall if wall > 0 and answered_now else None,
        "decoder": decoder, "decode_workers": plan.workers if plan else None,
        "decode_ahead": plan.ahead if plan else None,
        "accuracy": sum(r["correct"] for r in truth) / len(truth) if truth else None,
        "weight_bytes": load.get("weight_bytes"), "weights_source": load.get("weights_source"),
        "weight_bytes_estimated": bool(load.get("weight_bytes_estimated")),
    }


def _print_summary(s: dict[str, Any], records: list[dict[str, Any]], skipped: list[dataset.Skipped]) -> None:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}s"

    _say("\n| metric | value |\n|---|---|")
    for k, label in [("model_load_s", "Model load time"), ("total_inference_s", "Total inference"),
                     ("avg_inference_per_video_s", "Avg inference per video"),
                     ("video_load_s", "Video load time (decode, summed over workers)"),
                     ("video_wait_s", "Engine waited for decoding"), ("wall_s", "Wall time (this session)")]:
        _say(f"| {label} | {f(s[k])} |")
    if s["videos_per_s"]:
        _say(f"| Videos per second (this session) | {s['videos_per_s']:.2f} |")
    if s["resumed"]:
        _say(f"| Answered before (resumed) | {s['resumed']} |")
    if s["accuracy"] is not None:
        _say(f"| Accuracy | {100 * s['accuracy']:.1f}% |")
    _say("\n| video | answer | truth | correct |\n|---|---|---|---|")
    for r in records:
        if r["status"] != "ok":
            _say(f"| {r['video']} | error: {r['error_type']} | - | - |")
            continue
        ok = "-" if r.get("correct") is None else ("yes" if r["correct"] else "no")
        _say(f"| {r['video']} | {r['predicted']} | {r.get('truth') or '-'} | {ok} |")
    if skipped:
        _say("\n| passed over | why |\n|---|---|")
        for sk in skipped:
            _say(f"| {sk.path} | {sk.reason} |")


def _write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "answer"])
        for r in records:
            if r["status"] == "ok":
                w.writerow([r["video"], r["parsed"] or r["predicted"]])


def check_output_paths(*paths: Path | None) -> None:
    for p in paths:
        if p is not None and p.exists() and p.is_dir():
            raise ConfigError(f"{p} is a directory; give a file path")
