"""The benchmark matrix as data: models x backends x formats x tasks x devices, then x clips.

An ``Engine`` is what loads once (model, backend, format, device); a ``Cell`` is an engine asked
about one clip with one task. Each carries its capability verdict, so the suite can skip a cell
with the reason before any backend code runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import capability, device as devices
from core.capability import Verdict
from core.formats import QuantFormat, all_formats, get_format
from core.models import registry
from core.models.registry import ModelSpec
from core.settings import Settings
from core.video import VideoClip


@dataclass(frozen=True)
class Engine:
    """One loaded model: (model, backend, format, device kind). Loaded once per session."""

    model: str
    backend: str
    format: str
    device: str  # "cpu" or "cuda"

    @property
    def id(self) -> str:
        return f"{self.model}-{self.backend}-{self.format}-{self.device}"

    def with_format(self, fmt: str) -> "Engine":
        return Engine(self.model, self.backend, fmt, self.device)


@dataclass(frozen=True)
class EnginePlan:
    """An engine with everything needed to run or skip it."""

    engine: Engine
    spec: ModelSpec = field(compare=False)
    fmt: QuantFormat = field(compare=False)
    verdict: Verdict = field(compare=False)

    @property
    def marks(self) -> list[str]:
        return ["cpu" if self.engine.device == "cpu" else "gpu", self.engine.backend]


@dataclass(frozen=True)
class Cell:
    """One engine, one task, one clip."""

    plan: EnginePlan
    task: str
    clip: VideoClip

    @property
    def id(self) -> str:
        return f"{self.plan.engine.id}-{self.task}-{self.clip.id}"


def _spec_or_none(name: str) -> tuple[ModelSpec | None, str]:
    try:
        return registry.resolve(name), ""
    except Exception as exc:  # noqa: BLE001 - the reason becomes the skip message
        return None, str(exc)


def plan_engines(settings: Settings) -> list[EnginePlan]:
    """Every engine the settings ask for, each with its verdict for this machine."""
    fmts = [get_format(f) for f in settings.formats] if settings.formats else all_formats()
    gpu = devices.primary()
    no_gpu = devices.no_gpu_reason() if gpu.kind == "cpu" else ""
    plans: list[EnginePlan] = []
    seen: set[Engine] = set()
    for dev_kind, model_names in (("cpu", settings.models), ("cuda", settings.gpu_models)):
        for model_name in model_names:
            spec, err = _spec_or_none(model_name)
            for backend in settings.backends:
                capability.check(backend, fmts[0], devices.CPU, check_packages=False)  # validates the name
                for fmt in fmts:
                    eng = Engine(spec.name if spec else model_name, backend, fmt.id, dev_kind)
                    if eng in seen:
                        continue
                    seen.add(eng)
                    if spec is None:
                        plans.append(EnginePlan(eng, registry.ModelSpec(model_name, "unknown", "", err),
                                                fmt, Verdict(False, err)))
                        continue
                    if dev_kind == "cpu":
                        dev = devices.CPU
                        verdict = (Verdict(False, f"{spec.name} is shape-only: its random weights are "
                                                  "created on a GPU; run it with -m gpu")
                                   if spec.needs_gpu else capability.check(backend, fmt, dev))
                    else:
                        dev = gpu
                        verdict = (Verdict(False, f"no CUDA GPU: {no_gpu}") if gpu.kind == "cpu"
                                   else capability.check(backend, fmt, dev))
                        if verdict and spec.weight_gib_bf16() > (gpu.memory_gib or 0) * 0.9:
                            verdict = Verdict(False, f"{spec.name} needs ~{spec.weight_gib_bf16():.0f} GiB "
                                                     f"in bf16; {gpu.describe()} has too little memory")
                    plans.append(EnginePlan(eng, spec, fmt, verdict))
    return plans


def expand(plans: list[EnginePlan], tasks: list[str], clips: list[VideoClip]) -> list[Cell]:
    """Engines x tasks x clips, in a stable order."""
    return [Cell(p, t, c) for p in plans for t in tasks for c in clips]


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): the second of four shards (1-based, as CI systems and Slurm arrays count)."""
    from core.errors import ConfigError

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like 2/4, got '{text}'") from None
    if not 1 <= i <= n:
        raise ConfigError(f"--shard {text}: need 1 <= i <= n")
    return i, n
