"""The quantized-artifact cache: calibrate once, reuse on every later run.

An entry's key hashes the model's weights, the format, the calibration set and the tool versions,
so any change re-quantizes. Entries are written to a temporary directory and renamed into place;
each records its files' sizes and hashes, and an entry that fails that check (a crash mid-write,
a corrupted disk) is removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from core.base import atomic, paths
from core.plan import capability

MAX_CACHED_BYTES = 4 * 2**30  # fake-quant entries hold full weights: cache only small models


def _file_fingerprint(f: Path) -> str:
    """Size plus hashes of the first and last MiB: cheap even for multi-GB safetensors."""
    h = hashlib.sha256(str(f.stat().st_size).encode())
    with open(f, "rb") as fh:
        h.update(fh.read(2**20))
        if f.stat().st_size > 2**21:
            fh.seek(-(2**20), 2)
            h.update(fh.read())
    return h.hexdigest()


def model_identity(spec, directory: Path, *, seed: int = 0) -> str:
    """What identifies the weights: the build hash, a shape name and seed, or a checkpoint fingerprint."""
    if spec.kind == "shape":
        return f"shape:{spec.name}:seed{seed}"
    record = atomic.read_marker(Path(directory)) or {}
    if record.get("weights_sha256"):
        return f"{spec.name}:{record['weights_sha256']}"
    parts = [f"{f.name}:{_file_fingerprint(f)}" for f in sorted(Path(directory).glob("*.safetensors"))]
    parts.append(hashlib.sha256((Path(directory) / "config.json").read_bytes()).hexdigest())
    return "checkpoint:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def key(*, spec, directory: Path, fmt, calib, kind: str, device_class: str,
        versions: dict[str, str | None] | None = None, recipe: Any = None) -> str:
    """The cache key of one artifact. ``calib`` None: a data-free recipe. ``versions``: the tool's
    versions when it runs elsewhere (default: this environment's ModelOpt, torch, transformers);
    ``recipe``: the tool's recipe as data, when the format name alone does not pin it."""
    payload = {
        "model": model_identity(spec, directory),
        "format": fmt.id,
        "calibration": calib.describe() if calib is not None else None,
        "kind": kind,
        "device_class": device_class,
        "versions": versions if versions is not None else {p: capability.version(p)
                                                           for p in ("modelopt", "torch", "transformers")},
        "schema": 1,
    }
    if recipe is not None:
        payload["recipe"] = recipe
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def entry_dir(k: str) -> Path:
    return paths.cache_dir() / "artifacts" / k


def _file_digests(d: Path) -> dict[str, dict[str, Any]]:
    return {f.name: {"size": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
            for f in sorted(d.iterdir()) if f.is_file() and f.name != atomic.COMPLETE_MARKER}


def verify(d: Path) -> bool:
    """True when every file the entry recorded is present with its recorded size and hash."""
    record = atomic.read_marker(d)
    if not record or "files" not in record:
        return False
    try:
        return _file_digests(d) == record["files"]
    except OSError:
        return False


def lookup(k: str) -> Path | None:
    """The entry for ``k`` if present and intact; a damaged entry is removed."""
    d = entry_dir(k)
    if not d.exists():
        return None
    if verify(d):
        return d
    discard(k, reason="failed verification")
    return None


def discard(k: str, *, reason: str) -> None:
    """Remove a bad entry (it will be rebuilt)."""
    import warnings

    warnings.warn(f"vqbench: artifact {k} discarded ({reason}); it will be rebuilt", stacklevel=2)
    shutil.rmtree(entry_dir(k), ignore_errors=True)


def cacheable(model) -> bool:
    from core.quant.inspect import weight_bytes

    size = weight_bytes(model)
    return size is not None and size <= MAX_CACHED_BYTES


def store_modelopt(model, k: str, *, record: dict[str, Any]) -> Path:
    """Save ModelOpt's state (quantizer layout) and the model's tensors (scales, smoothed weights)."""
    import modelopt.torch.opt as mto
    import torch
    from safetensors.torch import save_file

    def build(tmp: Path) -> dict[str, Any]:
        torch.save(mto.modelopt_state(model), tmp / "modelopt_state.pt")
        state = {n: t.detach().contiguous().cpu() for n, t in model.state_dict().items()}
        save_file(_untie(state), str(tmp / "weights.safetensors"))
        return {**record, "key": k, "files": _file_digests(tmp)}

    final, _ = atomic.build_directory(entry_dir(k), build, validate=lambda d, r: verify(d))
    return final


def restore_modelopt(model, entry: Path):
    """Re-insert the quantizers into a freshly loaded model and load the calibrated tensors."""
    import modelopt.torch.opt as mto
    import torch
    from safetensors.torch import load_file

    # weights_only: the digests verify() checks live in the same directory, so they prove the entry is
    # whole, not who wrote it; a cache directory others can write to (a shared VQBENCH_CACHE) must not
    # be able to run code here. ModelOpt's state needs no pickle: for ModelOpt 0.47 every preset
    # (fp8, nvfp4, int8_sq, int4_awq, w4a8_awq, with +vit and +kv_fp8) stores only dicts, lists,
    # tuples, strings, numbers and tensors (torch.serialization.get_unsafe_globals_in_checkpoint finds
    # no other global), so no class is allowlisted. A state that needs one fails to load here; the
    # quantizer then discards the entry and calibrates again (modelopt_q.apply), never unpickles it.
    state = torch.load(entry / "modelopt_state.pt", weights_only=True, map_location="cpu")
    mto.restore_from_modelopt_state(model, state)
    tensors = load_file(str(entry / "weights.safetensors"), device=str(next(model.parameters()).device))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    real_missing = [m for m in missing if not m.endswith("lm_head.weight")]
    if real_missing or unexpected:
        raise RuntimeError(f"cached state does not fit the model: missing {real_missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return model


def _untie(state: dict) -> dict:
    """safetensors refuses shared storage (tied embeddings): copy duplicates."""
    seen: dict[int, str] = {}
    out = {}
    for n, t in state.items():
        ptr = t.data_ptr() if t.numel() else id(t)
        out[n] = t.clone() if ptr in seen else t
        seen.setdefault(ptr, n)
    return out
