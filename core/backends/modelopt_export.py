"""ModelOpt's exporter: load the model with the HF backend, calibrate and quantize it, and write
``export_hf_checkpoint``'s output plus the tokenizer/processor into the artifact cache (keyed like
every artifact: weights, format, calibration set, tool versions). The second call returns the cached
directory without re-calibrating. The exporting model is closed and dropped before this returns:
nothing of it stays in memory while the engine that loads the export runs.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from core.base import atomic, timeline
from core.base.errors import ArtifactError


def export(spec, fmt, *, options, device) -> tuple[Path, dict[str, Any]]:
    """The ModelOpt export of ``spec`` in ``fmt`` (cached) and a report."""
    if fmt.tool != "modelopt":
        raise ArtifactError(f"{fmt.id} is not made by ModelOpt; nothing to export")
    from core.models import registry
    from core.quant import artifacts, calibration

    with timeline.phase("model build"):
        directory = registry.materialize(spec)
    calib = calibration.make(options.calibration, options.calib_size)
    key = artifacts.key(spec=spec, directory=directory, fmt=fmt, calib=calib, kind="hf-export",
                        device_class=device.gpu_class)
    final = artifacts.entry_dir(key)
    t0 = time.perf_counter()
    report: dict[str, Any] = {}

    def build(tmp: Path) -> dict[str, Any]:
        from dataclasses import replace

        from core.backends.hf import HFBackend
        from core.quant import modelopt_q

        # The HF backend loads the bf16 model and fake-quantizes it (calibration included); the
        # export then packs the real low-precision weights.
        hf = HFBackend(spec, fmt, device, replace(options, artifact_cache=False))
        try:
            hf.imports()
            info = hf.load()
            with timeline.phase("export"):
                exported = modelopt_q.export(hf.model, tmp, processor=hf.processor)
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"export_hf_checkpoint failed for {spec.name} {fmt.id}: {exc}") from exc
        finally:
            hf.close()
            del hf
            gc.collect()
        q = info.details.get("quantization", {})
        report.update(exported=exported, quantizers=q.get("enabled_quantizers"))
        return {"format": fmt.id, "model": spec.name, "kind": "hf-export", "key": key,
                "quant_algo": exported.get("quant_algo"), "files": artifacts._file_digests(tmp)}

    path, built = atomic.build_directory(final, build, validate=lambda d, r: artifacts.verify(d))
    _release_device_memory(device)
    record = atomic.read_marker(path) or {}
    return path, {"export_dir": str(path), "cached": not built, "quantize_s": time.perf_counter() - t0,
                  "quant_algo": record.get("quant_algo"), "artifact_key": key, **report}


def _release_device_memory(device) -> None:
    """Give the exporting model's cached blocks back to the device before another engine starts."""
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and device.kind == "cuda" and torch.cuda.is_initialized():
        torch.cuda.synchronize(device.index)
        torch.cuda.empty_cache()
