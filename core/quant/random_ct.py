"""A compressed-tensors NVFP4 checkpoint of a shape-only model with finite random weights.

Why: a shape-only model has no weights, and vLLM runs its compressed-tensors formats from a config-only
checkpoint with ``load_format="dummy"``. vLLM's dummy loader (``initialize_dummy_weights`` in
``vllm/model_executor/model_loader/weight_utils.py``, 0.26 and 0.32) fills every floating-point
parameter uniformly in [-1e-3, 1e-3] and leaves integer ones as allocated. For W8A8, FP8 and W4A16 that
is harmless. For NVFP4 it is not: the global scales, which vLLM inverts, come out tiny or negative, the
FP8 group scales near zero, and the packed FP4 bytes uninitialised. The logits are NaN and the engine
never answers (seen on an H200, 2026-12-01). This module writes real weights instead:

- every parameter of the model's own shapes (its ``config.json``, built on the meta device) drawn at
  random: normal with std 0.02 and clipped at 6 std, as a freshly initialised model; norms at 1;
- each layer the recipe quantizes goes through compressed-tensors' own NVFP4 compressor
  (``NVFP4PackedCompressor.compress``), its group scales from ``calculate_qparams`` and its global
  scale from ``generate_gparam``. One weight global scale and one input global scale serve every
  layer, because vLLM keeps one global scale per fused layer (q/k/v, gate/up) and warns when the
  shards differ. The input global scale assumes activations within +-16, which an RMS-normalised
  hidden state of a random model stays in. FP8 group scales saturate rather than overflow.

The weights have no trained meaning: the engine's speed and memory are real, its answers are not.
The record says so (``weights``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

WEIGHT_STD = 0.02
CLIP = 6 * WEIGHT_STD
ACTIVATION_RANGE = 16.0
SHARD_BYTES = 4 << 30
FORMAT = "nvfp4-pack-quantized"


def write(config_dir: Path, out: Path, qcfg: dict[str, Any], *, seed: int = 0,
          device: str | None = None) -> dict[str, Any]:
    """Write the checkpoint of ``config_dir``'s model with quantization config ``qcfg`` into ``out``
    (an existing empty directory): safetensors shards, an index, ``config.json`` with ``qcfg``, and the
    tokenizer and processor files copied over. Returns what was written (layers, bytes, scales)."""
    import torch
    from compressed_tensors.compressors import NVFP4PackedCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam
    from compressed_tensors.utils import match_named_modules
    from safetensors.torch import save_file

    if qcfg.get("format") != FORMAT:
        raise ValueError(f"random weights are written for {FORMAT} only, not {qcfg.get('format')!r}")
    groups = list((qcfg.get("config_groups") or {}).values())
    if len(groups) != 1:
        raise ValueError(f"expected one config group, got {len(groups)}")
    scheme = QuantizationScheme.model_validate(groups[0])
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = _meta_model(config_dir)
    quantized = {name for name, _ in match_named_modules(model, scheme.targets, qcfg.get("ignore") or [])}
    if not quantized:
        raise ValueError(f"the recipe's targets {scheme.targets} match no module of {config_dir}")

    gen = torch.Generator(device=dev).manual_seed(seed)
    bound = torch.tensor(CLIP, dtype=torch.float32, device=dev)
    weight_gs = generate_gparam(-bound, bound).reshape(1)
    act = torch.tensor(ACTIVATION_RANGE, dtype=torch.float32, device=dev)
    input_gs = generate_gparam(-act, act).reshape(1)
    group = scheme.weights.group_size

    shard: dict[str, torch.Tensor] = {}
    shards: list[dict[str, torch.Tensor]] = []
    size = 0
    total = 0

    def put(key: str, t: torch.Tensor) -> None:
        nonlocal size, total, shard
        shard[key] = t.contiguous().cpu()
        size += t.numel() * t.element_size()
        total += t.numel() * t.element_size()
        if size >= SHARD_BYTES:
            shards.append(shard)
            shard, size = {}, 0

    for key, meta in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in quantized and leaf == "weight":
            rows, cols = meta.shape
            if cols % group:
                raise ValueError(f"{key}: {cols} input features are not a multiple of the group size {group}")
            w = _normal(rows, cols, gen=gen, dev=dev)
            grouped = w.float().view(rows, cols // group, group)
            scale, _ = calculate_qparams(grouped.amin(-1), grouped.amax(-1), scheme.weights, global_scale=weight_gs)
            packed = NVFP4PackedCompressor.compress(
                {"weight": w, "weight_scale": scale, "weight_global_scale": weight_gs.clone(),
                 "input_global_scale": input_gs.clone()}, scheme)
            for name, t in packed.items():
                put(f"{module}.{name}", t)
        elif not meta.dtype.is_floating_point:
            put(key, torch.zeros(meta.shape, dtype=meta.dtype))
        elif meta.ndim == 1 and "norm" in key:
            put(key, torch.ones(meta.shape, dtype=torch.bfloat16))
        else:
            put(key, _normal(*meta.shape, gen=gen, dev=dev) if meta.ndim else torch.zeros((), dtype=torch.bfloat16))
    if shard:
        shards.append(shard)

    weight_map: dict[str, str] = {}
    for n, tensors in enumerate(shards, 1):
        fname = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, fname))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    for f in config_dir.iterdir():
        if f.is_file() and f.suffix in (".json", ".jinja", ".txt", ".model") and not f.name.startswith(".") \
                and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy2(f, out / f.name)
    config = json.loads((config_dir / "config.json").read_text())
    config["quantization_config"] = qcfg
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return {"quantized_layers": len(quantized), "tensors": len(weight_map), "bytes": total, "shards": len(shards),
            "weight_global_scale": float(weight_gs), "input_global_scale": float(input_gs), "seed": seed,
            "weights": f"random, normal std {WEIGHT_STD} clipped at +-{CLIP:g}, norms 1; {len(quantized)} layers "
                       "quantized and packed by compressed-tensors' NVFP4 compressor (not a trained model)"}


def _normal(*shape: int, gen, dev):
    import torch

    return (torch.randn(*shape, generator=gen, device=dev, dtype=torch.float32) * WEIGHT_STD).clamp_(-CLIP, CLIP) \
        .to(torch.bfloat16)


def _meta_model(config_dir: Path):
    """The model of ``config_dir`` on the meta device (shapes and names, no memory)."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(config_dir)
    with torch.device("meta"):
        return transformers.AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
