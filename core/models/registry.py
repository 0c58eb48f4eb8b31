"""Resolve a model name or a local path to a ModelSpec, and materialize it as an HF directory.

Names: ``tiny`` (the embedded tiny Qwen2.5-VL, random weights from a seed), shape-only specs of
real models (``qwen2.5-vl-3b``, ``qwen2.5-vl-7b``, ``cosmos-reason1-7b``), or a path to a local
model directory (a user checkpoint). Built models live in the cache and are never committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.base import atomic, paths
from core.base.errors import ModelError, VqbenchError, unknown_name

RECIPE_VERSION = "1"  # bump when a builder's output changes, so caches rebuild


@dataclass(frozen=True)
class ModelSpec:
    """A model the suite can load: embedded (built here), shape-only, or a user checkpoint."""

    name: str
    kind: Literal["embedded", "shape", "checkpoint", "unknown"]
    """'embedded' (built here), 'shape' (real dimensions, random weights), 'checkpoint' (a user's
    directory), or 'unknown' (a name that did not resolve; ``description`` says why)."""
    family: str
    """'qwen2_5_vl' or 'internvl'."""
    description: str
    approx_params_b: float = 0.0
    path: Path | None = None
    builder: Callable[[Path], dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    source_version: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    """What the build reads besides code (e.g. committed weights), so the cache rebuilds on change."""
    prequantized: Any = None
    """For a checkpoint already quantized elsewhere: what its files say (``core.models.prequantized.Detected``);
    None for plain checkpoints and built models. Such a model runs only in that format, never quantized again."""

    @property
    def is_prequantized(self) -> bool:
        """Quantized elsewhere: it runs only in its detected format and no quantizer ever runs on it."""
        return self.prequantized is not None

    def tool_for(self, fmt) -> str:
        """Which quantization tool runs when this model is loaded in ``fmt`` (a ``QuantFormat``): the
        format's own, or none for a checkpoint quantized elsewhere (``prequantized``). The one place
        this is decided: capability, goldens, backends' imports and recorded versions all ask here."""
        return "prequantized" if self.is_prequantized else fmt.tool

    @property
    def detected_format(self) -> str | None:
        """The format id a pre-quantized checkpoint was detected as (None for plain models)."""
        return self.prequantized.format if self.prequantized is not None else None

    @property
    def random_weights(self) -> bool:
        """Random weights (shape-only specs, the untrained tiny models): their labels are near-ties, so
        their answers exercise every code path but mean nothing (no accuracy, no drift verdict)."""
        return self.kind == "shape" or self.name in RANDOM_EMBEDDED

    @property
    def needs_gpu(self) -> bool:
        """Shape-only specs are instantiated with random weights straight on a GPU."""
        return self.kind == "shape"

    def weight_gib_bf16(self) -> float:
        return self.approx_params_b * 2


RANDOM_EMBEDDED = {"tiny", "tiny-internvl"}


def _qwen_tiny(d: Path) -> dict[str, Any]:
    from core.models import qwen_vl

    return qwen_vl.build_tiny(d)


def _trained(d: Path) -> dict[str, Any]:
    """Copy the committed reference model (trained by ``python -m core.tools.train``) into the cache."""
    import shutil

    from core.models.qwen_vl import weights_digest

    src = paths.FIXTURES_DIR / "models" / "tiny-trained"
    if not (src / "model.safetensors").is_file():
        raise ModelError(f"{src} has no model.safetensors: train it with `python -m core.tools.train`")
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, d / f.name)
    record = json.loads((src / "training.json").read_text()) if (src / "training.json").is_file() else {}
    digest = weights_digest(d)
    if record.get("weights_sha256") and record["weights_sha256"] != digest:
        raise ModelError(f"{src}/model.safetensors does not match training.json's hash: the file is damaged")
    return {**record, "weights_sha256": digest}


