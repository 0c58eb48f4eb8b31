"""``vqbench run``: classify a folder of videos with one model/backend/format and write results
(JSON-lines as it goes, a JSON summary and a CSV ``id,answer``), with progress and a memory
estimate before loading.

A thin front over the suite's own pipeline: the engine is planned by the matrix
(``core.plan.matrix.select_engine``: the verdicts a pytest session gives it), refused or budgeted before it
loads (``core.plan.estimate.plan_budget``), its clips answered by the cell runner the pytest cells use
(``core.cells.answering``, decoding ahead), and a pre-quantized checkpoint's drift against its
``--reference-model`` judged by the drift test's judge (``core.metrics.judge``). What is its own:
arguments, progress, resume, the summary table and the CSV.

* Every file of a scanned folder is answered or listed as passed over, with the reason
  (``core.inputs.dataset.scan``).
* ``--resume`` answers only what the results file has no answer for (``core.cells.resume``).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from core.base.errors import Unsupported
from core.base.records import CellRecord, DriftRecord, LoadDetails
from core.base.results import ResultsWriter, new_run_id
from core.cells import resume
from core.cells.answering import against_sequential, answer_clips
from core.cells.runner import EnginePool
from core.inputs import dataset, decode
from core.inputs.tasks import get_task
from core.plan import device as devices
from core.plan.capability import task_verdict
from core.plan.estimate import plan_budget
from core.plan.matrix import select_engine
from core.plan.settings import Settings


def _progress(total: int, desc: str):
    from tqdm import tqdm  # with the run, not at import: `vqbench --help` stays light
    return tqdm(total=total, desc=desc, unit="video", file=sys.stderr, dynamic_ncols=True)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def run(settings: Settings, *, model: str, backend: str, fmt_name: str, task_name: str, device: str,
        output: Path, csv_path: Path | None, results_path: Path) -> int:
    """Run every clip through one engine; every finished clip is on disk before the next starts."""
    sel = select_engine(settings, model=model, backend=backend, fmt=fmt_name or None, device=device)
    plan, reference, task = sel.plan, sel.reference, get_task(task_name)
    eng, spec = plan.engine, plan.spec
    for p in (plan, reference):
        if p is not None and not p.verdict:
            raise Unsupported(p.verdict.reason if p is plan else f"reference {p.engine.id}: {p.verdict.reason}")
    dev = devices.for_kind(eng.device, settings.cpu_dtype)
    source = settings.videos or task.default_dataset
    found = dataset.scan(source)
    clips = found.clips[: settings.max_videos] if settings.max_videos else found.clips
    gap = task_verdict(task.name, clips)
    if not gap:
        raise Unsupported(gap.reason)
    decoder, why_not = decode.resolve_decoder(settings.decoder)
    where = str(Path(source).expanduser().resolve()) if Path(source).expanduser().exists() else str(source)
    ident = resume.identity(settings, model=spec.name, backend=backend, fmt=eng.format, task=task.name,
                            device=eng.device, videos=where, decoder_used=decoder)
    previous = resume.answered(results_path, ident, engine=eng.id) if settings.resume else {}
    previous = {c.id: previous[c.id] for c in clips if c.id in previous}
    todo = [c for c in clips if c.id not in previous]
    _say(f"vqbench run: {eng.id} on {dev.describe()}, {len(clips)} videos, task {task.name}")
    if spec.is_prequantized:
        _say(f"  pre-quantized checkpoint: {eng.format} ({spec.prequantized.source}, fingerprint "
             f"{spec.prequantized.fingerprint}), loaded as it is"
             + (f"; drift against {reference.engine.id}" if reference else
                "; no drift measured (name the model it was quantized from with --reference-model PATH)"))
    if plan.verdict.reason:
        _say(f"  note: {plan.verdict.reason}")
    if found.skipped:
        _say(f"  {len(found.skipped)} file{'s' if len(found.skipped) > 1 else ''} in {where} passed over "
             "(not videos; listed at the end and in the JSON summary)")
    if why_not:
        _say(f"  decoder: nvdec unavailable ({why_not}); decoding with pyav")
    if settings.resume:
        _say(f"  resuming {results_path}: {len(previous)} of {len(clips)} videos already answered, "
             f"{len(todo)} to go")
    probes = dict(found.probes)
    probes.update(dataset.probe_clips([c for c in todo if c.id not in probes]) if todo else {})
    budget = None
    if todo:
        budget, fits = plan_budget(plan, dev, todo, probes, settings, say=_say)
        if not fits:
            raise Unsupported(fits.reason)
    writer = ResultsWriter(results_path, header={
        "settings": settings.to_dict(), "command": "run", "run": ident,
        "skipped": [s.to_dict() for s in found.skipped], "resumed": len(previous) if settings.resume else None},
        run_id=new_run_id())
    pool = EnginePool(settings, on_event=writer.write)
    if todo:
        pool.set_budget(plan, budget, fits)
    decode_plan: list[decode.Plan] = []
    t0 = time.perf_counter()
    drift: DriftRecord | None = None
    batching = None
    try:
        # A --reference-model answers first, as the suite orders an engine group: the checkpoint's vision
        # embeddings then meet the reference's when it is scored.
        if reference is not None:
            _say(f"  reference: answering {len(clips)} videos with {reference.engine.id}")
        ref_records = list(_answer(clips, reference, task=task, pool=pool, settings=settings, decoder=decoder,
                                   writer=writer)[0].values()) if reference is not None else []
        t_loop = time.perf_counter()
        new, waits = _answer(todo, plan, task=task, pool=pool, settings=settings, decoder=decoder, writer=writer,
                             budget=budget, batch=settings.batch, plans=decode_plan)
        loop_s = time.perf_counter() - t_loop  # the folder's videos only: not the reference or the comparison
        records = [previous.get(c.id) or new[c.id] for c in clips]
        batching = (against_sequential(list(new.values()), todo, plan=plan, task=task, pool=pool, settings=settings,
                                       decoder=decoder, sample=settings.batch) if settings.batch > 1 else None)
        if reference is not None:
            from core.metrics.judge import judge_drift

            judged = judge_drift(plan, reference, task.name, ref_records, records, settings)
            writer.write(judged.record)
            _say(judged.verdict.render())
            drift = judged.record
    finally:
        pool.release()
        writer.close()
    summary = _summary(records, pool, time.perf_counter() - t0, loop_s, answered_now=len(new), waits=waits,
                       resumed=len(previous), skipped=len(found.skipped), decoder=decoder,
                       plan=decode_plan[0] if decode_plan else None)
    output.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"engine": eng.id, "summary": summary, "results": records,
                           "skipped": [s.to_dict() for s in found.skipped]}
    if spec.is_prequantized:
        doc["prequantized"] = spec.prequantized.to_dict()
    if drift is not None:
        doc["drift"] = drift
    if batching is not None:
        doc["batching"] = batching
        _say(f"  batches of {settings.batch}: {batching['batched_videos_per_s'] or 0:.2f} videos/s against "
             f"{batching['sequential_videos_per_s'] or 0:.2f} one at a time ({batching['videos']} videos, warm "
             f"engine time); batch drift {batching['batch_drift']['status']}")
    output.write_text(json.dumps(doc, indent=2, default=str))
    if csv_path is not None:
        _write_csv(csv_path, records)
    _print_summary(summary, records, found.skipped)
    _say(f"results: {output} (JSON), {results_path} (JSON lines)"
         + (f", {csv_path} (CSV id,answer)" if csv_path else ""))
    return 0 if all(r["status"] == "ok" for r in records) and (drift is None or drift["passed"]) else 1


def _answer(clips, plan, *, task, pool: EnginePool, settings: Settings, decoder: str, writer: ResultsWriter,
            budget=None, batch: int = 1, plans: list[decode.Plan] | None = None):
    """Answer ``clips`` with ``plan``'s engine (``core.cells.answering``), each record on disk before the
    next, with a progress bar; the records by clip id and how long the engine waited for each clip."""
    new: dict[str, CellRecord] = {}
    waits: list[float] = []
    bars: list[Any] = []

    def started(p: decode.Plan) -> None:
        if plans is not None:
            plans.append(p)
            _say("  " + p.describe())
        bars.append(_progress(len(clips), plan.engine.id))

    try:
        for done in answer_clips(clips, plan=plan, task=task, pool=pool, settings=settings, decoder=decoder,
                                 budget=budget, on_plan=started, batch=batch):
            rec = new[done.clip.id] = done.record
            writer.write(rec)
            waits.append(done.wait_s)
            bars[0].update(1)
            if rec["status"] == "ok":
                bars[0].set_postfix_str(f"{done.clip.id}: {rec['predicted']}")
            else:
                _say(f"\n  {done.clip.id}: {rec['error_type']}: {rec['error']}")
    finally:
        for bar in bars:
            bar.close()
    return new, waits


def _summary(records: list[CellRecord], pool: EnginePool, wall: float, loop_s: float, *, answered_now: int,
             waits: list[float], resumed: int, skipped: int, decoder: str, plan: decode.Plan | None) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == "ok"]
    load = next(iter(pool.load_records.values()), LoadDetails())
    # engine time: each one-at-a-time answer's own, and each batch's wall time once (its answers share it)
    lat = ([r["timings"]["total_s"] for r in ok if "batch" not in r]
           + [r["batch"]["wall_s"] for r in ok if r.get("batch", {}).get("index") == 0])
    truth = [r for r in ok if r.get("truth") is not None]
    return {
        "videos": len(records), "ok": len(ok), "errors": len(records) - len(ok), "skipped_files": skipped,
        "resumed": resumed, "answered_now": answered_now,
        "model_load_s": load.get("load_s"), "quantize_s": load.get("quantize_s"),
        "total_inference_s": sum(lat), "avg_inference_per_video_s": sum(lat) / len(ok) if ok else None,
        "video_load_s": sum(r["timings"]["video_decode_s"] for r in ok),
        "video_wait_s": sum(waits), "wall_s": wall,
        "videos_per_s": answered_now / loop_s if loop_s > 0 and answered_now else None,
        "decoder": decoder, "decode_workers": plan.workers if plan else None,
        "decode_ahead": plan.ahead if plan else None,
        "accuracy": sum(bool(r.get("correct")) for r in truth) / len(truth) if truth else None,
        "weight_bytes": load.get("weight_bytes"), "weights_source": load.get("weights_source"),
        "weight_bytes_estimated": bool(load.get("weight_bytes_estimated")),
    }


def _print_summary(s: dict[str, Any], records: list[CellRecord], skipped: list[dataset.Skipped]) -> None:
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


def _write_csv(path: Path, records: list[CellRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "answer"])
        for r in records:
            if r["status"] == "ok":
                w.writerow([r["video"], r["parsed"] or r["predicted"]])

