"""Hugging Face transformers backend: ``AutoModelForImageTextToText`` + ``generate``.

Timing: a logits processor marks the end of prefill (its first call follows the prefill forward);
on a GPU every mark is taken after ``torch.cuda.synchronize``, never from an unsynchronized clock.
``generate`` asks for the step logits as a bare ``generate`` loop scoring answers would; ``score``
reads the candidates' and top-k log-probs from them without running the model again.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from core.backends.base import Backend, candidate_token_ids, check_finite
from core.base import timeline
from core.base.errors import MissingDependency, ModelError
from core.base.safety import use_safetensors
from core.inputs.requests import Generation, LoadInfo, Request
from core.models import registry
from core.models.families import family
from core.models.shape import ModelShape
from core.quant import quantizer
from core.quant.base import QuantContext


class _PrefillMark:
    """A LogitsProcessor that records when the first logits (end of prefill) arrive."""

    def __init__(self, sync) -> None:
        self.sync = sync
        self.t: float | None = None

    def __call__(self, input_ids, scores):
        if self.t is None:
            self.sync()
            self.t = time.perf_counter()
        return scores


def _as_loaded(model, spec):
    """What a pre-quantized checkpoint became in transformers: its own quantization_config, no
    quantizer run; the proof is the linear layers' classes and dtypes."""
    from core.quant.base import Applied
    from core.quant.inspect import linear_dtypes

    return Applied(model=model, report={"prequantized": spec.prequantized.to_dict(),
                                        "linear_modules": linear_dtypes(model)})


