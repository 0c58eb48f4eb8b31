"""Suite settings: defaults < ``[tool.vqbench]`` in pyproject.toml < ``VQBENCH_*`` env < options.

One frozen object, built once per session, so every cell sees the same configuration and the
results file records it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.sampling import SamplingSpec, parse_resolution

DEFAULT_GPU_MODELS = ["tiny", "qwen2.5-vl-3b", "qwen2.5-vl-7b", "cosmos-reason1-7b"]


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything that selects cells and changes how they run."""

    models: list[str] = field(default_factory=lambda: ["tiny"])
    """Models for CPU cells (names or local paths)."""
    gpu_models: list[str] = field(default_factory=lambda: list(DEFAULT_GPU_MODELS))
    backends: list[str] = field(default_factory=lambda: ["hf", "vllm", "trtllm"])
    formats: list[str] = field(default_factory=list)
    """Empty = every format."""
    tasks: list[str] = field(default_factory=lambda: ["anomaly"])
    model_tasks: dict[str, list[str]] = field(default_factory=dict)
    """Per-model task lists overriding ``tasks`` (e.g. {"tiny-internvl": ["mcq"]})."""
    videos: str = ""
    """Folder or manifest; empty = the committed fixture clips."""
    max_videos: int = 0
    """Use only the first N clips (0 = all)."""
    fps: float | None = 4.0
    nframes: int | None = None
    min_frames: int = 4
    max_frames: int = 768
    resolution: str = "250x250"
    """WIDTHxHEIGHT rounded to the 28-pixel grid ('' = keep aspect within the pixel budget)."""
    max_new_tokens: int = 7
    rounds: int = 3
    warmup_rounds: int = 1
    reference_format: str = "bf16"
    results: str = ""
    """JSON-lines file every finished cell is appended to ('' = none)."""
    attn_implementation: str = "sdpa"
    fast: bool = False
    ignore_eos: bool = False
    calibration: str = "captions"
    calib_size: int = 32
    tensor_parallel_size: int = 1
    allow_pickle: bool = False
    trust_remote_code: bool = False
    golden_tolerance: float = 0.05
    """Largest change of a rounded label log-prob (nats) a golden accepts."""
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per-format drift thresholds overriding the defaults (see core.metrics.drift)."""

    def tasks_for(self, model: str) -> list[str]:
        """The tasks a model's cells run (``--task`` given on the command line applies to all)."""
        return self.model_tasks.get(model, self.tasks)

    def sampling(self) -> SamplingSpec:
        res = parse_resolution(self.resolution) if self.resolution else None
        return SamplingSpec(fps=None if self.nframes else self.fps, nframes=self.nframes,
                            min_frames=self.min_frames, max_frames=self.max_frames, resolution=res)

    def engine_options(self):
        from core.backends.base import EngineOptions

        return EngineOptions(attn_implementation=self.attn_implementation, fast=self.fast,
                             ignore_eos=self.ignore_eos, calibration=self.calibration,
                             calib_size=self.calib_size, tensor_parallel_size=self.tensor_parallel_size,
                             allow_pickle=self.allow_pickle, trust_remote_code=self.trust_remote_code)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LISTS = {"models", "gpu_models", "backends", "formats", "tasks"}


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name in _LISTS:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ConfigError(f"{name} must be a list or a comma-separated string")
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return bool(value)
    if name in {"fps"}:
        return None if value in (None, "", "none") else float(value)
    if name in {"nframes"}:
        return None if value in (None, "", 0, "0", "none") else int(value)
    if isinstance(current, int) and not isinstance(current, bool):
        return int(value)
    if isinstance(current, float):
        return float(value)
    return value


def load_pyproject(root: Path) -> dict[str, Any]:
    """The ``[tool.vqbench]`` table of ``root/pyproject.toml`` ({} when absent)."""
    f = root / "pyproject.toml"
    if not f.is_file():
        return {}
    try:
        return tomllib.loads(f.read_text()).get("tool", {}).get("vqbench", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{f}: invalid TOML ({exc})") from None


def build(root: Path, overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from pyproject, then environment (``VQBENCH_<FIELD>``), then explicit overrides."""
    base = Settings()
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    for source, data in (("pyproject", load_pyproject(root)),
                         ("env", {k[8:].lower(): v for k, v in (env or os.environ).items()
                                  if k.startswith("VQBENCH_") and k[8:].lower() in known}),
                         ("option", {k: v for k, v in (overrides or {}).items() if v is not None})):
        for k, v in data.items():
            k = k.replace("-", "_")
            if k not in known:
                from core.errors import unknown_name

                raise unknown_name(f"[tool.vqbench] key (from {source})", k, known)
            try:
                values[k] = _coerce(k, v, getattr(base, k))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: bad value {v!r} for {k}: {exc}") from None
    settings = replace(base, **values)
    settings.sampling()  # validate early, with the user's values in the message
    return settings
