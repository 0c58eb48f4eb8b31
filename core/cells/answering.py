"""Answering a list of clips with one engine while worker processes decode the next ones: the loop
behind ``vqbench run`` (and the perf probe's decode-ahead mode).

* Upcoming clips are decoded in worker processes (``core.inputs.decode``) while the engine answers the
  current one; results keep the clips' order and per-clip timings; each clip's decode time is its
  worker's own, and the time the engine waited for its frames is recorded beside it
  (``timings.video_wait_s``).
* Each clip is one cell, run by the runner the pytest cells use (``core.cells.runner.run_cell``), its
  decoded frames handed over directly.
* A clip whose header says it cannot fit the engine's budget (``core.plan.estimate.ClipBudget``) is not
  decoded; it, a clip whose decode failed, and one whose decoded frames do not fit (``run_cell``
  checks) get an error record of their own; the others go on. An engine that fails to load
  raises ``EngineLoadError`` after the first clip's error record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.base.errors import BudgetError, VideoError
from core.base.records import CellRecord
from core.cells.runner import EngineLoadError, EnginePool, check_budget, error_record, run_batch, run_cell, sampling_for
from core.inputs import decode, sampling
from core.inputs.video import VideoClip
from core.plan.estimate import ClipBudget
from core.plan.matrix import Cell, EnginePlan
from core.plan.settings import Settings


def one_round(fn: Callable[[], Any], *, before_round: Callable[[], None] | None = None) -> tuple[Any, list[float]]:
    """A single timed round (the timer ``run_cell`` takes): ``vqbench run`` answers each video once, as a
    user's own script would."""
    if before_round is not None:
        before_round()
    t0 = time.perf_counter()
    result = fn()
    return result, [time.perf_counter() - t0]


@dataclass
class Answered:
    """One clip's record and how long the engine waited for its frames."""

    clip: VideoClip
    record: CellRecord
    wait_s: float = 0.0


def answer_clips(clips: list[VideoClip], *, plan: EnginePlan, task, pool: EnginePool, settings: Settings,
                 decoder: str, budget: ClipBudget | None = None, workers: int | None = None,
                 budget_bytes: int | None = None, on_plan: Callable[[decode.Plan], None] | None = None,
                 timer=one_round, batch: int = 1) -> Iterator[Answered]:
    """Answer ``clips`` in order with the engine of ``plan``, decoding ahead: one record per clip (an
    error record for a clip that failed). ``batch`` > 1: up to that many decoded clips are answered at
    once (``run_batch``; vLLM keeps them all in flight), their records untimed with a ``batch`` field."""
    if not clips:
        return
    failed: dict[str, BaseException] = {}
    jobs, decodable = [], []
    for clip in clips:
        if clip.meta.get("probe_error"):
            failed[clip.id] = VideoError(clip.path, str(clip.meta["probe_error"]))
            continue
        cost = budget.costs.get(clip.id) if budget else None
        problem = budget.problem(cost) if budget and cost else None
        if problem:
            failed[clip.id] = BudgetError(f"{clip.id}: {problem}")
            continue
        jobs.append(decode.Job(str(clip.path), sampling_for(Cell(plan, task, clip), settings), decoder=decoder))
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
        queue: list[tuple[Cell, Any, float, CellRecord | None]] = []  # (cell, frames, wait, error record)

        def flush() -> Iterator[Answered]:
            """Answer the queued cells as one batch; yield every queued clip's record in order."""
            todo = [(cell, frames, wait) for cell, frames, wait, err in queue if err is None]
            done: dict[str, CellRecord] = {}
            load_failed: EngineLoadError | None = None
            if todo:
                try:
                    recs = run_batch([c for c, _, _ in todo], pool, [f for _, f, _ in todo], settings,
                                     video_wait_s=[w for _, _, w in todo])
                    done = {r["cell"]: r for r in recs}
                except Exception as exc:  # noqa: BLE001 - the batch failed: each of its clips says why
                    load_failed = exc if isinstance(exc, EngineLoadError) else None
                    done = {c.id: error_record(c, exc, kind="scoring") for c, _, _ in todo}
            for cell, _, wait, err in queue:
                yield Answered(cell.clip, err or done[cell.id], wait)
            queue.clear()
            if load_failed is not None:  # every queued clip has its record; the engine's failure ends the run
                raise load_failed

        for clip in clips:
            cell = Cell(plan, task, clip)
            wait = 0.0
            try:
                if clip.id in failed:
                    raise failed[clip.id]
                out = next(outcomes)
                wait = out.wait_s
                if out.error is not None:
                    raise out.error
                rec: CellRecord | None = None
                if batch > 1:
                    check_budget(cell, out.frames, pool)
                    queue.append((cell, out.frames, wait, None))  # answered with its batch (flush)
                else:
                    rec = run_cell(cell, pool, out.frames, settings, timer=timer, video_wait_s=wait)
            except EngineLoadError as exc:
                yield Answered(clip, error_record(cell, exc, kind="timed"), wait)
                raise
            except Exception as exc:  # noqa: BLE001 - the clip's failure is its error record; the next clip runs
                rec = error_record(cell, exc, kind="timed")
            if rec is None:
                if sum(err is None for *_, err in queue) >= batch:
                    yield from flush()
                continue
            if queue:  # batching: a failed clip keeps its place behind the clips queued before it
                queue.append((cell, None, wait, rec))
                continue
            yield Answered(clip, rec, wait)
        yield from flush()
    finally:
        ahead.close()


