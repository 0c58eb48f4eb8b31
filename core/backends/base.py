"""The backend interface: load a (model, format) once, then answer requests about clips.

A backend knows nothing about pytest; the suite knows nothing about a backend's internals.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from typing import ClassVar

from core.base.errors import ConfigError, NumericsError
from core.inputs.requests import EngineOptions, Generation, LoadInfo, Request
from core.models.registry import ModelSpec
from core.models.shape import ModelShape
from core.plan.device import DeviceInfo
from core.plan.formats import QuantFormat


class Backend(ABC):
    """Load once, answer many requests, close cleanly (device and host memory back to baseline).

    The contract every backend keeps, so that a latency means the same thing on every engine:

    * ``generate`` is what a timed round measures. It returns the answer's tokens and its timing
      split, with every clock read after the device finished (``torch.cuda.synchronize`` on a GPU,
      or the engine's own timestamps): ``processor_s`` (inputs from frames and prompt),
      ``prefill_s`` (time to first token), ``decode_s`` (first to last token), ``generate_s``
      (prefill + decode, host clock) and ``total_s`` (processor + generate). It does what a bare
      engine loop with the same settings does, nothing more: work only the suite needs (scoring
      candidates) belongs in ``score``.
    * ``score`` fills the candidates' log-probs at the answer position and the top-k log-probs of
      each generated token. It is never timed; a backend may reuse what ``generate`` computed.
    * ``before_round`` runs before every timed round, outside the clock: a backend with caches that
      would let a repeated request skip work (vLLM's prefix and multimodal caches) resets them, so
      each round costs what a first-seen video costs.
    * ``pids`` names every process that holds the engine's memory (this one, plus any engine
      processes), so memory is measured over all of them.
    """

    name: ClassVar[str]

    def __init__(self, spec: ModelSpec, fmt: QuantFormat, device: DeviceInfo, options: EngineOptions) -> None:
        self.spec = spec
        self.format = fmt
        self.device = device
        self.options = options
        self.load_info: LoadInfo | None = None

    def imports(self) -> None:
        """Import the engine's and the format's quantizer's libraries, before any model exists: the
        engine's memory baseline then holds the libraries (its figures hold only the engine), and no
        import-time capture of the call stack can keep a model alive. Subclasses call ``super()``."""
        from core.quant import quantizer

        quantizer(self.spec.tool_for(self.format)).imports()  # none for a checkpoint quantized elsewhere

    @abstractmethod
    def load(self) -> LoadInfo:
        """Load (and quantize) the model; called once per engine."""

    @abstractmethod
    def generate(self, request: Request) -> Generation:
        """Greedy-decode an answer: tokens and timings (what a timed round measures)."""

    def generate_many(self, requests: list[Request]) -> list[Generation]:
        """Greedy-decode several answers; an engine that batches (vLLM) has them all in flight at once and
        overrides this. Default: one after another."""
        return [self.generate(r) for r in requests]

    def score(self, request: Request, generation: Generation) -> Generation:
        """Fill ``candidate_logprobs`` and ``top_logprobs`` of ``generation`` (untimed)."""
        return generation

    def answer(self, request: Request) -> Generation:
        """``generate`` then ``score``: a scored answer, untimed (for parity checks and tools)."""
        return self.score(request, self.generate(request))

    def before_round(self) -> None:
        """Reset anything that would make a repeated request cheaper than a first one (untimed)."""
        return None  # nothing to reset by default

    def pids(self) -> list[int]:
        """Every process holding this engine's memory (default: this process)."""
        return [os.getpid()]

    def close(self) -> None:
        """Free the model and its device memory."""
        return None  # nothing held by default

    def versions(self) -> dict[str, str]:
        """Versions of the packages this backend and the format's quantizer run on."""
        from core.plan.capability import version
        from core.plan.catalog import backend_info, quantizer_info

        tool = quantizer_info(self.spec.tool_for(self.format))
        names = list(backend_info(self.name).versioned) + list(tool.versioned)
        return {p: version(p) or "?" for p in dict.fromkeys(names)}

    def model_shape(self) -> ModelShape:
        """The model's dimensions (roofline and memory estimates read them), from its config.json."""
        from core.models import registry

        return ModelShape.from_dir(registry.materialize(self.spec))

    def lm_weight_bytes(self) -> float:
        """Bytes of language-model linear weights read per decode step, as this backend stores them.

        The default derives it from the config and the format's storage width; backends that hold
        the model in this process measure it exactly.
        """
        return self.model_shape().lm_params * self.format.stored_bytes_per_weight(self.name)

    def __enter__(self) -> Backend:
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