class HFBackend(Backend):
    """transformers eager (or static-cache compiled, ``fast``) generation."""

    name = "hf"

    def _sync(self) -> None:
        if self.device.kind == "cuda":
            self.torch.cuda.synchronize(self.device.index)

    def imports(self) -> None:
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise MissingDependency("torch/transformers", "the hf backend", "pip install 'vqbench[hf]'") from exc
        self.torch = torch
        super().imports()

    def load(self) -> LoadInfo:
        if not hasattr(self, "torch"):
            self.imports()
        import torch
        import transformers

        t0 = time.perf_counter()
        directory, export = self._checkpoint()
        self.directory = directory
        with timeline.phase("weights load"):
            model = self._load_model(transformers, torch, directory)
        if self.spec.is_prequantized:
            applied = _as_loaded(model, self.spec)  # quantized elsewhere: never quantized again
        else:
            applied = quantizer(self.format.tool).apply(
                model, self.format, QuantContext(spec=self.spec, directory=directory, processor=self.processor,
                                                 device=self.device, options=self.options))
        model = applied.model
        quantize_s = applied.quantize_s + export.get("quantize_s", 0.0)
        load_s = time.perf_counter() - t0 - quantize_s
        if self.options.fast and self.device.kind == "cuda":
            # A static cache makes generate() compile the decode step itself (CUDA graphs included)
            # and mark graph steps between calls; wrapping forward by hand breaks that bookkeeping.
            model.generation_config.cache_implementation = "static"
        self.model = model
        self._sync()
        from core.quant.inspect import weight_size

        size = weight_size(model)
        details: dict[str, Any] = {"directory": str(directory), "dtype": self.device.dtype,
                                   **_cpu_facts(self.device, torch),
                                   "attn_implementation": self.options.attn_implementation}
        if size.note:
            details["weight_bytes_note"] = size.note
        details["kernels"] = _observe_kernels(model)
        if applied.report or export:
            details["quantization"] = {**applied.report, **({"export": export} if export else {})}
        return LoadInfo(load_s=load_s, quantize_s=quantize_s,
                        quantize_cached=applied.cached or bool(export.get("cached")),
                        weight_bytes=size.bytes, details=details)

    def _checkpoint(self) -> tuple[Any, dict[str, Any]]:
        """The directory to load and, for formats HF loads as a checkpoint their tool writes
        (compressed-tensors), the export's report."""
        route = self.format.backends.get("hf")
        if not self.spec.is_prequantized and route is not None and route.how == "checkpoint":
            from core.backends.exports import checkpoint_for

            return checkpoint_for(self.spec, self.format, options=self.options, device=self.device)
        with timeline.phase("model build"):
            return registry.materialize(self.spec), {}

    def _load_model(self, transformers, torch, directory):
        self.processor = transformers.AutoProcessor.from_pretrained(
            directory, local_files_only=True, trust_remote_code=self.options.trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.family = family(self.spec.family)
        # bf16 everywhere, except a CPU told to compute in float32 (--cpu-dtype; auto where bf16 is emulated)
        dtype, dev = getattr(torch, self.device.dtype), self.device.torch_device
        if self.spec.kind == "shape":  # random weights, made straight on the device
            config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
            config._attn_implementation = self.options.attn_implementation
            torch.manual_seed(self.options.seed)
            with torch.device(dev):
                model = transformers.AutoModelForImageTextToText.from_config(config, dtype=dtype)
        else:
            kwargs: dict[str, Any] = {
                "dtype": dtype, "attn_implementation": self.options.attn_implementation, "local_files_only": True,
                "trust_remote_code": self.options.trust_remote_code,
                "use_safetensors": use_safetensors(self.options.allow_pickle),
            }
            if not self.spec.is_prequantized:
                # A pre-quantized checkpoint loads with its own quantization_config (from config.json).
                kwargs.update(quantizer(self.format.tool).load_kwargs(self.format, self.spec, dtype=self.device.dtype))
            try:
                model = transformers.AutoModelForImageTextToText.from_pretrained(directory, device_map=dev, **kwargs)
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot load {directory} with transformers: {exc}") from exc
            if self.spec.is_prequantized and dtype != torch.bfloat16:
                _unify_float_dtype(model, dtype, torch)
        return model.eval()

    def generate(self, request: Request) -> Generation:
        torch = self.torch
        t0 = time.perf_counter()
        inputs = self.family.hf_inputs(self.processor, request)
        inputs = inputs.to(self.model.device)
        self._sync()
        t1 = time.perf_counter()
        mark = _PrefillMark(self._sync)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_new_tokens, "do_sample": False, "num_beams": 1,
            "output_logits": True, "return_dict_in_generate": True, "logits_processor": [mark],
        }
        if self.options.ignore_eos:
            gen_kwargs["min_new_tokens"] = request.max_new_tokens
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen_kwargs)
        self._sync()
        t2 = time.perf_counter()
        prompt_len = inputs["input_ids"].shape[1]
        new_ids = out.sequences[0, prompt_len:].tolist()
        video_tok = int((inputs["input_ids"] == self.family.video_token_id(self.model)).sum())
        prefill = (mark.t or t2) - t1
        return Generation(
            text=self.tokenizer.decode(new_ids, skip_special_tokens=True), token_ids=new_ids,
            prompt_tokens=int(prompt_len), video_tokens=video_tok,
            timings={"processor_s": t1 - t0, "prefill_s": prefill, "decode_s": t2 - (mark.t or t2),
                     "generate_s": t2 - t1, "total_s": t2 - t0},
            raw=(out.logits, inputs),
        )

    def score(self, request: Request, generation: Generation) -> Generation:
        """Candidates' and top-k log-probs from the step logits; the first positions' full-vocabulary
        distributions (top-k + rest), the processor outputs' fingerprint and the vision tower's
        embeddings (run again here, untimed) for drift."""
        raw, generation.raw = generation.raw, None
        if raw is None:
            raise ValueError("HFBackend.score needs the Generation its generate() returned")
        logits_steps, inputs = raw
        logits = self.torch.stack([step[0] for step in logits_steps]).float()  # (steps, vocab)
        logprobs = self.torch.log_softmax(logits, dim=-1)
        first = logprobs[0]
        cand_ids = candidate_token_ids(self.tokenizer, request.candidates)
        generation.candidate_logprobs = {c: float(first[i]) for c, i in cand_ids.items()}
        check_finite(list(generation.candidate_logprobs.values()),
                     where=f"{self.spec.name}/{self.format.id} on {request.clip.id}")
        k = min(self.options.top_k, logprobs.shape[-1])
        top_v, top_i = logprobs.topk(k, dim=-1)
        generation.top_logprobs = [list(zip(ti.tolist(), [round(v, 6) for v in tv.tolist()]))
                                   for ti, tv in zip(top_i, top_v)]
        from core.metrics import fingerprint
        from core.metrics.vocab import compact

        generation.vocab = compact(logprobs[: self.options.vocab_positions], k=self.options.vocab_top_k)
        generation.inputs = {"processor_sha256": fingerprint.processor_sha256(inputs),
                             "processor": fingerprint.processor_versions(self.processor)}
        try:
            with self.torch.inference_mode():
                emb, groups = self.family.vision_embeddings(self.model, inputs)
            generation.vision = (emb.float().cpu(), groups)
        except Exception as exc:  # noqa: BLE001 - a drift aid, never a cell failure
            generation.extra["vision_error"] = f"{type(exc).__name__}: {exc}"
        return generation

    def close(self) -> None:
        for attr in ("model", "processor", "tokenizer"):
            if hasattr(self, attr):
                delattr(self, attr)
        gc.collect()
        torch = getattr(self, "torch", None)
        if torch is not None and self.device.kind == "cuda":
            torch.cuda.synchronize(self.device.index)
            torch.cuda.empty_cache()

    def model_shape(self) -> ModelShape:
        return ModelShape.from_config(self.model.config.to_dict())

    def lm_weight_bytes(self) -> float:
        """Exact bytes of the language model's 2-D weights on the device (packed formats as packed);
        PackedSizeUnknown when a packed size cannot be read (the roofline records that as its error)."""
        from core.quant.inspect import tensor_bytes

        return float(sum(tensor_bytes(p) for name, p in self.model.named_parameters()
                         if "language_model" in name and p.dim() == 2 and "embed" not in name))


