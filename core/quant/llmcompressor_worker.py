"""The part of the llm-compressor quantizer that runs inside its own environment:

    python -m core.quant.llmcompressor_worker JOB.json

``core.quant.llmcompressor_q.export`` writes the job (model directory, recipe in llm-compressor's
recipe format, calibration set, output directory) and starts this with the llm-compressor
environment's python. It loads the bf16 model, builds the calibration dataset from the project's
own calibration samples (captions through the chat template, or fixture clips through the family's
HF processor), runs ``oneshot``, saves the compressed checkpoint with the processor, adds the ignore
fix and writes ``vqbench-export.json`` (versions, timings, what was quantized).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def calibration_dataset(job: dict[str, Any], processor):
    """The job's calibration set as a ``datasets.Dataset`` of one sample per row (tensors as lists,
    as llm-compressor's own multimodal examples build theirs)."""
    from datasets import Dataset

    from core.models.families import family
    from core.quant import calibration

    described = job["calibration"]
    calib = calibration.make(described["kind"], described["size"])
    if calib.identity != described["sha256"]:
        raise SystemExit(f"calibration set {described} differs from this checkout's ({calib.describe()})")
    rows = [{k: v.tolist() for k, v in sample.items()}
            for sample in calibration.samples(calib, processor=processor, family=family(job["family"]))]
    return Dataset.from_list(rows)


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """One sample per batch, back to tensors (video samples differ in length and keys)."""
    import torch

    (sample,) = batch
    return {k: torch.tensor(v) for k, v in sample.items()}


def quantized_layers(model) -> dict[str, int]:
    """Modules that carry a quantization scheme, by part: the vision tower must have none."""
    parts: dict[str, int] = {}
    for name, module in model.named_modules():
        if getattr(module, "quantization_scheme", None) is not None:
            part = "vision" if "visual" in name else "lm_head" if "lm_head" in name else "language_model"
            parts[part] = parts.get(part, 0) + 1
    return parts


def load(job: dict[str, Any], *, torch, auto_model, auto_processor):
    """The model (in the job's dtype: bf16, or float32 for a CPU without bf16 arithmetic) and its
    processor from the job's local directory, as the rest of the suite
    loads them: never from the hub (``local_files_only``) and safetensors first (pickle weights only
    when the job says ``--allow-pickle`` and there are no safetensors)."""
    from core.base.safety import use_safetensors

    directory = job["model"]
    model = auto_model.from_pretrained(directory, dtype=getattr(torch, job.get("dtype", "bfloat16")),
                                       local_files_only=True,
                                       use_safetensors=use_safetensors(bool(job.get("allow_pickle"))))
    processor = auto_processor.from_pretrained(directory, local_files_only=True)
    return model, processor


def run(job: dict[str, Any]) -> dict[str, Any]:
    from core.quant.llmcompressor_q import with_ignore_fix

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    import importlib.metadata as md

    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForImageTextToText, AutoProcessor

    times = {"import_s": time.perf_counter() - t0}
    t = time.perf_counter()
    model, processor = load(job, torch=torch, auto_model=AutoModelForImageTextToText, auto_processor=AutoProcessor)
    times["load_s"] = time.perf_counter() - t
    kwargs: dict[str, Any] = {}
    if job["calibration"]:
        t = time.perf_counter()
        dataset = calibration_dataset(job, processor)
        times["data_s"] = time.perf_counter() - t
        kwargs = {"dataset": dataset, "data_collator": collate, "num_calibration_samples": len(dataset),
                  "max_seq_length": job["max_seq_length"]}
        if job.get("sequential_targets"):
            kwargs["sequential_targets"] = job["sequential_targets"]
    t = time.perf_counter()
    # llm-compressor draws its calibration order from torch's global generator (a RandomSampler with
    # no generator of its own when shuffle_calibration_samples is on, its default); unseeded, two builds of
    # one checkpoint differed in ~0.5% of their int8 weights. Seeded, a rebuild gives the same bytes.
    torch.manual_seed(job["seed"])  # llmcompressor_q.CALIBRATION_SEED, set by job_for
    oneshot(model=model, processor=processor, recipe=json.dumps(job["recipe"]), **kwargs)
    times["oneshot_s"] = time.perf_counter() - t
    layers = quantized_layers(model)
    if not layers.get("language_model") or layers.get("vision"):
        raise SystemExit(f"the recipe quantized {layers}: expected language-model layers only")
    t = time.perf_counter()
    model.save_pretrained(out, save_compressed=True)
    processor.save_pretrained(out)
    cfg_file = out / "config.json"
    cfg_file.write_text(json.dumps(with_ignore_fix(json.loads(cfg_file.read_text())), indent=2, sort_keys=True) + "\n")
    times["save_s"] = time.perf_counter() - t
    versions = {}
    for name in ("llmcompressor", "compressed-tensors", "transformers", "torch"):
        versions[name] = md.version(name)
    return {"format": job["format"], "layers": layers, "samples": kwargs.get("num_calibration_samples", 0),
            "device": "cuda" if torch.cuda.is_available() else "cpu", "versions": versions,
            **{k: round(v, 2) for k, v in times.items()}}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m core.quant.llmcompressor_worker JOB.json")
    job = json.loads(Path(args[0]).read_text())
    report = run(job)
    (Path(job["out"]) / "vqbench-export.json").write_text(json.dumps(report, indent=2) + "\n")
    print("vqbench-export", json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