def _trained_version() -> str:
    f = paths.FIXTURES_DIR / "models" / "tiny-trained" / "training.json"
    return hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f.is_file() else "missing"


def _qwen_shape(name: str) -> Callable[[Path], dict[str, Any]]:
    def build(d: Path) -> dict[str, Any]:
        from core.models import qwen_vl

        return qwen_vl.build_shape(d, name)

    return build


def _internvl_tiny(d: Path) -> dict[str, Any]:
    from core.models import internvl

    return internvl.build_tiny_internvl(d)


def _internvl_shape(name: str) -> Callable[[Path], dict[str, Any]]:
    def build(d: Path) -> dict[str, Any]:
        from core.models import internvl

        return internvl.build_shape_internvl(d, name)

    return build


_BUILTIN: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("tiny", "embedded", "qwen2_5_vl",
                  "architecture-true tiny Qwen2.5-VL, random weights from seed 0 (built offline)",
                  approx_params_b=0.004, builder=_qwen_tiny),
        ModelSpec("tiny-trained", "embedded", "qwen2_5_vl",
                  "the tiny Qwen2.5-VL trained on the synthetic traffic task (the reference model that sees)",
                  approx_params_b=0.0024, builder=_trained, source_version=_trained_version),
        ModelSpec("qwen2.5-vl-3b", "shape", "qwen2_5_vl",
                  "Qwen2.5-VL-3B-Instruct dimensions, random weights on the GPU",
                  approx_params_b=3.75, builder=_qwen_shape("qwen2.5-vl-3b")),
        ModelSpec("qwen2.5-vl-7b", "shape", "qwen2_5_vl",
                  "Qwen2.5-VL-7B-Instruct dimensions, random weights on the GPU",
                  approx_params_b=8.3, builder=_qwen_shape("qwen2.5-vl-7b")),
        ModelSpec("cosmos-reason1-7b", "shape", "qwen2_5_vl",
                  "Cosmos-Reason1-7B dimensions (Qwen2.5-VL-7B fine-tune), random weights on the GPU",
                  approx_params_b=8.3, builder=_qwen_shape("cosmos-reason1-7b")),
        ModelSpec("tiny-internvl", "embedded", "internvl",
                  "architecture-true tiny InternVL3.5 (InternViT + Qwen3), random weights from seed 0",
                  approx_params_b=0.002, builder=_internvl_tiny),
        ModelSpec("internvl3.5-4b", "shape", "internvl",
                  "InternVL3.5-4B dimensions (InternViT-300M + Qwen3-4B), random weights on the GPU",
                  approx_params_b=4.73, builder=_internvl_shape("internvl3.5-4b")),
    ]
}


def register(spec: ModelSpec) -> None:
    """Add a model recipe (used by other model families and by teams' own plugins)."""
    _BUILTIN[spec.name] = spec


FAMILIES = {"qwen2_5_vl": "qwen2_5_vl", "qwen2_vl": "qwen2_5_vl", "internvl": "internvl"}
_CONVERT_HINTS = {
    "internvl_chat": "this is InternVL's original remote-code format (InternVLChatModel); use the HF-format "
                     "checkpoint (e.g. OpenGVLab/InternVL3_5-4B-HF) or convert it with transformers' "
                     "convert_internvl_weights_to_hf.py",
}


def resolve(name_or_path: str, *, allow_pickle: bool = False) -> ModelSpec:
    """A ModelSpec for a built-in name or a local model directory (validated, never downloaded);
    ``allow_pickle`` accepts a checkpoint whose weights are pickle files (``--allow-pickle``)."""
    if name_or_path in _BUILTIN:
        return _BUILTIN[name_or_path]
    p = Path(name_or_path).expanduser()
    looks_like_path = "/" in name_or_path or name_or_path.startswith(".") or p.exists()
    if not looks_like_path:
        raise unknown_name("model", name_or_path, _BUILTIN)
    return checkpoint_spec(p, allow_pickle=allow_pickle)