def _observe_kernels(model) -> dict[str, Any]:
    """What holds the language model's linear weights, as loaded (``core.plan.kernels.observe_hf``: module
    class and weight dtype or tensor subclass, e.g. ``Linear8bitLt/int8``); never fails the load."""
    from core.plan import kernels

    try:
        return kernels.observe_hf(model)
    except Exception as exc:  # noqa: BLE001 - an aid to the record, not part of the model
        return {"source": "none", "note": f"observing the model's linear layers failed: {type(exc).__name__}: {exc}"}


def _cpu_facts(device, torch) -> dict[str, Any]:
    """On a CPU: what torch itself reports (its dispatch ISA, oneDNN's bf16 support) beside what the suite
    read from /proc/cpuinfo, so a record shows the kernels the cell really ran on."""
    if device.kind != "cpu":
        return {}
    facts: dict[str, Any] = {"cpu": device.cpu_record()}
    try:
        facts["cpu"]["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        facts["cpu"]["onednn_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError) as exc:  # older torch: say so rather than guess
        facts["cpu"]["torch_cpu_capability"] = f"unknown ({exc})"
    return facts


def _unify_float_dtype(model, dtype, torch) -> None:
    """A checkpoint quantized elsewhere, loaded to compute in float32 (a CPU without bf16 arithmetic):
    transformers 5.23 keeps the modules its quantizer skips (vision tower, lm_head of a bitsandbytes
    checkpoint) in the checkpoint's bf16 whatever ``dtype`` says, and the mixed model fails ('self and
    mat2 must have the same dtype'). Plain floating parameters and buffers follow ``dtype``; the
    quantizer's own tensors (Int8Params, packed weights: subclasses or integer dtypes) stay as loaded."""
    for module in model.modules():
        for _, p in list(module.named_parameters(recurse=False)):
            if type(p) is torch.nn.Parameter and p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)
        for name, b in list(module.named_buffers(recurse=False)):
            if type(b) is torch.Tensor and b.is_floating_point() and b.dtype != dtype:
                module._buffers[name] = b.to(dtype)

