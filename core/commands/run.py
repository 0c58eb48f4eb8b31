"""``vqbench run``: classify a folder of videos with one model/backend/format and write results
(JSON-lines as it goes, a JSON summary and a CSV ``id,answer``), with progress and a memory
estimate before loading."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from core import capability, dataset
from core import device as devices
from core.errors import ConfigError, Unsupported
from core.formats import get_format
from core.matrix import Cell, Engine, EnginePlan
from core.models import registry
from core.results import ResultsWriter
from core.runner import EngineLoadError, EnginePool, FrameCache, error_record, run_cell
from core.settings import Settings
from core.tasks import get_task


def _one_round(fn, *, before_round=None):
    """A single timed round: ``vqbench run`` answers each video once, as the seeds' scripts do."""
    if before_round is not None:
        before_round()
    t0 = time.perf_counter()
    result = fn()
    return result, [time.perf_counter() - t0]


def _device(choice: str):
    if choice == "cpu":
        return devices.CPU
    gpu = devices.primary()
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


def run(settings: Settings, *, model: str, backend: str, fmt_name: str, task_name: str, device: str,
        output: Path, csv_path: Path | None, results_path: Path) -> int:
    """Run every clip through one engine; every finished clip is on disk before the next starts."""
    spec = registry.resolve(model, allow_pickle=settings.allow_pickle)
    fmt = get_format(fmt_name)
    task = get_task(task_name)
    dev = _device(device)
    verdict = capability.check(backend, fmt, dev, spec=spec)
    if not verdict:
        raise Unsupported(verdict.reason)
    clips = dataset.load(settings.videos or task.default_dataset)
    if settings.max_videos:
        clips = clips[: settings.max_videos]
    gap = capability.task_verdict(task.name, clips)
    if not gap:
        raise Unsupported(gap.reason)
    eng = Engine(spec.name, backend, fmt.id, dev.kind)
    plan = EnginePlan(eng, spec, fmt, verdict, device_class=dev.gpu_class)
    print(f"vqbench run: {eng.id} on {dev.describe()}, {len(clips)} videos, task {task.name}", file=sys.stderr)
    if verdict.reason:
        print(f"  note: {verdict.reason}", file=sys.stderr)
    _print_estimate(spec, fmt, backend, dev)
    writer = ResultsWriter(results_path, header={"settings": settings.to_dict(), "command": "run"})
    pool, frames = EnginePool(settings, on_event=writer.write), FrameCache()
    records: list[dict[str, Any]] = []
    bar = _progress(len(clips), eng.id)
    t0 = time.perf_counter()
    try:
        for clip in clips:
            cell = Cell(plan, task, clip)
            try:
                rec = run_cell(cell, pool, frames, settings, timer=_one_round)
            except EngineLoadError as exc:
                writer.write(error_record(cell, exc, kind="timed"))
                raise
            except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
                rec = error_record(cell, exc, kind="timed")
                print(f"\n  {clip.id}: {type(exc).__name__}: {exc}", file=sys.stderr)
            writer.write(rec)
            records.append(rec)
            bar.update(1)
            if rec["status"] == "ok":
                bar.set_postfix_str(f"{clip.id}: {rec['predicted']}")
    finally:
        bar.close()
        pool.release()
        writer.close()
    wall = time.perf_counter() - t0
    summary = _summary(records, pool, wall)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"engine": eng.id, "summary": summary, "results": records}, indent=2,
                                 default=str))
    if csv_path is not None:
        _write_csv(csv_path, records)
    _print_summary(summary, records)
    print(f"results: {output} (JSON), {results_path} (JSON lines)"
          + (f", {csv_path} (CSV id,answer)" if csv_path else ""), file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in records) else 1


def _print_estimate(spec, fmt, backend, dev) -> None:
    try:
        from core.estimate import estimate

        est = estimate(registry.materialize(spec), fmt, backend=backend, prompt_tokens=800)
    except Exception as exc:  # noqa: BLE001 - an estimate is advice, never a blocker
        print(f"  memory estimate unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return
    gib = est["total_bytes"] / 2**30
    note = " (fake-quant: bf16 weights, no memory savings)" if est["fake_quant_no_savings"] else ""
    where = f"of {dev.memory_gib:.0f} GiB on {dev.name}" if dev.kind == "cuda" else "of host memory (CPU run)"
    print(f"  estimated memory: {gib:.2f} GiB {where}: weights {est['weights_bytes'] / 2**30:.2f} GiB{note}, "
          f"KV cache {est['kv_cache_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    if dev.kind == "cuda" and dev.memory_gib and gib > dev.memory_gib * 0.95:
        raise Unsupported(f"{spec.name} {fmt.id} needs ~{gib:.1f} GiB; {dev.describe()} is too small")


def _summary(records: list[dict[str, Any]], pool: EnginePool, wall: float) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == "ok"]
    load = next(iter(pool.load_records.values()), {})
    lat = [r["timings"]["total_s"] for r in ok]
    truth = [r for r in ok if r.get("truth") is not None]
    return {
        "videos": len(records), "ok": len(ok), "errors": len(records) - len(ok),
        "model_load_s": load.get("load_s"), "quantize_s": load.get("quantize_s"),
        "total_inference_s": sum(lat), "avg_inference_per_video_s": sum(lat) / len(lat) if lat else None,
        "video_load_s": sum(r["timings"]["video_decode_s"] for r in ok), "wall_s": wall,
        "accuracy": sum(r["correct"] for r in truth) / len(truth) if truth else None,
        "weight_bytes": load.get("weight_bytes"),
    }


def _print_summary(s: dict[str, Any], records: list[dict[str, Any]]) -> None:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}s"

    print("\n| metric | value |\n|---|---|", file=sys.stderr)
    for k, label in [("model_load_s", "Model load time"), ("total_inference_s", "Total inference"),
                     ("avg_inference_per_video_s", "Avg inference per video"), ("video_load_s", "Video load time")]:
        print(f"| {label} | {f(s[k])} |", file=sys.stderr)
    if s["accuracy"] is not None:
        print(f"| Accuracy | {100 * s['accuracy']:.1f}% |", file=sys.stderr)
    print("\n| video | answer | truth | correct |\n|---|---|---|---|", file=sys.stderr)
    for r in records:
        if r["status"] != "ok":
            print(f"| {r['video']} | error: {r['error_type']} | - | - |", file=sys.stderr)
            continue
        ok = "-" if r.get("correct") is None else ("yes" if r["correct"] else "no")
        print(f"| {r['video']} | {r['predicted']} | {r.get('truth') or '-'} | {ok} |", file=sys.stderr)


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
