"""Hugging Face transformers backend: ``AutoModelForImageTextToText`` + ``generate``.

Timing: a logits processor marks the end of prefill (its first call follows the prefill forward);
on a GPU every mark is taken after ``torch.cuda.synchronize``, never from an unsynchronized clock.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from core import capability
from core.backends.base import Backend, Generation, LoadInfo, Request, candidate_token_ids, check_finite
from core.errors import ModelError, MissingDependency
from core.families import family
from core.models import registry


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


class HFBackend(Backend):
    """transformers eager (or static-cache compiled, ``fast``) generation."""

    name = "hf"

    def _sync(self) -> None:
        if self.device.kind == "cuda":
            self.torch.cuda.synchronize(self.device.index)

    def load(self) -> LoadInfo:
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise MissingDependency("torch/transformers", "the hf backend", "pip install 'vqbench[hf]'") from exc
        self.torch = torch
        t0 = time.perf_counter()
        directory = registry.materialize(self.spec)
        self.directory = directory
        self.processor = transformers.AutoProcessor.from_pretrained(
            directory, local_files_only=True, trust_remote_code=self.options.trust_remote_code
        )
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.family = family(self.spec.family)
        dtype = torch.bfloat16
        dev = self.device.torch_device
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "attn_implementation": self.options.attn_implementation,
            "local_files_only": True,
            "trust_remote_code": self.options.trust_remote_code,
            "use_safetensors": not self.options.allow_pickle,
        }
        if self.format.tool == "bitsandbytes" and self.spec.kind != "shape":
            from core.quant import bnb

            kwargs["quantization_config"] = bnb.config(self.format)
        if self.spec.kind == "shape":
            config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
            config._attn_implementation = self.options.attn_implementation
            torch.manual_seed(self.options.seed)
            with torch.device(dev):
                model = transformers.AutoModelForImageTextToText.from_config(config, dtype=dtype)
        else:
            try:
                model = transformers.AutoModelForImageTextToText.from_pretrained(
                    directory, device_map=dev, **kwargs
                )
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot load {directory} with transformers: {exc}") from exc
        model.eval()
        load_s = time.perf_counter() - t0
        details: dict[str, Any] = {"directory": str(directory), "dtype": str(dtype).replace("torch.", ""),
                                   "attn_implementation": self.options.attn_implementation}
        quantize_s, cached = 0.0, False
        if self.format.tool == "modelopt":
            from core.quant import modelopt_q

            model, report = modelopt_q.quantize_model(
                model, self.format, spec=self.spec, directory=directory, processor=self.processor,
                device=self.device, options=self.options,
            )
            quantize_s, cached = report["quantize_s"], report["cached"]
            details["quantization"] = report
        elif self.format.tool == "torchao":
            from core.quant import torchao_q

            t1 = time.perf_counter()
            details["quantization"] = torchao_q.apply(model, self.format)
            quantize_s = time.perf_counter() - t1
        elif self.format.tool == "bitsandbytes":
            from core.quant import bnb

            if self.spec.kind == "shape":  # random weights made on the device: quantize them there
                t1 = time.perf_counter()
                details["quantization"] = bnb.quantize_in_place(model, self.format, dev)
                quantize_s = time.perf_counter() - t1
            else:
                details["quantization"] = bnb.summary(model)
        if self.options.fast:
            self._enable_fast(model)
        self.model = model
        self._sync()
        from core.quant.inspect import weight_bytes

        return LoadInfo(load_s=load_s, quantize_s=quantize_s, quantize_cached=cached,
                        weight_bytes=weight_bytes(model), details=details)

    def _enable_fast(self, model) -> None:
        """Static KV cache + torch.compile of the decode step (transformers' documented fast path)."""
        if self.device.kind != "cuda":
            return
        # With a static cache, generate() compiles the decode step itself (CUDA graphs included) and
        # marks graph steps between calls; wrapping forward by hand breaks that bookkeeping.
        model.generation_config.cache_implementation = "static"

    def generate(self, request: Request) -> Generation:
        torch = self.torch
        t0 = time.perf_counter()
        inputs = self.family.hf_inputs(self.processor, request)
        inputs = inputs.to(self.model.device)
        cand_ids = candidate_token_ids(self.tokenizer, request.candidates)
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
        logits = torch.stack([step[0] for step in out.logits]).float()  # (steps, vocab)
        logprobs = torch.log_softmax(logits, dim=-1)
        first = logprobs[0]
        cand = {c: float(first[i]) for c, i in cand_ids.items()}
        check_finite(list(cand.values()), where=f"{self.spec.name}/{self.format.id} on {request.clip.id}")
        k = min(self.options.top_k, logprobs.shape[-1])
        top_v, top_i = logprobs.topk(k, dim=-1)
        top = [list(zip(ti.tolist(), [round(v, 6) for v in tv.tolist()])) for ti, tv in zip(top_i, top_v)]
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        video_tok = int((inputs["input_ids"] == self.family.video_token_id(self.model)).sum())
        prefill = (mark.t or t2) - t1
        return Generation(
            text=text, token_ids=new_ids, candidate_logprobs=cand, top_logprobs=top,
            prompt_tokens=int(prompt_len), video_tokens=video_tok,
            timings={"processor_s": t1 - t0, "prefill_s": prefill, "decode_s": t2 - (mark.t or t2),
                     "generate_s": t2 - t1, "total_s": t2 - t0},
        )

    def close(self) -> None:
        for attr in ("model", "processor", "tokenizer"):
            if hasattr(self, attr):
                delattr(self, attr)
        gc.collect()
        torch = getattr(self, "torch", None)
        if torch is not None and self.device.kind == "cuda":
            torch.cuda.synchronize(self.device.index)
            torch.cuda.empty_cache()

    def model_config(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def lm_weight_bytes(self) -> float:
        """Exact bytes of the language model's 2-D weights on the device (packed formats as packed)."""
        from core.quant.inspect import _tensor_bytes

        total = 0
        for name, p in self.model.named_parameters():
            if "language_model" in name and p.dim() == 2 and "embed" not in name:
                total += _tensor_bytes(p)
        return float(total)

    def versions(self) -> dict[str, str]:
        pk = ["torch", "transformers"] + {"modelopt": ["modelopt"], "bitsandbytes": ["bitsandbytes"],
                                          "torchao": ["torchao"]}.get(self.format.tool, [])
        return {p: capability.version(p) or "?" for p in pk}