def resolve_or_unknown(name_or_path: str, *, allow_pickle: bool = False) -> ModelSpec:
    """``resolve``, or an 'unknown' spec whose description is the reason (the matrix skips its cells
    with it instead of stopping the whole session)."""
    try:
        return resolve(name_or_path, allow_pickle=allow_pickle)
    except VqbenchError as exc:
        return ModelSpec(name_or_path, "unknown", "", str(exc))


def checkpoint_spec(path: Path, *, allow_pickle: bool = False) -> ModelSpec:
    """Validate a user checkpoint directory: config.json, a known family, safetensors weights."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise ModelError(f"model directory {path} does not exist (no hub downloads: give a local path)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelError(f"{path} has no config.json; is it a Hugging Face model directory?")
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise ModelError(f"{cfg_file} is not valid JSON: {exc}") from None
    model_type = cfg.get("model_type", "")
    if model_type not in FAMILIES:
        hint = _CONVERT_HINTS.get(model_type, "")
        raise ModelError(f"{path}: model_type '{model_type}' is not supported "
                         f"(supported: {', '.join(sorted(FAMILIES))}){'; ' + hint if hint else ''}")
    weights = list(path.glob("*.safetensors"))
    pickles = list(path.glob("*.bin")) + list(path.glob("*.pt")) + list(path.glob("*.pth"))
    if not weights:
        if pickles and not allow_pickle:
            raise ModelError(
                f"{path} has only pickle weights ({pickles[0].name}); pickle can run arbitrary code, so "
                "vqbench loads safetensors only. Convert the checkpoint, or pass --allow-pickle if you "
                "trust it."
            )
        if not pickles:
            raise ModelError(f"{path} has config.json but no weights (*.safetensors)")
    size = sum(f.stat().st_size for f in weights + pickles)
    from core.models.prequantized import detect

    detected = detect(path, cfg)
    params = _param_count(path, weights) if detected is not None else None
    what = f", pre-quantized: {detected.format} ({detected.source})" if detected else ""
    return ModelSpec(name=path.name, kind="checkpoint", family=FAMILIES[model_type],
                     description=f"user checkpoint at {path}{what}",
                     approx_params_b=params / 1e9 if params else size / 2e9, path=path, prequantized=detected)


def _param_count(path: Path, weights: list[Path]) -> float | None:
    """Parameters of a quantized checkpoint, from its config (its file size counts packed weights and
    scales, not parameters); None when the config's shape cannot be read."""
    try:
        from core.models.shape import ModelShape

        shape = ModelShape.from_dir(path)
        return float(shape.lm_params + shape.vision_params + 2 * shape.lm_head_params)  # embeddings ~ lm_head
    except Exception:  # noqa: BLE001 - a size estimate only
        return None


def _cache_key(spec: ModelSpec) -> str:
    salt = spec.source_version() if spec.source_version else ""
    h = hashlib.sha256(f"{spec.name}:{RECIPE_VERSION}:{salt}".encode()).hexdigest()[:10]
    return f"{spec.name}-{h}"


def materialize(spec: ModelSpec) -> Path:
    """The model's HF directory: the user's path, or the cached build (built now if missing)."""
    if spec.kind == "checkpoint":
        assert spec.path is not None
        return spec.path
    if spec.builder is None:
        raise ModelError(f"model '{spec.name}' has no builder")
    final = paths.cache_dir() / "models" / _cache_key(spec)

    def valid(d: Path, record: dict) -> bool:
        return (d / "config.json").is_file() and (spec.kind != "embedded" or any(d.glob("*.safetensors")))

    directory, _built = atomic.build_directory(final, spec.builder, validate=valid)
    return directory


def build_record(directory: Path) -> dict[str, Any]:
    """What the builder recorded (seed, weight hash ...), or {} for user checkpoints."""
    return atomic.read_marker(directory) or {}
