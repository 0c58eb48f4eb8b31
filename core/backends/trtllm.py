"""TensorRT-LLM backend: the PyTorch-workflow ``tensorrt_llm.LLM`` on a "TRT-LLM view" of the model.

TensorRT-LLM pins transformers 4.x (``transformers==4.57.1`` in its requirements.txt) and torch 2.9,
so it runs in its own environment (``tox -e trtllm``). Models here are written by transformers 5.x,
whose files 4.x-based TRT-LLM misreads; the *view* is a cache directory whose JSON files are rewritten
the way TRT-LLM expects and whose weights are symlinks to the original. ModelOpt exports are made in
the main environment (ModelOpt 0.47 list-form configs) by ``export_for_trtllm`` and picked up here.

What a timed round measures. ``generate`` sends a plain greedy request (no generation logits, no
log-probs; only ``return_perf_metrics`` for the engine's own TTFT split), as a bare ``LLM.generate``
loop would, so its latency compares with vLLM's timed request. ``score`` sends the same prompt again,
untimed, with ``return_generation_logits=True`` and ``logprobs=top_k``, and takes the candidates'
log-probs and the per-step top-k from that answer (``extra['candidate_scoring']`` says so).

Sources read for each API detail are named where the detail is used ("TRT-LLM <path>"); none of
this has run against a real TensorRT-LLM install yet (see the GPU test in bench/test_trtllm_gpu.py).
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import os
import struct
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from core.backends.base import Backend, candidate_token_ids, check_finite
from core.base import atomic, paths
from core.base.errors import (
    ArtifactError,
    ConfigError,
    MissingDependency,
    ModelError,
    Unsupported,
)
from core.inputs.requests import EngineOptions, Generation, LoadInfo, Request
from core.inputs.video import Frames
from core.models import registry
from core.models.families import family
from core.plan import capability
from core.plan.device import DeviceInfo
from core.plan.formats import QuantFormat

VIEW_SCHEMA = "1"  # bump when the view's rewrites change, so views rebuild
EXPORT_SCHEMA = "1"
# Files the view writes itself; everything else in the model directory is symlinked.
_REWRITTEN = ("config.json", "tokenizer_config.json", "processor_config.json")


# --- the config a TRT-LLM view carries ------------------------------------------------------------

def trtllm_config(hf_config: dict[str, Any], *, vision_token_id: int | None = None) -> dict[str, Any]:
    """A Qwen2.5-VL ``config.json`` as 4.x-based TRT-LLM reads it (input never mutated; idempotent).

    TRT-LLM reads ``rope_scaling["type"]`` (QwenAttention, modeling_qwen.py) and ``type or rope_type``
    (RopeParams.from_config, attention_backend/interface.py); v1.1's ``from_string`` knows "mrope" but
    not "default" (seed 000). transformers 5.x writes only ``rope_parameters``, so this adds
    ``rope_scaling = {"type": "mrope", "rope_type": "default", "mrope_section": ...}`` plus ``rope_theta``
    and ``torch_dtype`` at the top level and in ``text_config``, and lifts the text keys to the top level
    as the hub's flat Qwen2.5-VL configs have them. ``rope_type`` stays "default" because transformers'
    own rotary init has no "mrope" entry. ``vision_token_id`` (read by Qwen2VLInputProcessorBase.
    _postprocess, modeling_qwen2vl.py) is added when missing: the ``<|vision_pad|>`` id if given, else
    the image token id (a no-op in that mask).
    """
    cfg = copy.deepcopy(hf_config)
    text_config = cfg.get("text_config")
    text = text_config if isinstance(text_config, dict) else {}
    rope = (text.get("rope_parameters") or cfg.get("rope_parameters") or text.get("rope_scaling")
            or cfg.get("rope_scaling") or {})
    kind = rope.get("rope_type", rope.get("type"))
    if kind not in (None, "default", "mrope"):
        raise ConfigError(f"rope type '{kind}' (scaled RoPE) has no TensorRT-LLM Qwen2.5-VL mapping here; "
                          "only unscaled M-RoPE is supported")
    section = rope.get("mrope_section")
    if not section:
        raise ConfigError("Qwen2.5-VL config has no mrope_section (in rope_parameters or rope_scaling); "
                          "TensorRT-LLM needs it for M-RoPE")
    hidden = text.get("hidden_size", cfg.get("hidden_size"))
    heads = text.get("num_attention_heads", cfg.get("num_attention_heads"))
    if hidden and heads and sum(section) * 2 != hidden // heads:
        raise ConfigError(f"mrope_section {section} sums to {sum(section)}, not head_dim/2 = {hidden // heads // 2}")
    theta = float(rope.get("rope_theta", text.get("rope_theta", cfg.get("rope_theta", 1_000_000.0))))
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or text.get("dtype") or "bfloat16"
    scaling = {"type": "mrope", "rope_type": "default", "mrope_section": [int(s) for s in section]}
    for target in (cfg, text) if text else (cfg,):
        target.update(rope_scaling=copy.deepcopy(scaling), rope_theta=theta, torch_dtype=dtype)
    for key, value in text.items():
        if key != "model_type":
            cfg.setdefault(key, copy.deepcopy(value))
    cfg.setdefault("vision_token_id", vision_token_id if vision_token_id is not None else cfg.get("image_token_id"))
    return cfg


def trtllm_tokenizer_config(tok_config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5.x may write ``extra_special_tokens`` as a list; 4.x calls ``.keys()`` on it
    ("'list' object has no attribute 'keys'"), so the list moves to ``additional_special_tokens``."""
    cfg = copy.deepcopy(tok_config)
    extra = cfg.get("extra_special_tokens")
    if isinstance(extra, list):
        merged = list(cfg.get("additional_special_tokens") or [])
        cfg["additional_special_tokens"] = merged + [t for t in extra if t not in merged]
        del cfg["extra_special_tokens"]
    return cfg


