"""The quantizer interface: what the HF backend asks a quantization tool, in the order it asks.

1. ``load_kwargs``: extra ``from_pretrained`` arguments (tools that quantize while loading, such as
   bitsandbytes' ``quantization_config``);
2. ``apply``: quantize the loaded model in place, or restore it from the artifact cache, and return
   the proof that it took effect (which layers changed, bytes before and after).

Tools that write checkpoints for other engines name their exporter in ``QuantizerInfo.exporter``
(ModelOpt's ``export_hf_checkpoint``, llm-compressor's compressed-tensors checkpoints); a format
whose HF route loads such a checkpoint gets ``apply`` called on the loaded checkpoint, to report it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class QuantContext:
    """What a quantizer may need besides the model: where it came from and how to calibrate."""

    spec: Any
    """The ``ModelSpec`` being quantized."""
    directory: Path
    processor: Any
    device: Any
    """The ``DeviceInfo`` the model lives on."""
    options: Any
    """The ``EngineOptions`` (calibration set and size, artifact cache)."""


@dataclass(kw_only=True)
class Applied:
    """The result of ``Quantizer.apply``."""

    model: Any
    report: dict[str, Any]
    quantize_s: float = 0.0
    cached: bool = False


class Quantizer:
    """A quantization tool as the HF backend sees it. Subclasses override what they need."""

    name: ClassVar[str] = "none"

    def imports(self) -> None:
        """Import the tool's libraries. Called before any model exists (``Backend.imports``): a
        library that keeps a traceback of its import (ModelOpt keeps one for its optional plugins)
        then holds no frame that references a model."""

    def load_kwargs(self, fmt, spec, *, dtype: str = "bfloat16") -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments for ``fmt`` ({} when the tool quantizes after loading);
        ``dtype``: what the model computes in (float32 on a CPU without bf16 arithmetic)."""
        return {}

    def apply(self, model, fmt, ctx: QuantContext) -> Applied:
        """Quantize ``model`` (already loaded) in place; return it with the proof."""
        return Applied(model=model, report={})


class NoQuantizer(Quantizer):
    """bf16: nothing to do."""
