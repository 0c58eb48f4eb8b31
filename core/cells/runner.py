"""Running cells: one engine loaded at a time, decoded frames cached, every result a typed record.

Used by the pytest suite and by ``vqbench run`` alike, so both measure the same way.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from core.backends import backend_class
from core.backends.base import Backend
from core.base import timeline
from core.base.errors import BudgetError, DoesNotFit, VideoError, VqbenchError
from core.base.records import CellIdentity, CellRecord, LoadDetails, RecordKind, engine_record, error_cell_record
from core.inputs.requests import Generation, Request
from core.inputs.sampling import SamplingSpec, anchor
from core.inputs.video import Frames, VideoClip, load_frames
from core.metrics.memory import MemoryProbe, snapshot
from core.metrics.vision import VisionKey, VisionStore
from core.plan import device as devices
from core.plan import kernels
from core.plan.capability import CapabilityVerdict
from core.plan.estimate import ClipBudget
from core.plan.matrix import Cell, EnginePlan
from core.plan.settings import Settings

LEAK_TOLERANCE_BYTES = 256 * 2**20
"""How far above its pre-load baseline device memory may stay once an engine closed (allocator
caches); more is reported in the engine's close record as not returned."""
HOST_LEAK_TOLERANCE_BYTES = 512 * 2**20
"""The same for host memory, which also keeps the modules an engine's first load imports (vLLM's
front end imports its model code while the engine starts: ~0.3 GB on CPU). Repeated loads of an
engine must show no growth at all (``bench/unit/test_memory.py``: 20 loads)."""


class EngineLoadError(VqbenchError):
    """An engine failed to load; every cell of it fails with this message (loaded once, failed once)."""


class FrameCache:
    """Decoded clips by (path, sampling); errors are cached too, so a bad file is decoded once."""

    def __init__(self, max_bytes: int = 2 * 2**30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], Frames | BaseException] = OrderedDict()

    def get(self, clip: VideoClip, spec: SamplingSpec) -> Frames:
        key = (str(clip.path), spec.key())
        if key not in self._items:
            with timeline.phase("video decode"):
                try:
                    self._items[key] = load_frames(clip.path, spec)
                except VideoError as exc:
                    self._items[key] = exc
            self._evict()
        self._items.move_to_end(key)
        item = self._items[key]
        if isinstance(item, BaseException):
            raise item
        return item

    def _evict(self) -> None:
        total = sum(v.array.nbytes for v in self._items.values() if isinstance(v, Frames))
        while total > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            if isinstance(old, Frames):
                total -= old.array.nbytes


