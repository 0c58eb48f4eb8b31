"""The backend interface: load a (model, format) once, then answer requests about clips.

A backend knows nothing about pytest; the suite knows nothing about a backend's internals.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from core.device import DeviceInfo
from core.errors import ConfigError, NumericsError
from core.formats import QuantFormat
from core.models.registry import ModelSpec
from core.video import Frames, VideoClip


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Settings that change how an engine loads or runs (recorded with every result)."""

    attn_implementation: str = "sdpa"
    """'sdpa' (default), 'eager', or 'flash_attention_2' when flash-attn is installed."""
    fast: bool = False
    """HF only: static KV cache + torch.compile (GPU)."""
    ignore_eos: bool = False
    """Always generate max_new_tokens (equal token counts make latency comparable)."""
    calibration: str = "captions"
    """ModelOpt calibration set: 'captions' (text-only) or 'clips' (fixture videos + prompt)."""
    calib_size: int = 32
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    trust_remote_code: bool = False
    allow_pickle: bool = False
    artifact_cache: bool = True
    top_k: int = 5
    """How many top log-probs to keep per generated token (parity checks)."""


@dataclass(frozen=True, kw_only=True)
class Request:
    """One question about one clip."""

    clip: VideoClip
    frames: Frames
    messages: list[dict[str, Any]]
    candidates: list[str]
    max_new_tokens: int = 7


@dataclass(kw_only=True)
class Generation:
    """What a backend returns for one request."""

    text: str
    token_ids: list[int]
    candidate_logprobs: dict[str, float]
    """log p(first token of candidate) at the answer position, over the full vocabulary."""
    top_logprobs: list[list[tuple[int, float]]]
    """Per generated token: the top-k (token id, log-prob) pairs."""
    prompt_tokens: int
    video_tokens: int
    timings: dict[str, float]
    """processor_s, prefill_s (time to first token), decode_s, generate_s, total_s."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def predicted(self) -> str:
        """The candidate with the highest log-prob (ties: the first in task order)."""
        return max(self.candidate_logprobs, key=lambda c: self.candidate_logprobs[c])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["new_tokens"] = self.new_tokens
        d["predicted"] = self.predicted
        return d


@dataclass(kw_only=True)
class LoadInfo:
    """What loading (and quantizing) cost and produced."""

    load_s: float
    quantize_s: float = 0.0
    quantize_cached: bool = False
    weight_bytes: int = 0
    """Bytes of parameters and buffers as stored on the device."""
    details: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """Load once, answer many requests, close cleanly (device memory back to baseline)."""

    name: ClassVar[str]

    def __init__(self, spec: ModelSpec, fmt: QuantFormat, device: DeviceInfo, options: EngineOptions) -> None:
        self.spec = spec
        self.format = fmt
        self.device = device
        self.options = options
        self.load_info: LoadInfo | None = None

    @abstractmethod
    def load(self) -> LoadInfo:
        """Load (and quantize) the model; called once per engine."""

    @abstractmethod
    def generate(self, request: Request) -> Generation:
        """Greedy-decode an answer and score every candidate at the answer position."""

    def close(self) -> None:
        """Free the model and its device memory."""

    def versions(self) -> dict[str, str]:
        """Versions of the packages this backend runs on (for results and machine info)."""
        return {}

    def model_config(self) -> dict[str, Any]:
        """The model's config.json as a dict (roofline and memory estimates read it)."""
        import json

        from core.models import registry

        return json.loads((registry.materialize(self.spec) / "config.json").read_text())

    def lm_weight_bytes(self) -> float:
        """Bytes of language-model linear weights read per decode step, as this backend stores them.

        The default derives it from the config and the format's storage width; backends that hold
        the model in this process measure it exactly.
        """
        from core.estimate import LM_BYTES_PER_WEIGHT
        from core.metrics.roofline import model_shape

        fake = self.name == "hf" and self.format.tool == "modelopt"
        per = 2.0 if fake else LM_BYTES_PER_WEIGHT.get(self.format.name, 2.0)
        return model_shape(self.model_config())["lm_params"] * per

    def __enter__(self) -> "Backend":
        self.load_info = self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def candidate_token_ids(tokenizer, candidates: list[str]) -> dict[str, int]:
    """First token id of each candidate as it starts the assistant reply; they must differ."""
    ids = {}
    for c in candidates:
        toks = tokenizer.encode(c, add_special_tokens=False)
        if not toks:
            raise ConfigError(f"candidate '{c}' tokenizes to nothing")
        ids[c] = toks[0]
    if len(set(ids.values())) != len(ids):
        raise ConfigError(
            f"candidates {candidates} share a first token ({ids}); label scoring needs distinct first tokens"
        )
    return ids


def check_finite(values: list[float], *, where: str) -> None:
    """Raise NumericsError when log-probs are NaN/inf (a broken quantization, not a crash later)."""
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise NumericsError(
            f"{where}: {len(bad)} non-finite log-probs (e.g. {bad[0]}); the model produced NaN/inf "
            "logits - typical of a failed quantization (seed: FP8 'probability tensor contains inf/nan')"
        )
