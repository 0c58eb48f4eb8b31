"""The values that flow between the suite and the engines: how an engine is configured, what it is
asked, what it answers and what loading it cost. Plain data, on the ground floor, so model
families, calibration and the backends all use them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.inputs.video import Frames, VideoClip


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Settings that change how an engine loads or runs (recorded with every result). Built from
    ``Settings.engine_options()``; the fields without an option keep these defaults."""

    attn_implementation: str = "sdpa"
    """'sdpa' (default), 'eager', or 'flash_attention_2' when flash-attn is installed."""
    fast: bool = False
    """HF only: static KV cache + torch.compile (GPU)."""
    ignore_eos: bool = False
    """Always generate max_new_tokens (equal token counts make latency comparable)."""
    calibration: str = "captions"
    """Calibration set: 'captions' (text-only) or 'clips' (fixture videos + prompt)."""
    calib_size: int = 32
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    trust_remote_code: bool = False
    allow_pickle: bool = False
    cpu_dtype: str = "auto"
    """CPU engines: 'auto' (bfloat16 where the CPU has bf16 arithmetic, else float32), 'bfloat16', 'float32'."""
    artifact_cache: bool = True
    top_k: int = 5
    """How many top log-probs to keep per generated token (parity checks)."""
    vocab_top_k: int = 32
    """Full-vocabulary drift: top-k token log-probs (and the rest's mass) stored per position."""
    vocab_positions: int = 4
    """Full-vocabulary drift: the answer position and this many generated positions in all."""


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
    """What a backend returns for one request: the answer with its timings (``Backend.generate``),
    then the scores (``Backend.score``)."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    video_tokens: int
    timings: dict[str, float]
    """processor_s, prefill_s (time to first token), decode_s, generate_s, total_s."""
    candidate_logprobs: dict[str, float] = field(default_factory=dict)
    """log p(first token of candidate) at the answer position, over the full vocabulary."""
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    """Per generated token: the top-k (token id, log-prob) pairs."""
    extra: dict[str, Any] = field(default_factory=dict)
    vocab: dict[str, Any] | None = None
    """Top-k log-probs and the rest's mass of the first positions (``core.metrics.vocab.compact``)."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """Fingerprint of the processor's outputs and its versions (``core.metrics.fingerprint``)."""
    raw: Any = field(default=None, repr=False, compare=False)
    """What ``generate`` keeps for ``score`` (logits, the engine prompt); never recorded."""
    vision: Any = field(default=None, repr=False, compare=False)
    """(embeddings (tokens, dim), tokens per frame group) of the vision tower; compared, never recorded."""

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def scored(self) -> bool:
        return bool(self.candidate_logprobs)

    @property
    def predicted(self) -> str:
        """The candidate with the highest log-prob (ties: the first in task order)."""
        return max(self.candidate_logprobs, key=lambda c: self.candidate_logprobs[c])

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("raw", "vision")}
        d["new_tokens"] = self.new_tokens
        d["predicted"] = self.predicted
        return d


@dataclass(kw_only=True)
class LoadInfo:
    """What loading (and quantizing) cost and produced."""

    load_s: float
    quantize_s: float = 0.0
    quantize_cached: bool = False
    weight_bytes: int | None = 0
    """Bytes of the weights, measured as ``weights_source`` says; None when they could not be read
    (``details["weight_bytes_note"]`` says why)."""
    weights_source: str = "device"
    """Where ``weight_bytes`` comes from: ``device`` (parameters and buffers as stored on the device),
    ``checkpoint files`` (the safetensors bytes the engine loaded), ``estimate`` (no weights exist, e.g.
    dummy weights of a shape-only checkpoint: parameters x the format's nominal bytes per weight,
    nothing measured) or ``none`` (nothing known)."""
    details: dict[str, Any] = field(default_factory=dict)
