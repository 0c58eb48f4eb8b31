"""The benchmark matrix as data: models x backends x formats x tasks x devices, then x clips.

An ``Engine`` is what loads once (model, backend, format, device); a ``Cell`` is an engine asked
about one clip with one task. Each plan carries the verdicts ``core.plan.capability`` gave it (can it
run here; are its goldens and its drift judged here), so the suite skips with the reason before
any backend code runs, or deselects what can never run on that device kind (a structural verdict).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from core.base.errors import ConfigError, Unsupported
from core.inputs.tasks import Task
from core.inputs.video import VideoClip
from core.models import registry
from core.models.registry import ModelSpec
from core.plan import capability
from core.plan import device as devices
from core.plan.capability import CapabilityVerdict
from core.plan.catalog import backend_info
from core.plan.formats import QuantFormat, all_formats, get_format
from core.plan.settings import Settings

DeviceKind = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class Engine:
    """One loaded model: (model, backend, format, device kind). Loaded once per session."""

    model: str
    backend: str
    format: str
    device: DeviceKind

    @property
    def id(self) -> str:
        return f"{self.model}-{self.backend}-{self.format}-{self.device}"

    @property
    def group(self) -> str:
        """What stays on one xdist worker: every format of a model on a backend (drift needs its reference)."""
        return f"{self.device}-{self.model}-{self.backend}"

    def with_format(self, fmt: str) -> Engine:
        return Engine(self.model, self.backend, fmt, self.device)


@dataclass(frozen=True)
class EnginePlan:
    """An engine with everything needed to run or skip it, and to judge it."""

    engine: Engine
    spec: ModelSpec = field(compare=False)
    fmt: QuantFormat = field(compare=False)
    verdict: CapabilityVerdict = field(compare=False)
    """Can it run here (and in which mode)."""
    device_class: str = field(compare=False, default="cpu")
    """cpu, sm90, sm100 ...: the class goldens are keyed by."""
    golden: CapabilityVerdict = field(compare=False, default=CapabilityVerdict(True))
    """Are its answers checked against goldens here."""
    drift: CapabilityVerdict = field(compare=False, default=CapabilityVerdict(True))
    """Is its drift against the reference format judged here."""
    reference: Engine | None = field(compare=False, default=None)
    """The engine its drift is judged against: the same model in the reference format, or, for a
    pre-quantized checkpoint, the ``--reference-model`` in the reference format; None for the
    reference itself."""

    @property
    def group(self) -> str:
        """What must run on the same worker as this engine: its engine group, or for a pre-quantized
        checkpoint with a ``--reference-model``, that reference's group (its drift needs that engine)."""
        if self.spec.is_prequantized and self.reference is not None:
            return self.reference.group
        return self.engine.group

    @property
    def marks(self) -> list[str]:
        return ["cpu" if self.engine.device == "cpu" else "gpu", self.engine.backend]

    def golden_id(self, task: str) -> str:
        """Engine id with the device class (cpu, sm90 ...) in place of the device kind."""
        e = self.engine
        return f"{e.model}-{e.backend}-{e.format}-{self.device_class}-{task}"


@dataclass(frozen=True)
class Cell:
    """One engine, one task, one clip."""

    plan: EnginePlan
    task: Task
    clip: VideoClip

    @property
    def id(self) -> str:
        return f"{self.plan.engine.id}-{self.task.name}-{self.clip.id}"


