"""Quantized checkpoints on disk for engines that load them (vLLM, TensorRT-LLM).

``checkpoint_for`` returns the checkpoint a format's route loads, from the exporter the format's
tool declares (``core.plan.catalog.QUANTIZERS``): llm-compressor's runs in its own environment
(``core.quant.llmcompressor_q``), ModelOpt's loads the model through the HF backend
(``core.backends.modelopt_export``). Exporters are named as targets, not imported, so the HF
backend can load checkpoints without this module depending on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.base.errors import ArtifactError


def checkpoint_for(spec, fmt, *, options, device) -> tuple[Path, dict[str, Any]]:
    """The quantized checkpoint directory of ``spec`` in ``fmt`` and a report (quantize_s, cached),
    from the exporter its tool declares (``QuantizerInfo.exporter``)."""
    from core.plan.catalog import quantizer_info, resolve

    if spec.is_prequantized:
        raise ArtifactError(f"{spec.name} is already quantized ({spec.detected_format}): it is loaded as it is, "
                            "never exported again")

    exporter = quantizer_info(fmt.tool).exporter
    if not exporter:
        raise ArtifactError(f"{fmt.id} is made by {fmt.tool}, which writes no checkpoint for other engines")
    return resolve(exporter)(spec, fmt, options=options, device=device)