def against_sequential(records: list[CellRecord], clips: list[VideoClip], *, plan: EnginePlan, task,
                       pool: EnginePool, settings: Settings, decoder: str, sample: int) -> dict[str, Any]:
    """What batching bought, for answers made in batches (``batch`` records): the first ``sample`` of those
    videos answered again one at a time (one timed round each) and then again as one batch, so both rates
    come from the same warm engine and the same videos (the folder's first batch also paid the engine's
    first-time costs for its shape: its rate is kept apart, as ``folder_batched_videos_per_s``); and the
    batch drift of those videos: the folder's batched answers against the one-at-a-time ones
    (``core.metrics.judge.judge_batch_drift``). Rates are engine time only (the generate calls)."""
    from core.metrics.judge import judge_batch_drift

    batched = [r for r in records if r["status"] == "ok" and r.get("batch")]
    by_id = {c.id: c for c in clips}
    chosen = [by_id[r["video"]] for r in batched[:sample]]
    alone = [d.record for d in answer_clips(chosen, plan=plan, task=task, pool=pool, settings=settings,
                                            decoder=decoder, workers=0) if d.record["status"] == "ok"]
    warm = [d.record for d in answer_clips(chosen, plan=plan, task=task, pool=pool, settings=settings,
                                           decoder=decoder, workers=0, batch=len(chosen) or 1)
            if d.record["status"] == "ok" and d.record.get("batch")]

    def per_s(recs: list[CellRecord], seconds: float) -> float | None:
        return len(recs) / seconds if recs and seconds > 0 else None

    def batch_s(recs: list[CellRecord]) -> float:
        return sum(r["batch"]["wall_s"] for r in recs if r["batch"]["index"] == 0)

    batched_vps = per_s(warm, batch_s(warm))
    alone_vps = per_s(alone, sum(r["timings"]["total_s"] for r in alone))
    paired = {r["video"]: r for r in batched}
    return {"batch": settings.batch, "videos": len(alone), "batched_videos_per_s": batched_vps,
            "sequential_videos_per_s": alone_vps,
            "speedup": batched_vps / alone_vps if batched_vps and alone_vps else None,
            "folder_batched_videos": len(batched), "folder_batched_videos_per_s": per_s(batched, batch_s(batched)),
            "note": "engine time only (generate calls; decoding and scoring excluded), the same videos on the "
                    "same warm engine: one at a time, then as one batch",
            "batch_drift": judge_batch_drift(alone, [paired[r["video"]] for r in alone],
                                             confidence=settings.drift_confidence,
                                             inconclusive=settings.drift_inconclusive)}