def trtllm_processor_files(processor_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Split a 5.x ``processor_config.json`` (sub-processors nested) into the files 4.x reads:
    ``preprocessor_config.json`` (image) and ``video_preprocessor_config.json``."""
    cfg = copy.deepcopy(processor_config)
    files: dict[str, dict[str, Any]] = {}
    cls = cfg.get("processor_class")
    for key, name in (("image_processor", "preprocessor_config.json"),
                      ("video_processor", "video_preprocessor_config.json")):
        sub = cfg.pop(key, None)
        if isinstance(sub, dict):
            files[name] = {**sub, **({"processor_class": cls} if cls else {})}
    cfg.pop("tokenizer", None)
    files["processor_config.json"] = cfg
    return files


def weights_layout(directory: Path) -> str:
    """'legacy' (``model.layers.*``/``visual.*``, the hub layout), 'transformers5'
    (``model.language_model.*``) or 'unknown', from the safetensors headers only."""
    keys: list[str] = []
    for f in sorted(Path(directory).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            keys += [k for k in json.loads(fh.read(n)) if k != "__metadata__"]
    if any(k.startswith("model.language_model.") for k in keys):
        return "transformers5"
    return "legacy" if any(k.startswith(("model.layers.", "visual.")) for k in keys) else "unknown"


def _vision_pad_id(directory: Path) -> int | None:
    try:
        added = json.loads((directory / "tokenizer.json").read_text()).get("added_tokens", [])
    except (OSError, ValueError):
        return None
    return next((t["id"] for t in added if t.get("content") == "<|vision_pad|>"), None)


def trtllm_view(source: Path) -> tuple[Path, dict[str, Any]]:
    """The TRT-LLM view of ``source`` in ``cache_dir()/trtllm-views`` (built once, atomically):
    rewritten JSON files, every other file a symlink. Returns (directory, record)."""
    source = Path(source).resolve()
    if not (source / "config.json").is_file():
        raise ModelError(f"{source} has no config.json; is it a Hugging Face model directory?")
    h = hashlib.sha256(f"{VIEW_SCHEMA}|{source}".encode())
    for name in _REWRITTEN:
        if (source / name).is_file():
            h.update(name.encode() + (source / name).read_bytes())
    final = paths.cache_dir() / "trtllm-views" / f"{source.name}-{h.hexdigest()[:12]}"

    def build(tmp: Path) -> dict[str, Any]:
        written = {"config.json": trtllm_config(json.loads((source / "config.json").read_text()),
                                                vision_token_id=_vision_pad_id(source))}
        if (source / "tokenizer_config.json").is_file():
            written["tokenizer_config.json"] = trtllm_tokenizer_config(
                json.loads((source / "tokenizer_config.json").read_text()))
        if (source / "processor_config.json").is_file():
            split = trtllm_processor_files(json.loads((source / "processor_config.json").read_text()))
            written.update({k: v for k, v in split.items() if k == "processor_config.json"
                            or not (source / k).exists()})
        for name, content in written.items():
            (tmp / name).write_text(json.dumps(content, indent=2, sort_keys=True))
        linked = []
        for item in sorted(source.iterdir()):
            if item.name.startswith(".") or item.name in written:
                continue
            os.symlink(item.resolve(), tmp / item.name)
            linked.append(item.name)
        return {"source": str(source), "written": sorted(written), "linked": linked,
                "weights_layout": weights_layout(source), "schema": VIEW_SCHEMA}

    directory, _ = atomic.build_directory(final, build, validate=lambda d, r: r.get("source") == str(source))
    return directory, atomic.read_marker(directory) or {}


# --- ModelOpt exports (made in the main environment) ----------------------------------------------

def expected_quant_algo(fmt: QuantFormat) -> str | None:
    """The ``quant_algo`` TRT-LLM should find in hf_quant_config.json for ``fmt`` (None for bf16)."""
    route = fmt.backends.get("trtllm")
    return route.quantization if route is not None and route.how == "checkpoint" else None


def check_export(directory: Path, fmt: QuantFormat) -> dict[str, Any]:
    """The ``quantization`` block of ``directory``'s hf_quant_config.json, checked against ``fmt``
    (TRT-LLM reads quant_algo, kv_cache_quant_algo, group_size, exclude_modules from it:
    ModelConfig.from_pretrained, _torch/model_config.py)."""
    file = Path(directory) / "hf_quant_config.json"
    try:
        quant = json.loads(file.read_text())["quantization"]
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{file}: no readable ModelOpt quantization block ({exc})") from None
    want, kv = expected_quant_algo(fmt), "FP8" if fmt.kv_cache == "fp8" else None
    if quant.get("quant_algo") != want or (quant.get("kv_cache_quant_algo") or None) != kv:
        raise ArtifactError(f"{file} holds quant_algo={quant.get('quant_algo')}, kv_cache_quant_algo="
                            f"{quant.get('kv_cache_quant_algo')}; format {fmt.id} needs {want}, {kv}")
    return quant


def export_dir(spec, fmt: QuantFormat, options: EngineOptions) -> Path:
    """Where ``export_for_trtllm`` puts (and this backend looks for) the export of (spec, fmt).

    The key leaves package versions out on purpose: the export is made in one environment and read
    in another (TRT-LLM's), and both must compute the same path."""
    from core.quant import artifacts, calibration

    ident = artifacts.model_identity(spec, registry.materialize(spec), seed=options.seed)
    calib = calibration.make(options.calibration, options.calib_size).describe()
    payload = json.dumps({"model": ident, "format": fmt.id, "calibration": calib, "schema": EXPORT_SCHEMA},
                         sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return paths.cache_dir() / "trtllm-exports" / f"{spec.name}-{fmt.id}-{digest}"


def export_for_trtllm(spec, fmt: QuantFormat, options: EngineOptions, device: DeviceInfo) -> Path:
    """Quantize ``spec`` with ModelOpt (through the HF backend's path) and write a real quantized HF
    checkpoint for TRT-LLM; cached. Run in the main environment:
    ``python -m core.backends.trtllm export --model tiny --format fp8``."""
    from core.backends.hf import HFBackend
    from core.quant import modelopt_q

    if expected_quant_algo(fmt) is None or fmt.tool != "modelopt":
        raise ConfigError(f"format {fmt.id} is not a ModelOpt export for TensorRT-LLM")
    if spec.kind == "shape":
        raise Unsupported(f"{spec.name} is shape-only (random weights, no checkpoint): nothing to export")

    def build(tmp: Path) -> dict[str, Any]:
        hf = HFBackend(spec, fmt, device, options)
        try:
            hf.load()
            report = modelopt_q.export(hf.model, tmp, processor=hf.processor)
        finally:
            hf.close()
        check_export(tmp, fmt)
        return {"model": spec.name, "format": fmt.id, "quant_algo": report["quant_algo"],
                "safetensors_bytes": report["safetensors_bytes"], "versions": hf.versions()}

    directory, _ = atomic.build_directory(export_dir(spec, fmt, options), build,
                                          validate=lambda d, r: bool(check_export(d, fmt)))
    return directory


# --- requests in, results out ---------------------------------------------------------------------

def build_inputs(prompt: str, frames: Frames, *, video_data_cls=None) -> dict[str, Any]:
    """A TRT-LLM ``TextPrompt`` (inputs/data.py): the prompt, the video as a list of CHW float32
    frames in [0, 1], and processor kwargs.

    Float in [0, 1] matters: for tensor frames the Qwen2-VL input processor calls the HF processor
    with ``do_rescale=False`` (modeling_qwen2vl.py ``_preprocess``), as its own loader yields
    ``ToTensor()`` frames (inputs/utils.py ``load_video``); uint8 tensors would reach the model
    unscaled. Newer TRT-LLM wraps each video in ``VideoData(frames, metadata)`` (inputs/
    multimodal_data.py) and reads ``.frames``; pass that class as ``video_data_cls`` there. Frames are
    already sampled and sized on the 28-px grid, so the processor neither samples nor resizes; ``fps``
    is the sampled rate, from which the processor derives M-RoPE's seconds per temporal patch.
    """
    import torch

    array = frames.array
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8 (T, H, W, 3), got {array.dtype} {tuple(array.shape)}")
    chw = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float().div_(255.0)
    video = list(chw.unbind(0))
    if video_data_cls is not None:
        video = video_data_cls(frames=video, metadata=frames.metadata())
    return {
        "prompt": prompt,
        "multi_modal_data": {"video": [video]},
        "mm_processor_kwargs": {"do_sample_frames": False, "do_resize": False, "fps": float(frames.sampled_fps)},
    }


def _seconds(value: Any) -> float | None:
    if isinstance(value, timedelta) or hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value) if isinstance(value, (int, float)) else None


def _metric_timings(perf) -> tuple[float | None, float | None]:
    """(time to first token, decode time) from ``CompletionOutput.request_perf_metrics.timing_metrics``
    (arrival/first_token/last_token times; tests/unittest/llmapi/test_llm.py test_llm_perf_metrics)."""
    timing = getattr(perf, "timing_metrics", None)
    arrival, first, last = (_seconds(getattr(timing, k, None))
                            for k in ("arrival_time", "first_token_time", "last_token_time"))
    if arrival is None or first is None or last is None or not arrival < first <= last:
        return None, None
    return first - arrival, last - first


def _logits_rows(logits: Any, steps: int) -> np.ndarray:
    if hasattr(logits, "detach"):
        logits = logits.detach().float().cpu().numpy()
    rows = np.asarray(logits, dtype=np.float64)
    rows = rows.reshape(-1, rows.shape[-1])  # (1, T, V) or (T, 1, V) with one beam -> (T, V)
    return rows[:steps] if steps else rows


def _log_softmax(rows: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = rows - rows.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _logprob_map(entry: Any, token_id: int) -> dict[int, float]:
    """One step of ``CompletionOutput.logprobs``: {token_id: Logprob(logprob, rank)} (executor/
    result.py), or a bare float (the sampled token's log-prob) in older flows."""
    if isinstance(entry, dict):
        return {int(k): float(v.logprob if hasattr(v, "logprob") else v) for k, v in entry.items()}
    return {int(token_id): float(entry)}


def parse_answer(output: Any, *, vocab_size: int | None = None, where: str = "trtllm") -> dict[str, Any]:
    """Text, tokens, token counts, engine timings and finish reason from a ``RequestOutput``-like object
    (what the timed request returns: no logits or log-probs are needed).

    Video tokens: TRT-LLM replaces them in ``prompt_token_ids`` by out-of-vocabulary ids
    (``vocab_size + 1``, modeling_qwen2vl.py ``_postprocess``), counted as ids >= ``vocab_size``.
    """
    completions = getattr(output, "outputs", None)
    if not completions:
        raise ModelError(f"{where}: TensorRT-LLM returned no completion")
    out = completions[0]
    prompt_ids = [int(t) for t in (getattr(output, "prompt_token_ids", None) or [])]
    prefill, decode = _metric_timings(getattr(out, "request_perf_metrics", None))
    return {
        "text": getattr(out, "text", "") or "", "token_ids": [int(t) for t in (getattr(out, "token_ids", None) or [])],
        "prompt_tokens": len(prompt_ids),
        "video_tokens": sum(t >= vocab_size for t in prompt_ids) if vocab_size else 0,
        "prefill_s": prefill, "decode_s": decode, "finish_reason": getattr(out, "finish_reason", None),
    }


def parse_output(output: Any, candidate_ids: dict[str, int], top_k: int, *,
                 vocab_size: int | None = None, where: str = "trtllm") -> dict[str, Any]:
    """``parse_answer`` plus candidate log-probs and per-step top-k (what the scoring request returns).

    Candidate log-probs are the log-softmax of the first step's full-vocab ``generation_logits``
    (as the HF backend does). Without generation logits they come from the first step's returned
    top-k ``logprobs``, and a candidate outside that top-k is an error, not a guess.
    """
    answer = parse_answer(output, vocab_size=vocab_size, where=where)
    out = output.outputs[0]
    token_ids = answer["token_ids"]
    logits = getattr(out, "generation_logits", None)
    if logits is not None:
        lp = _log_softmax(_logits_rows(logits, len(token_ids)))
        bad = [c for c, i in candidate_ids.items() if not 0 <= i < lp.shape[-1]]
        if bad:
            raise ConfigError(f"{where}: candidates {bad} have ids outside the logits' vocabulary ({lp.shape[-1]})")
        cand = {c: float(lp[0, i]) for c, i in candidate_ids.items()}
        k = min(top_k, lp.shape[-1])
        idx = np.argsort(np.nan_to_num(-lp, nan=np.inf), axis=-1, kind="stable")[:, :k]  # NaN last
        top = [[(int(i), round(float(row[i]), 6)) for i in ids] for row, ids in zip(lp, idx)]
        greedy = [int(np.nanargmax(r)) if not np.isnan(r).all() else -1 for r in lp]
        source, consistent = "generation_logits", greedy[: len(token_ids)] == token_ids[: len(lp)]
    else:
        steps = [_logprob_map(e, t) for e, t in zip(getattr(out, "logprobs", None) or [], token_ids)]
        if not steps:
            raise Unsupported(f"{where}: the output has neither generation_logits nor logprobs; candidate "
                              "scoring needs SamplingParams(return_generation_logits=True) or logprobs=k")
        missing = [c for c, i in candidate_ids.items() if i not in steps[0]]
        if missing:
            raise Unsupported(f"{where}: no generation logits, and candidates {missing} are not among the "
                              f"{len(steps[0])} log-probs returned for the first step")
        cand = {c: steps[0][i] for c, i in candidate_ids.items()}
        top = [sorted(((t, round(v, 6)) for t, v in s.items()), key=lambda p: -p[1])[:top_k] for s in steps]
        source, consistent = "logprobs", None
    check_finite(list(cand.values()), where=where)
    return {**answer, "candidate_logprobs": cand, "top_logprobs": top,
            "logprob_source": source, "greedy_consistent": consistent}


# --- the backend ----------------------------------------------------------------------------------

def _import_tensorrt_llm():
    try:
        import tensorrt_llm
        from tensorrt_llm.llmapi import (
            KvCacheConfig,  # examples/llm-api/quickstart_advanced.py
        )
    except ImportError as exc:
        raise MissingDependency("tensorrt-llm", "the trtllm backend", capability.install_hint("tensorrt_llm")) from exc
    try:
        from tensorrt_llm.inputs import VideoData  # newer: inputs/multimodal_data.py
    except ImportError:
        try:
            from tensorrt_llm.inputs.utils import VideoData
        except ImportError:
            VideoData = None  # older releases take a plain list of frames per video
    return tensorrt_llm, KvCacheConfig, VideoData


class TRTLLMBackend(Backend):
    """TensorRT-LLM's PyTorch workflow (``tensorrt_llm.LLM``), bf16 or ModelOpt-exported checkpoints."""

    name = "trtllm"

    def load(self) -> LoadInfo:
        tllm, kv_cache_config_cls, self._video_data_cls = _import_tensorrt_llm()
        if self.device.kind != "cuda":
            raise Unsupported(f"TensorRT-LLM needs a CUDA GPU; this cell runs on {self.device.describe()}")
        if "trtllm" in self.format.not_supported or "trtllm" not in self.format.backends:
            raise Unsupported(f"trtllm cannot run {self.format.id}: "
                              f"{self.format.not_supported.get('trtllm', 'no TensorRT-LLM path for this format')}")
        t0 = time.perf_counter()
        source, source_info = self._source()
        view, view_info = trtllm_view(source)
        import transformers

        self.processor = transformers.AutoProcessor.from_pretrained(
            view, local_files_only=True, trust_remote_code=self.options.trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.family = family(self.spec.family)
        self.vocab_size = int(json.loads((view / "config.json").read_text())["vocab_size"])
        # Multimodal: no KV block reuse, and a smaller KV share, since the vision encoder's activations
        # live outside the KV pool (examples/llm-api/quickstart_multimodal.py uses 0.6).
        kv_fraction = min(self.options.gpu_memory_utilization, 0.6)
        kwargs: dict[str, Any] = {
            "kv_cache_config": kv_cache_config_cls(enable_block_reuse=False, free_gpu_memory_fraction=kv_fraction),
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "trust_remote_code": self.options.trust_remote_code,
            "attn_backend": "TRTLLM",  # Qwen2VLModelBase asserts it (modeling_qwen2vl.py)
            "max_seq_len": self.options.max_model_len,
            "max_num_tokens": self.options.max_model_len,
            # An engine-level switch (BaseLlmArgs, llmapi/llm_args.py), fixed when the LLM is built: the
            # LLM API wants it on for a request's return_generation_logits to be honoured (TRT-LLM's own
            # test_generate_with_return_logits builds with it whenever it asks for them), so it stays on
            # for the untimed scoring request in score(). It should cost the timed request no time:
            # generation logits are gathered per request, only for one whose SamplingParams sets
            # return_generation_logits, and the timed one does not; it may reserve buffer memory
            # (TRT-LLM's tests cap max_batch_size for that). Not verified on a real install.
            "gather_generation_logits": True,
        }
        if self.spec.kind == "shape":
            kwargs["load_format"] = "dummy"  # random weights: quickstart_advanced.py --load_format
        self.llm = tllm.LLM(model=str(view), backend="pytorch", **kwargs)
        load_s = time.perf_counter() - t0
        details = {"directory": str(source), "view": str(view), "weights_layout": view_info.get("weights_layout"),
                   "video_input": "VideoData" if self._video_data_cls else "list of CHW frames",
                   "llm_args": {k: v for k, v in kwargs.items() if k != "kv_cache_config"},
                   "kv_cache_fraction": kv_fraction, **source_info,
                   # TensorRT-LLM's LLM API names no GEMM kernel or plugin per layer: nothing is observed, so
                   # its "native" stays declared (the support matrix says "unverified")
                   "kernels": {"source": "none", "note": "TensorRT-LLM's LLM API does not report the kernels it "
                                                         "picked; not observed"}}
        # weight_bytes: the checkpoint's safetensors bytes; TRT-LLM does not report device-side bytes, and a
        # shape-only model's dummy weights have no files (nothing known).
        if self.spec.kind == "shape":
            return LoadInfo(load_s=load_s, weight_bytes=0, weights_source="none", details=details)
        weights = sum(f.stat().st_size for f in source.glob("*.safetensors"))
        return LoadInfo(load_s=load_s, weight_bytes=weights, weights_source="checkpoint files", details=details)

    def _source(self) -> tuple[Path, dict[str, Any]]:
        """The HF directory TRT-LLM loads: the model itself (bf16), a pre-quantized checkpoint, or the
        ModelOpt export ``export_for_trtllm`` made."""
        fmt, spec = self.format, self.spec
        base = registry.materialize(spec)
        prequantized = (base / "hf_quant_config.json").is_file()
        if not fmt.quantized:
            if prequantized:
                raise ConfigError(f"{base} is already quantized (hf_quant_config.json): run it with its "
                                  "format, not bf16")
            return base, {"source": "model"}
        if prequantized:
            quant = check_export(base, fmt)
            return base, {"source": "pre-quantized checkpoint", "quant_algo": quant.get("quant_algo")}
        if spec.kind == "shape":
            raise Unsupported(f"{spec.name} is shape-only: TensorRT-LLM {fmt.id} needs a ModelOpt export of real "
                              "weights (use a checkpoint, or the HF backend's fake-quant for shape models)")
        directory = export_dir(spec, fmt, self.options)
        if atomic.read_marker(directory) is None:
            raise ArtifactError(
                f"no ModelOpt {fmt.id} export of {spec.name} at {directory}. TensorRT-LLM's environment cannot "
                f"make it (it pins ModelOpt 0.37 and transformers 4.x); in the main vqbench environment run "
                f"`python -m core.backends.trtllm export --model {spec.name} --format {fmt.id}` with the same "
                f"VQBENCH_CACHE, calibration ({self.options.calibration}) and calib size ({self.options.calib_size})")
        quant = check_export(directory, fmt)
        return directory, {"source": "modelopt export", "quant_algo": quant.get("quant_algo"),
                           "export": atomic.read_marker(directory)}

    def _sampling_params(self, max_new_tokens: int, *, scoring: bool = False):
        """Greedy params. The timed request asks for no logits and no log-probs (a plain request, as
        vLLM's timed one), only the engine's per-request timestamps; the untimed scoring request asks
        for the full-vocabulary generation logits and the top-k log-probs."""
        from tensorrt_llm import SamplingParams  # sampling_params.py

        # top_k/top_p/temperature left unset is greedy (SamplingParams._greedy_decoding).
        if scoring:
            params = SamplingParams(max_tokens=max_new_tokens, ignore_eos=self.options.ignore_eos,
                                    logprobs=self.options.top_k, return_generation_logits=True)
        else:
            params = SamplingParams(max_tokens=max_new_tokens, ignore_eos=self.options.ignore_eos,
                                    return_perf_metrics=True)
        if getattr(params, "_greedy_decoding", True) is not True:
            raise ConfigError("TensorRT-LLM SamplingParams are not greedy; vqbench compares greedy answers")
        return params

    def generate(self, request: Request) -> Generation:
        """The timed request: plain greedy decoding, no logits or log-probs (those come in ``score``)."""
        t0 = time.perf_counter()
        prompt = self.family.prompt(self.processor, request)
        inputs = build_inputs(prompt, request.frames, video_data_cls=self._video_data_cls)
        params = self._sampling_params(request.max_new_tokens)
        t1 = time.perf_counter()
        output = self.llm.generate(inputs, params, use_tqdm=False)  # blocks until done (llmapi/llm.py)
        t2 = time.perf_counter()
        parsed = parse_answer(output, vocab_size=self.vocab_size,
                              where=f"{self.spec.name}/{self.format.id} on {request.clip.id}")
        generate_s = t2 - t1
        if parsed["prefill_s"] is not None and parsed["prefill_s"] <= generate_s:
            prefill, decode, source = parsed["prefill_s"], parsed["decode_s"], "request_perf_metrics"
        else:
            prefill, decode, source = generate_s, 0.0, "host clock (no per-request metrics: no TTFT split)"
        return Generation(
            text=parsed["text"], token_ids=parsed["token_ids"], prompt_tokens=parsed["prompt_tokens"],
            video_tokens=parsed["video_tokens"],
            timings={"processor_s": t1 - t0, "prefill_s": prefill, "decode_s": decode,
                     "generate_s": generate_s, "total_s": t2 - t0},
            extra={"timing_source": source, "finish_reason": parsed["finish_reason"],
                   # TRT-LLM runs the HF processor inside generate(): it is in generate_s, not processor_s.
                   "processor_in_generate": True},
        )

    def score(self, request: Request, generation: Generation) -> Generation:
        """Candidate log-probs and per-step top-k from an untimed scoring request: the same greedy
        prompt again, with generation logits and top-k log-probs (as vLLM's ``score`` does)."""
        where = f"{self.spec.name}/{self.format.id} on {request.clip.id} (scoring)"
        prompt = self.family.prompt(self.processor, request)
        inputs = build_inputs(prompt, request.frames, video_data_cls=self._video_data_cls)
        cand_ids = candidate_token_ids(self.tokenizer, request.candidates)
        output = self.llm.generate(inputs, self._sampling_params(request.max_new_tokens, scoring=True),
                                   use_tqdm=False)
        parsed = parse_output(output, cand_ids, self.options.top_k, vocab_size=self.vocab_size, where=where)
        if parsed["token_ids"] != generation.token_ids:
            generation.extra["scoring_tokens_differ"] = True  # reported: greedy runs should agree
        generation.candidate_logprobs = parsed["candidate_logprobs"]
        generation.top_logprobs = parsed["top_logprobs"]
        generation.extra.update(
            candidate_scoring=f"untimed scoring request ({parsed['logprob_source']})",
            logprob_source=parsed["logprob_source"], greedy_consistent=parsed["greedy_consistent"])
        return generation

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        try:
            if llm is not None:
                llm.shutdown()  # llmapi/llm.py: stops the executor and its workers
        finally:
            for attr in ("llm", "processor", "tokenizer"):
                if hasattr(self, attr):
                    delattr(self, attr)
            gc.collect()
            torch = sys.modules.get("torch")
            # The model lives in TRT-LLM's executor; touch CUDA here only if this process already did.
            if self.device.kind == "cuda" and torch is not None and torch.cuda.is_initialized():
                torch.cuda.synchronize(self.device.index)
                torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    """``python -m core.backends.trtllm export --model M --format F``: make the ModelOpt export."""
    import argparse

    from core.plan import device as devices
    from core.plan.formats import get_format

    parser = argparse.ArgumentParser(prog="python -m core.backends.trtllm")
    parser.add_argument("command", choices=["export"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--format", required=True)
    parser.add_argument("--calibration", default=EngineOptions.calibration)
    parser.add_argument("--calib-size", type=int, default=EngineOptions.calib_size)
    args = parser.parse_args(argv)
    options = EngineOptions(calibration=args.calibration, calib_size=args.calib_size)
    path = export_for_trtllm(registry.resolve(args.model), get_format(args.format), options, devices.primary())
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