def plan_engines(settings: Settings, *, updating_goldens: bool = False) -> list[EnginePlan]:
    """Every engine the settings ask for, each with its verdicts for this machine."""
    # Formats read only from checkpoints quantized elsewhere are planned for such checkpoints, not by default.
    fmts = ([get_format(f) for f in settings.formats] if settings.formats
            else [f for f in all_formats() if not f.checkpoint_only])
    for b in settings.backends:
        backend_info(b)  # an unknown name is a usage error, not a skip
    reference = _reference_spec(settings)
    gpu = devices.primary()
    plans: list[EnginePlan] = []
    seen: set[Engine] = set()
    for dev_kind, model_names in (("cpu", settings.models), ("cuda", settings.gpu_models)):
        dev = devices.cpu(settings.cpu_dtype) if dev_kind == "cpu" else gpu
        specs = [(registry.resolve_or_unknown(m, allow_pickle=settings.allow_pickle), fmts) for m in model_names]
        _check_names([s for s, _ in specs] + ([reference] if reference is not None else []))
        if (reference is not None and any(s.is_prequantized for s, _ in specs)
                and reference.name not in {s.name for s, _ in specs}):
            # the pre-quantized models' drift is judged against it: its reference-format engine only
            specs.append((reference, [get_format(settings.reference_format)]))
        for spec, spec_fmts in specs:
            if spec.is_prequantized:
                # A pre-quantized checkpoint runs in its own format only, whatever --format says.
                spec_fmts = [get_format(spec.prequantized.format)]
            for backend in settings.backends:
                for fmt in spec_fmts:
                    eng = Engine(spec.name, backend, fmt.id, dev_kind)  # type: ignore[arg-type]
                    if eng in seen:
                        continue
                    seen.add(eng)
                    if dev_kind == "cuda" and gpu.kind == "cpu":
                        # what no GPU could run is structural; the rest waits for a GPU
                        never = (capability.structural_verdict(backend, fmt, "cuda", spec=spec)
                                 if spec.kind != "unknown" else None)
                        verdict = never if never is not None else capability.no_device(devices.no_gpu_reason())
                    else:
                        verdict = capability.check(backend, fmt, dev, spec=spec)
                    plans.append(EnginePlan(eng, spec, fmt, verdict, device_class=_device_class(dev_kind, dev)))
    return _judged(plans, settings, updating_goldens=updating_goldens)


@dataclass(frozen=True)
class Selection:
    """One engine planned on its own (``vqbench run``, the perf probe), exactly as the matrix plans it."""

    plan: EnginePlan
    reference: EnginePlan | None
    """The engine its drift is judged against when the selection holds one: for a pre-quantized
    checkpoint, the ``--reference-model`` in the reference format; None otherwise."""


def select_engine(settings: Settings, *, model: str, backend: str, fmt: str | None, device: str) -> Selection:
    """The plan of one (model, backend, format, device) with every verdict a pytest session would give
    it, through ``plan_engines`` itself. ``fmt`` None: bf16, or a pre-quantized checkpoint's own format
    (naming another format for such a checkpoint is a usage error). ``device``: cpu, cuda, or auto (the
    GPU when there is one)."""
    spec = registry.resolve(model, allow_pickle=settings.allow_pickle)  # a name that does not resolve says why
    if fmt and spec.is_prequantized and get_format(fmt).id != spec.detected_format:
        raise ConfigError(f"{spec.name} is a {spec.detected_format} checkpoint ({spec.prequantized.source}): it runs "
                          f"as {spec.detected_format} only, not --format {fmt}")
    fmt_id = get_format(spec.detected_format or fmt or "bf16").id
    kind: DeviceKind
    if device == "cpu" or (device == "auto" and devices.primary().kind != "cuda"):
        kind = "cpu"
    elif devices.primary().kind == "cuda":
        kind = "cuda"
    else:
        raise Unsupported(f"--device cuda asked for, but there is no GPU: {devices.no_gpu_reason()}")
    one = replace(settings, models=[model] if kind == "cpu" else [], gpu_models=[model] if kind == "cuda" else [],
                  backends=[backend], formats=[fmt_id])
    plans = plan_engines(one)
    plan = next(p for p in plans if p.engine == Engine(spec.name, backend, fmt_id, kind))
    reference = next((p for p in plans if p.engine == plan.reference), None) if spec.is_prequantized else None
    return Selection(plan, reference)


def _check_names(specs: list[ModelSpec]) -> None:
    """Ids, goldens, artifacts and results are keyed by a model's name, and a checkpoint's name is its
    directory's: two different models under one name would share them (one's golden judging the other)."""
    by_name: dict[str, ModelSpec] = {}
    for spec in specs:
        other = by_name.setdefault(spec.name, spec)
        if other is not spec and (other.kind, other.path) != (spec.kind, spec.path):
            a, b = (str(s.path) if s.kind == "checkpoint" else f"the {s.kind} model" for s in (other, spec))
            raise ConfigError(
                f"two models are both named {spec.name!r}: {a} and {b}. Cell ids, goldens and "
                "results are keyed by the name (a checkpoint's is its directory's name), so one would be judged "
                "against the other's goldens: give one directory another name")


def _reference_spec(settings: Settings) -> ModelSpec | None:
    """The ``--reference-model`` (None when not given); a pre-quantized one is a usage error."""
    if not settings.reference_model:
        return None
    spec = registry.resolve(settings.reference_model, allow_pickle=settings.allow_pickle)
    if spec.is_prequantized:
        raise ConfigError(f"--reference-model {settings.reference_model} is itself quantized "
                          f"({spec.detected_format}, {spec.prequantized.source}): name the model it was quantized "
                          f"from, which runs in {settings.reference_format}")
    return spec