class EnginePool:
    """Holds at most one loaded engine; switching engines closes the previous one first.

    Every load and close is reported through ``on_event`` as an engine record: where the load's
    time went, the memory it took, and whether memory went back to its baseline after closing.
    """

    def __init__(self, settings: Settings, *, on_event: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        self.settings = settings
        self.on_event = on_event or (lambda rec: None)
        self.current: Backend | None = None
        self.current_plan: EnginePlan | None = None
        self.loads: Counter[str] = Counter()
        self.failures: dict[str, str] = {}
        self.load_records: dict[str, LoadDetails] = {}
        self.close_records: dict[str, dict[str, Any]] = {}
        self.baselines: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        """Engines in the order they ran, each with its wall time from load start to close."""
        self.vision = VisionStore()
        """The reference format's vision embeddings, for later formats' vision drift."""
        self.budgets: dict[str, tuple[ClipBudget | None, CapabilityVerdict]] = {}
        self._started = 0.0

    def device_for(self, plan: EnginePlan) -> devices.DeviceInfo:
        return devices.for_kind(plan.engine.device, self.settings.cpu_dtype)

    def set_budget(self, plan: EnginePlan, budget: ClipBudget | None, fits: CapabilityVerdict) -> None:
        """Hand in a budget made with the clips' header costs (``vqbench run`` prints its estimate)."""
        self.budgets[plan.engine.id] = (budget, fits)

    def budget(self, plan: EnginePlan) -> ClipBudget | None:
        """The engine's memory and context budget (``core.plan.estimate.plan_budget``), worked out once, before
        its first load; raises ``DoesNotFit`` when the engine cannot fit this device at all."""
        key = plan.engine.id
        if key not in self.budgets:
            from core.plan.estimate import plan_budget

            with timeline.phase("budget"):
                self.budgets[key] = plan_budget(plan, self.device_for(plan), [], {}, self.settings,
                                                say=lambda _: None)
        budget, fits = self.budgets[key]
        if not fits:
            raise DoesNotFit(fits.reason)
        return budget

    def get(self, plan: EnginePlan) -> Backend:
        if self.current is not None and self.current_plan == plan:
            return self.current
        self.release()
        key = plan.engine.id
        if key in self.failures:
            raise EngineLoadError(self.failures[key])
        self.budget(plan)  # an engine that cannot fit is refused before it loads
        dev = self.device_for(plan)
        backend = backend_class(plan.engine.backend)(plan.spec, plan.fmt, dev, self.settings.engine_options())
        self.loads[key] += 1
        try:
            with timeline.phase("imports"):
                backend.imports()
        except Exception as exc:
            self.failures[key] = f"loading {key} failed: {type(exc).__name__}: {exc}"
            raise EngineLoadError(self.failures[key]) from exc
        if dev.kind == "cuda":
            # This process's CUDA context and the roofline's one-time measurement come before the
            # baseline: they stay for the session and are not the engine's.
            from core.metrics.roofline import measure_peaks

            with timeline.phase("roofline peaks"):
                measure_peaks(dev.index)
        _free(dev)
        baseline = snapshot(dev)
        t0 = self._started = time.perf_counter()
        try:
            with MemoryProbe(dev, backend.pids, baseline=baseline) as probe:
                backend.load_info = backend.load()
        except Exception as exc:
            msg = f"loading {key} failed: {type(exc).__name__}: {exc}"
            self.failures[key] = msg
            try:
                backend.close()
            finally:
                _free(dev)
            self.on_event(engine_record("load-failed", key, {"error": msg, "wall_s": time.perf_counter() - t0}))
            raise EngineLoadError(msg) from exc
        self.current, self.current_plan = backend, plan
        self.baselines[key] = baseline
        info = backend.load_info
        observed = kernels.observe_mode(info.details.get("kernels"), fmt=plan.fmt, backend=plan.engine.backend,
                                        device_kind=dev.kind)
        self.load_records[key] = {
            "model": plan.engine.model, "backend": plan.engine.backend, "format": plan.engine.format,
            "device_class": dev.gpu_class, "device_name": dev.name,
            # what ran against what the capability verdict declared (core.plan.kernels.check)
            "observed_mode": {**observed, "declared": plan.verdict.mode},
            "load_s": info.load_s, "quantize_s": info.quantize_s, "quantize_cached": info.quantize_cached,
            "weight_bytes": info.weight_bytes, "weights_source": info.weights_source,
            "weight_bytes_estimated": info.weights_source == "estimate",
            "load_count": self.loads[key], "memory": probe.result,
            "wall_s": time.perf_counter() - t0,
            "details": {k: v for k, v in info.details.items() if k != "quantization"},
            "quantization": _quant_brief(info.details.get("quantization")),
            "versions": backend.versions(),
        }
        self.on_event(engine_record("load", key, self.load_records[key]))
        return backend

    def memory_baseline(self, plan: EnginePlan) -> dict[str, Any] | None:
        return self.baselines.get(plan.engine.id)

    def release(self) -> None:
        """Close the loaded engine and check memory against the engine's pre-load baseline."""
        if self.current is None or self.current_plan is None:
            return
        key, dev = self.current_plan.engine.id, self.current.device
        try:
            with timeline.phase("engine close"):
                self.current.close()
        finally:
            self.current, self.current_plan = None, None
            _free(dev)
            self.history.append({"engine": key, "wall_s": round(time.perf_counter() - self._started, 3)})
            after = snapshot(dev)
            base = self.baselines.get(key, {})
            rec = {"after": after, "baseline": base,
                   "host_growth_bytes": after["host_bytes"] - base.get("host_bytes", after["host_bytes"])}
            if dev.kind == "cuda" and after.get("gpu_bytes") is not None and base.get("gpu_bytes") is not None:
                rec["gpu_growth_bytes"] = after["gpu_bytes"] - base["gpu_bytes"]
            rec["returned_to_baseline"] = (rec["host_growth_bytes"] <= HOST_LEAK_TOLERANCE_BYTES
                                           and rec.get("gpu_growth_bytes", 0) <= LEAK_TOLERANCE_BYTES)
            rec["tolerance_bytes"] = {"host": HOST_LEAK_TOLERANCE_BYTES, "gpu": LEAK_TOLERANCE_BYTES}
            self.close_records[key] = rec
            self.on_event(engine_record("close", key, rec))


def _free(dev) -> None:
    gc.collect()
    if dev.kind == "cuda":
        import torch

        if torch.cuda.is_initialized():
            torch.cuda.synchronize(dev.index)
            torch.cuda.empty_cache()


def _quant_brief(q: dict[str, Any] | None) -> dict[str, Any] | None:
    if not q:
        return None
    return {k: v for k, v in q.items() if k not in {"layers"}}


def build_request(cell: Cell, frames: Frames, settings: Settings) -> Request:
    task = cell.task
    return Request(clip=cell.clip, frames=frames, messages=task.messages(cell.clip),
                   candidates=task.candidates(cell.clip), max_new_tokens=settings.max_new_tokens)


def sampling_for(cell: Cell, settings: Settings) -> SamplingSpec:
    """The sampling spec for a clip (support-frame anchoring narrows the window when given)."""
    return anchor(settings.sampling(), cell.clip)


def record(cell: Cell, gen: Generation, frames: Frames, backend: Backend, pool: EnginePool, *, kind: RecordKind,
           memory: dict[str, Any], rounds: list[float] | None = None) -> CellRecord:
    """The typed record of one finished cell (what extra_info, results files and goldens use)."""
    task, eng = cell.task, cell.plan.engine
    t: dict[str, Any] = dict(gen.timings)
    t["video_decode_s"] = frames.decode_s
    t["end_to_end_s"] = frames.decode_s + t["total_s"]
    t["decode_per_token_s"] = t["decode_s"] / (gen.new_tokens - 1) if gen.new_tokens > 1 else None
    dev = backend.device
    truth = task.truth(cell.clip)
    mode = kernels.record_mode(cell.plan.verdict.mode, cell.plan.verdict.reason,
                               pool.load_records.get(eng.id, {}).get("observed_mode"))
    rec: CellRecord = {
        "type": "cell", "kind": kind, "cell": cell.id, "engine": eng.id, "model": eng.model, "backend": eng.backend,
        "format": eng.format, "device": eng.device, "gpu_class": dev.gpu_class, "gpu_name": dev.name,
        "task": task.name, "video": cell.clip.id, "video_path": str(cell.clip.path),
        "truth": truth, "predicted": gen.predicted, "parsed": task.parse(gen.text, cell.clip),
        "correct": (gen.predicted == truth) if truth is not None else None,
        "answer": gen.text, "token_ids": gen.token_ids,
        "candidate_logprobs": gen.candidate_logprobs, "top_logprobs": gen.top_logprobs,
        "timings": t, "rounds_s": rounds,  # type: ignore[typeddict-item]
        "tokens": {"prompt": gen.prompt_tokens, "video": gen.video_tokens, "new": gen.new_tokens},
        "load": pool.load_records.get(eng.id, {}), "memory": memory, "frames": frames.summary(),
        # the verdict's mode, unless the load observed the engine run other kernels (core.plan.kernels.record_mode)
        "mode": mode["mode"], "mode_note": mode["mode_note"], "mode_observed": mode["mode_observed"],
        "status": "ok", "time": time.time(),
    }
    if cell.plan.spec.is_prequantized and cell.plan.reference is not None:
        rec["reference_model"] = cell.plan.reference.model  # reports set the checkpoint beside it
    if gen.extra:
        rec["extra"] = gen.extra
    if gen.vocab:
        rec["vocab"] = gen.vocab
    from core.metrics import fingerprint

    rec["inputs"] = {"pixels_sha256": fingerprint.pixels_sha256(frames.array), **gen.inputs,
                     "decoder": fingerprint.decoder_versions()}
    return rec


def cell_identity(cell: Cell) -> CellIdentity:
    """The fields that name a cell in a record (an error record is these and the error). The GPU class
    is the one the cell was planned for (its engine plan's device class)."""
    eng = cell.plan.engine
    gpu_class = cell.plan.device_class if cell.plan.device_class != "gpu" else None  # "gpu": planned with none
    return {"cell": cell.id, "engine": eng.id, "model": eng.model, "backend": eng.backend, "format": eng.format,
            "device": eng.device, "gpu_class": gpu_class, "task": cell.task.name, "video": cell.clip.id,
            "video_path": str(cell.clip.path)}


def error_record(cell: Cell, exc: BaseException, *, kind: RecordKind) -> CellRecord:
    """The record of a failed cell: the error, and nothing that pretends to be a measurement."""
    return error_cell_record(cell_identity(cell), kind=kind, error_type=type(exc).__name__, error=str(exc),
                             traceback=traceback.format_exc(limit=6))


def run_cell(cell: Cell, pool: EnginePool, frames: FrameCache | Frames, settings: Settings, *,
             timer: Callable[..., tuple[Generation, list[float]]] | None = None,
             video_wait_s: float | None = None) -> CellRecord:
    """Run one cell and return its record: timed over rounds when ``timer`` is given (e.g.
    pytest-benchmark), else one untimed scoring run. Scores are taken after the clock stops.

    ``frames`` is the clip decoded already (``core.cells.answering``'s decode-ahead workers), or the cache
    that decodes it; ``video_wait_s``, how long the engine waited for those frames (recorded)."""
    if isinstance(frames, FrameCache):
        frames = frames.get(cell.clip, sampling_for(cell, settings))
    check_budget(cell, frames, pool)
    backend = pool.get(cell.plan)
    request = build_request(cell, frames, settings)
    with MemoryProbe(backend.device, backend.pids, baseline=pool.memory_baseline(cell.plan)) as probe:
        if timer is None:
            gen, rounds = backend.generate(request), None
        else:
            gen, rounds = timer(lambda: backend.generate(request), before_round=backend.before_round)
    rec = _scored(cell, request, gen, frames, backend, pool, settings, kind="timed" if timer is not None else "scoring",
                  memory=probe.result, rounds=rounds)
    if video_wait_s is not None:
        rec["timings"]["video_wait_s"] = video_wait_s
    if backend.device.kind == "cuda":
        rec["roofline"] = _roofline(rec, backend)
        if timer is not None:
            from core.metrics.history import gpu_clocks

            rec["gpu_clocks"] = gpu_clocks(backend.device.index)  # a clock change then shows as one
    return rec


def run_batch(cells: list[Cell], pool: EnginePool, frames: list[Frames], settings: Settings, *,
              video_wait_s: list[float] | None = None) -> list[CellRecord]:
    """Answer several cells of one engine at once (``Backend.generate_many``: vLLM has them all in flight
    and batches them), then score each, untimed. Batched answers have no latency of their own: their
    records are ``scoring`` records with a ``batch`` field (its size, the batch's wall time, the answer's
    place in it); throughput is the batches' clips over their wall time. Every cell must fit the budget
    (``run_cell``'s check, made by the caller one cell at a time)."""
    plan = cells[0].plan
    backend = pool.get(plan)
    requests = [build_request(c, f, settings) for c, f in zip(cells, frames, strict=True)]
    with MemoryProbe(backend.device, backend.pids, baseline=pool.memory_baseline(plan)) as probe:
        t0 = time.perf_counter()
        gens = backend.generate_many(requests)
        wall = time.perf_counter() - t0
    out = []
    for i, (cell, request, gen, f) in enumerate(zip(cells, requests, gens, frames, strict=True)):
        rec = _scored(cell, request, gen, f, backend, pool, settings, kind="scoring", memory=probe.result, rounds=None)
        rec["batch"] = {"size": len(cells), "index": i, "wall_s": wall}
        if video_wait_s is not None:
            rec["timings"]["video_wait_s"] = video_wait_s[i]
        out.append(rec)
    return out


def check_budget(cell: Cell, frames: Frames, pool: EnginePool) -> None:
    """Raise ``BudgetError`` when the clip's decoded frames cannot fit the engine's context or memory."""
    budget = pool.budget(cell.plan)
    problem = budget.frames_problem(cell.clip.id, frames.array.shape) if budget is not None else None
    if problem:  # this clip alone cannot fit the engine's context or memory: it fails, naming what to lower
        raise BudgetError(f"{cell.clip.id}: {problem}")


def _scored(cell: Cell, request: Request, gen: Generation, frames: Frames, backend: Backend, pool: EnginePool,
            settings: Settings, *, kind: RecordKind, memory: dict[str, Any],
            rounds: list[float] | None) -> CellRecord:
    """Score an answer (untimed), build its record and add its vision drift (HF)."""
    with timeline.phase("scoring"):
        gen = backend.score(request, gen)
    rec = record(cell, gen, frames, backend, pool, kind=kind, memory=memory, rounds=rounds)
    if gen.vision is not None:
        eng = cell.plan.engine
        # keyed by the model whose reference-format answers it is compared with (a pre-quantized
        # checkpoint: its --reference-model)
        ref = cell.plan.reference if cell.plan.spec.is_prequantized else None
        key = VisionKey((ref or eng).model, eng.backend, eng.device, str(cell.clip.path), tuple(frames.indices),
                        tuple(frames.array.shape))
        emb, groups = gen.vision
        vision = pool.vision.observe(key, reference=eng.format == settings.reference_format, embeddings=emb,
                                     groups=groups, reference_format=settings.reference_format)
        if vision is not None:
            rec["vision"] = vision
    return rec


def _roofline(rec: CellRecord, backend: Backend) -> dict[str, Any] | None:
    """Floors and measured/floor ratios; None (with the reason logged in the record) on failure."""
    from core.metrics.roofline import annotate, measure_peaks

    try:
        with timeline.phase("roofline peaks"):
            peaks = measure_peaks(backend.device.index)
        return annotate(rec, shape=backend.model_shape(), lm_weight_bytes=backend.lm_weight_bytes(), peaks=peaks)
    except Exception as exc:  # noqa: BLE001 - a floor is a measurement aid, never a cell failure
        return {"error": f"{type(exc).__name__}: {exc}"}
