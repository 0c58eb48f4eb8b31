"""Running cells: one engine loaded at a time, decoded frames cached, every result a plain record.

Used by the pytest plugin and by ``vqbench run`` alike, so both measure the same way.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections import Counter, OrderedDict
from typing import Any, Callable

from core import device as devices
from core.backends import backend_class
from core.backends.base import Backend, Generation, Request
from core.errors import VideoError, VqbenchError
from core.matrix import Cell, EnginePlan
from core.metrics.memory import MemoryProbe, device_memory_now
from core.sampling import SamplingSpec
from core.settings import Settings
from core.tasks import get_task
from core.video import Frames, VideoClip, load_frames


class EngineLoadError(VqbenchError):
    """An engine failed to load; every cell of it fails with this message (loaded once, failed once)."""


class FrameCache:
    """Decoded clips by (path, sampling); errors are cached too, so a bad file is decoded once."""

    def __init__(self, max_bytes: int = 2 * 2**30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], Frames | VideoError] = OrderedDict()

    def get(self, clip: VideoClip, spec: SamplingSpec) -> Frames:
        key = (str(clip.path), spec.key())
        if key not in self._items:
            try:
                self._items[key] = load_frames(clip.path, spec)
            except VideoError as exc:
                self._items[key] = exc
            self._evict()
        self._items.move_to_end(key)
        item = self._items[key]
        if isinstance(item, VideoError):
            raise item
        return item

    def _evict(self) -> None:
        total = sum(v.array.nbytes for v in self._items.values() if isinstance(v, Frames))
        while total > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            if isinstance(old, Frames):
                total -= old.array.nbytes


class EnginePool:
    """Holds at most one loaded engine; switching engines closes the previous one first."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: Backend | None = None
        self.current_plan: EnginePlan | None = None
        self.loads: Counter[str] = Counter()
        self.failures: dict[str, str] = {}
        self.load_records: dict[str, dict[str, Any]] = {}
        self.close_records: dict[str, dict[str, Any]] = {}

    def get(self, plan: EnginePlan) -> Backend:
        if self.current is not None and self.current_plan == plan:
            return self.current
        self.release()
        key = plan.engine.id
        if key in self.failures:
            raise EngineLoadError(self.failures[key])
        dev = devices.CPU if plan.engine.device == "cpu" else devices.primary()
        backend = backend_class(plan.engine.backend)(plan.spec, plan.fmt, dev, self.settings.engine_options())
        self.loads[key] += 1
        try:
            with MemoryProbe(dev) as probe:
                backend.load_info = backend.load()
        except Exception as exc:  # noqa: BLE001 - any load failure fails this engine's cells only
            msg = f"loading {key} failed: {type(exc).__name__}: {exc}"
            self.failures[key] = msg
            try:
                backend.close()
            finally:
                _free(dev)
            raise EngineLoadError(msg) from exc
        self.current, self.current_plan = backend, plan
        info = backend.load_info
        self.load_records[key] = {
            "load_s": info.load_s, "quantize_s": info.quantize_s, "quantize_cached": info.quantize_cached,
            "weight_bytes": info.weight_bytes, "load_count": self.loads[key], "memory": probe.result,
            "details": {k: v for k, v in info.details.items() if k != "quantization"},
            "quantization": _quant_brief(info.details.get("quantization")),
            "versions": backend.versions(),
        }
        return backend

    def release(self) -> None:
        """Close the loaded engine and record device memory afterwards (should be back at baseline)."""
        if self.current is None:
            return
        key, dev = self.current_plan.engine.id, self.current.device
        try:
            self.current.close()
        finally:
            self.current, self.current_plan = None, None
            _free(dev)
            self.close_records[key] = device_memory_now(dev)


def _free(dev) -> None:
    gc.collect()
    if dev.kind == "cuda":
        import torch

        torch.cuda.synchronize(dev.index)
        torch.cuda.empty_cache()


def _quant_brief(q: dict[str, Any] | None) -> dict[str, Any] | None:
    if not q:
        return None
    return {k: v for k, v in q.items() if k not in {"layers"}}


def build_request(cell: Cell, frames: Frames, settings: Settings) -> Request:
    task = get_task(cell.task)
    return Request(clip=cell.clip, frames=frames, messages=task.messages(cell.clip),
                   candidates=task.candidates(cell.clip), max_new_tokens=settings.max_new_tokens)


