"""Quantized checkpoints on disk for engines that load them (vLLM, TensorRT-LLM).

``modelopt_export`` loads the model with transformers, calibrates and quantizes it with ModelOpt,
and writes ``export_hf_checkpoint``'s output plus the tokenizer/processor into the artifact cache
(keyed like every artifact: weights, format, calibration set, tool versions). The second call
returns the cached directory without re-calibrating.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from core import atomic
from core.errors import ArtifactError


def modelopt_export(spec, fmt, *, options, device) -> tuple[Path, dict[str, Any]]:
    """The exported checkpoint directory for ``spec`` in ``fmt`` and a report (quantize_s, cached)."""
    if fmt.tool != "modelopt":
        raise ArtifactError(f"{fmt.id} is not made by ModelOpt; nothing to export")
    from core.models import registry
    from core.quant import artifacts, calibration

    directory = registry.materialize(spec)
    calib = calibration.make(options.calibration, options.calib_size)
    key = artifacts.key(spec=spec, directory=directory, fmt=fmt, calib=calib, kind="hf-export",
                        device_class=device.gpu_class)
    final = artifacts.entry_dir(key)
    t0 = time.perf_counter()
    report: dict[str, Any] = {}

    def build(tmp: Path) -> dict[str, Any]:
        from core.backends.base import EngineOptions
        from core.backends.hf import HFBackend

        # The HF backend loads the bf16 model and fake-quantizes it (calibration included); the
        # export then packs the real low-precision weights.
        opts = EngineOptions(**{**options.__dict__, "artifact_cache": False})
        hf = HFBackend(spec, fmt, device, opts)
        info = hf.load()
        try:
            from core.quant import modelopt_q

            exported = modelopt_q.export(hf.model, tmp, processor=hf.processor)
        except Exception as exc:
            raise ArtifactError(f"export_hf_checkpoint failed for {spec.name} {fmt.id}: {exc}") from exc
        finally:
            hf.close()
            gc.collect()
        q = info.details.get("quantization", {})
        report.update(exported=exported, quantizers=q.get("enabled_quantizers"))
        return {"format": fmt.id, "model": spec.name, "kind": "hf-export", "key": key,
                "quant_algo": exported.get("quant_algo"), "files": artifacts._file_digests(tmp)}

    path, built = atomic.build_directory(final, build, validate=lambda d, r: artifacts.verify(d))
    record = atomic.read_marker(path) or {}
    return path, {"export_dir": str(path), "cached": not built, "quantize_s": time.perf_counter() - t0,
                  "quant_algo": record.get("quant_algo"), "artifact_key": key, **report}