def _device_class(dev_kind: str, dev: devices.DeviceInfo) -> str:
    """``cpu`` / ``cpu_fp32`` (the CPU's compute dtype), ``sm90`` ...; ``gpu`` for GPU cells without a GPU."""
    if dev_kind == "cuda" and dev.kind != "cuda":
        return "gpu"
    return dev.gpu_class


def _judged(plans: list[EnginePlan], settings: Settings, *, updating_goldens: bool) -> list[EnginePlan]:
    """The plans with their golden and drift verdicts (which need the whole matrix)."""
    from core.plan.golden import recorded_device_classes

    recorded = recorded_device_classes()
    by_engine = {p.engine: p for p in plans}
    ref_fmt = settings.reference_format
    out = []
    reference_model = registry.resolve(settings.reference_model, allow_pickle=settings.allow_pickle).name \
        if settings.reference_model else ""
    for p in plans:
        e = p.engine
        if p.spec.is_prequantized:
            ref_engine = Engine(reference_model or "?", e.backend, ref_fmt, e.device)
        else:
            ref_engine = e.with_format(ref_fmt)
        ref = by_engine.get(ref_engine)
        golden = capability.golden_verdict(p.spec, p.device_class, recorded_classes=recorded,
                                           updating=updating_goldens)
        drift = capability.drift_verdict(p.spec, e.format, reference_format=ref_fmt,
                                         reference=ref.verdict if ref else None, reference_id=ref_engine.id,
                                         reference_model=reference_model)
        no_reference = ref_engine == e or (p.spec.is_prequantized and not reference_model)
        out.append(replace(p, golden=golden, drift=drift, reference=None if no_reference else ref_engine))
    return out


def expand(plans: list[EnginePlan], tasks: list[Task], clips: list[VideoClip]) -> list[Cell]:
    """Engines x tasks x clips, in a stable order."""
    return [Cell(p, t, c) for p in plans for t in tasks for c in clips]


class Matrix:
    """The planned matrix of a session: the engine plans, the clips of each task, and its cut into
    work units for N workers. Built from settings alone, so the pytest session, its xdist controller
    and a Ray driver all compute the same matrix and the same units."""

    def __init__(self, settings: Settings, *, updating_goldens: bool = False) -> None:
        self.settings = settings
        self.updating_goldens = updating_goldens
        self._plans: list[EnginePlan] | None = None
        self._clips: dict[str, list[VideoClip]] = {}
        self._schedules: dict[int, object] = {}

    @property
    def plans(self) -> list[EnginePlan]:
        if self._plans is None:
            self._plans = plan_engines(self.settings, updating_goldens=self.updating_goldens)
        return self._plans

    def clips_for(self, task: str) -> list[VideoClip]:
        """The clips a task runs on: --videos for every task, else the task's own default set."""
        if task not in self._clips:
            from core.inputs import dataset
            from core.inputs.tasks import get_task

            clips = dataset.load(self.settings.videos or get_task(task).default_dataset)
            if self.settings.max_videos:
                clips = clips[: self.settings.max_videos]
            self._clips[task] = clips
        return self._clips[task]

    def schedule(self, workers: int):
        """The matrix cut into work units for ``workers`` workers (``core.plan.schedule.Plan``)."""
        if workers not in self._schedules:
            from core.plan.schedule import history_costs, plan_units

            history = None
            if self.settings.schedule_history:
                from core.base import results

                history = history_costs(results.read(self.settings.schedule_history))
            self._schedules[workers] = plan_units(self, workers, history=history)
        return self._schedules[workers]

    def unit_of_param(self, param: str, workers: int) -> str | None:
        """The work unit of a matrix test's parameter id (a cell id or an engine's golden id), or None
        for tests that are not matrix cells."""
        by_param = self.schedule(workers).by_param
        if param in by_param:
            return by_param[param]
        # ids pytest rewrote (non-ASCII escaped, duplicates numbered): the longest engine prefix
        prefixes = [(f"group:{p.group}", f"{p.engine.model}-{p.engine.backend}-") for p in self.plans]
        return max(((u, pre) for u, pre in prefixes if param.startswith(pre)), key=lambda up: len(up[1]),
                   default=(None, ""))[0]