def sampling_for(cell: Cell, settings: Settings) -> SamplingSpec:
    """The sampling spec for a clip (support-frame anchoring narrows the window when given)."""
    from core.anchoring import anchor

    return anchor(settings.sampling(), cell.clip)


def record(cell: Cell, gen: Generation, frames: Frames, pool: EnginePool, *, memory: dict[str, Any],
           rounds: list[float] | None = None) -> dict[str, Any]:
    """The JSON-able record of one finished cell (what extra_info, results files and goldens use)."""
    task = get_task(cell.task)
    eng = cell.plan.engine
    t = dict(gen.timings)
    t["video_decode_s"] = frames.decode_s
    t["end_to_end_s"] = frames.decode_s + t["total_s"]
    t["decode_per_token_s"] = t["decode_s"] / (gen.new_tokens - 1) if gen.new_tokens > 1 else None
    dev = devices.CPU if eng.device == "cpu" else devices.primary()
    truth = task.truth(cell.clip)
    return {
        "type": "cell", "cell": cell.id, "engine": eng.id, "model": eng.model, "backend": eng.backend,
        "format": eng.format, "device": eng.device, "gpu_class": dev.gpu_class, "gpu_name": dev.name,
        "task": cell.task, "video": cell.clip.id, "video_path": str(cell.clip.path),
        "truth": truth, "predicted": gen.predicted, "parsed": task.parse(gen.text, cell.clip),
        "correct": (gen.predicted == truth) if truth is not None else None,
        "answer": gen.text, "token_ids": gen.token_ids,
        "candidate_logprobs": gen.candidate_logprobs, "top_logprobs": gen.top_logprobs,
        "timings": t, "rounds_s": rounds,
        "tokens": {"prompt": gen.prompt_tokens, "video": gen.video_tokens, "new": gen.new_tokens},
        "load": pool.load_records.get(eng.id, {}), "memory": memory, "frames": frames.summary(),
        "mode": cell.plan.verdict.mode, "mode_note": cell.plan.verdict.reason,
        "status": "ok", "time": time.time(), **({"extra": gen.extra} if gen.extra else {}),
    }


def error_record(cell: Cell, exc: BaseException) -> dict[str, Any]:
    """The record of a failed cell: the error, and nothing that pretends to be a measurement."""
    eng = cell.plan.engine
    return {"type": "cell", "cell": cell.id, "engine": eng.id, "model": eng.model, "backend": eng.backend,
            "format": eng.format, "device": eng.device, "task": cell.task, "video": cell.clip.id,
            "video_path": str(cell.clip.path), "status": "error", "error_type": type(exc).__name__,
            "error": str(exc), "traceback": traceback.format_exc(limit=6), "time": time.time()}


def run_cell(cell: Cell, pool: EnginePool, frames_cache: FrameCache, settings: Settings, *,
             timer: Callable[[Callable[[], Generation]], tuple[Generation, list[float] | None]] | None = None,
             ) -> dict[str, Any]:
    """Run one cell (optionally through ``timer``, e.g. pytest-benchmark) and return its record."""
    frames = frames_cache.get(cell.clip, sampling_for(cell, settings))
    backend = pool.get(cell.plan)
    request = build_request(cell, frames, settings)
    with MemoryProbe(backend.device) as probe:
        if timer is None:
            gen, rounds = backend.generate(request), None
        else:
            gen, rounds = timer(lambda: backend.generate(request))
    rec = record(cell, gen, frames, pool, memory=probe.result, rounds=rounds)
    if backend.device.kind == "cuda":
        rec["roofline"] = _roofline(rec, backend)
    return rec


def _roofline(rec: dict[str, Any], backend: Backend) -> dict[str, Any] | None:
    """Floors and measured/floor ratios; None (with the reason logged in the record) on failure."""
    from core.metrics.roofline import annotate, measure_peaks

    try:
        return annotate(rec, config=backend.model_config(), lm_weight_bytes=backend.lm_weight_bytes(),
                        peaks=measure_peaks(backend.device.index))
    except Exception as exc:  # noqa: BLE001 - a floor is a measurement aid, never a cell failure
        return {"error": f"{type(exc).__name__}: {exc}"}
