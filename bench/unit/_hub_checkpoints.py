"""Checkpoints quantized "elsewhere", made by the tests themselves in the directory layout real hub
checkpoints have: sharded safetensors with ``model.safetensors.index.json``, ``preprocessor_config.json``
and ``video_preprocessor_config.json`` (the hub's split processor files, not this project's
``processor_config.json``), ``chat_template.jinja``, ``generation_config.json`` and the tokenizer files.

* ``modelopt_fp8``: a real ModelOpt FP8 export of a built model (``export_hf_checkpoint`` on CPU);
* ``bitsandbytes``: a model loaded with a ``BitsAndBytesConfig`` and saved by transformers;
* ``config_only``: the built model's bf16 weights under a real-schema ``quantization_config``
  (compressed-tensors as llm-compressor wrote it, AutoAWQ, GPTQ, FP8). Enough for detection,
  verdicts and the matrix; loading one needs real packed weights, which these do not have.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm",
       "modules_to_not_convert": ["visual"]}
"""AutoAWQ's quantization_config (as in Qwen/Qwen2.5-VL-7B-Instruct-AWQ)."""
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True, "damp_percent": 0.01,
        "true_sequential": True, "static_groups": False, "checkpoint_format": "gptq", "lm_head": False}
"""GPTQModel's / AutoGPTQ's quantization_config."""
FP8_BLOCK = {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3", "weight_block_size": [128, 128],
             "modules_to_not_convert": ["visual", "lm_head"]}
"""transformers' FineGrainedFP8Config as saved (the layout of Qwen's own FP8 checkpoints)."""


def ct_config(recipe: str) -> dict[str, Any]:
    """The quantization_config llm-compressor wrote for ``recipe`` (W8A8_SQ_GPTQ, W4A16_GPTQ, FP8_DYNAMIC, NVFP4)."""
    from core.quant.llmcompressor_q import quantization_configs

    return copy.deepcopy(quantization_configs()["configs"][recipe])


def hub_processor_files(src: Path, dest: Path) -> None:
    """Tokenizer, chat template and the hub's split processor files of the model built at ``src``."""
    for name in PROCESSOR_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    proc = json.loads((src / "processor_config.json").read_text())
    cls = proc.get("processor_class")
    (dest / "preprocessor_config.json").write_text(json.dumps({**proc["image_processor"], "processor_class": cls},
                                                              indent=2) + "\n")
    (dest / "video_preprocessor_config.json").write_text(json.dumps({**proc["video_processor"],
                                                                     "processor_class": cls}, indent=2) + "\n")


def reshard(dest: Path, tensors: dict[str, Any], shards: int = 2) -> None:
    """Write ``tensors`` as ``model-0000i-of-0000n.safetensors`` with the index transformers and vLLM read."""
    from safetensors.torch import save_file

    names = sorted(tensors)
    per = -(-len(names) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in part}, str(dest / fname), metadata={"format": "pt"})
        for n in part:
            weight_map[n] = fname
            total += tensors[n].numel() * tensors[n].element_size()
    (dest / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


def _tensors(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def config_only(src: Path, dest: Path, quantization_config: dict[str, Any] | None) -> Path:
    """``src``'s bf16 weights (resharded) under ``quantization_config`` (None: a plain checkpoint).
    Loading it for real needs packed weights of that scheme: these are bf16."""
    dest.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    hub_processor_files(src, dest)
    reshard(dest, _tensors(src))
    return dest


def bitsandbytes(src: Path, dest: Path, fmt_name: str = "bnb_int8") -> Path:
    """The model at ``src`` loaded with the format's ``BitsAndBytesConfig`` and saved by transformers
    (its own sharding and index), plus the hub's processor files."""
    import torch
    import transformers

    from core.plan.formats import get_format
    from core.quant import bnb

    model = transformers.AutoModelForImageTextToText.from_pretrained(
        src, dtype=torch.bfloat16, device_map="cpu", quantization_config=bnb.config(get_format(fmt_name)))
    model.save_pretrained(dest, max_shard_size="2MB")
    del model
    hub_processor_files(src, dest)
    assert (dest / "model.safetensors.index.json").is_file(), sorted(p.name for p in dest.iterdir())
    return dest


def modelopt_fp8(spec_name: str, dest: Path) -> Path:
    """A real ModelOpt FP8 export (``core.backends.modelopt_export``, on CPU) of a built model, copied into
    the hub layout: its config.json and hf_quant_config.json, its weights resharded."""
    from core.backends.exports import checkpoint_for
    from core.inputs.requests import EngineOptions
    from core.models import registry
    from core.plan import device
    from core.plan.formats import get_format

    spec = registry.resolve(spec_name)
    src = registry.materialize(spec)
    export, _ = checkpoint_for(spec, get_format("fp8"), options=EngineOptions(calib_size=2), device=device.CPU)
    dest.mkdir(parents=True)
    for name in ("config.json", "hf_quant_config.json"):
        shutil.copy2(export / name, dest / name)
    hub_processor_files(src, dest)
    reshard(dest, _tensors(export))
    return dest
