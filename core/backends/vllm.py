"""vLLM backend: one ``vllm.LLM`` engine per (model, format), greedy decoding, engine-side timings.

Loading. bf16 checkpoints load as they are; shape-only specs (no weights) load with
``load_format="dummy"`` (random weights) and, when their config is shorter, with
``max_position_embeddings`` stretched to ``max_model_len``; quantized formats load the checkpoint
their tool writes (``core.backends.exports``) with the format's ``quantization=`` argument;
``+kv_fp8`` adds ``kv_cache_dtype="fp8"``. On CPU the engine runs eagerly (compiling takes minutes
on a small machine) with a KV cache sized for the model rather than vLLM's default share of all RAM.
A tiny warm-up request runs at load (``details['warmup_s']``). What the engine resolved and ran is
observed, not assumed (``details['kernels']``, ``core.plan.kernels``): the quantization method of its model
config and the kernel class of every linear layer, from the worker's model and the engine's log.

Processes. The engine core (and on CPU its worker) runs in child processes, so a crash or an
out-of-memory kill there reaches this process as ``VLLMEngineError``, never as a dead pytest.
Children are started with ``spawn`` (``VLLM_WORKER_MULTIPROC_METHOD=spawn``, set here unless the
caller chose otherwise; vLLM's CPU platform forces it anyway): forking a pytest process that already
holds threads, captured file descriptors or a CUDA context is unsafe. A watchdog thread turns an
engine death during a request into an error (vLLM's sync client would wait forever). ``close()``
shuts the engine down and waits for every process it started, so memory really returns; ``pids()``
names them, so memory is measured over all of them.

What a timed round measures. vLLM runs with its own defaults (prefix caching and the multimodal
processor cache on), and ``before_round`` resets the prefix cache, the multimodal processor cache
and the encoder cache before every round, so each round costs what a first-seen video costs. The
timed request is a plain ``LLM.generate`` without log-probs, as a bare loop would send it;
``score`` asks for the top-k log-probs afterwards, untimed (and, when a candidate's first token is
not among them, scores the candidates with ``logprob_token_ids``). ``logprobs_mode="raw_logprobs"``
makes them full-vocabulary log-softmax values of the raw logits, as the HF backend reports.

Timings come from the engine's own clocks in ``RequestOutput.metrics`` (``disable_log_stats=False``):
``processor_s`` from the call to the request's first scheduling (chat template, HF processor, hand-off
and queue), ``prefill_s`` to the first token (vision encoder included), ``decode_s`` first to last
token; ``generate_s`` and ``total_s`` are host wall clock. The engine core stamps with the monotonic
clock, converted to wall time with this process's offset (one host, one CLOCK_MONOTONIC).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core.backends.base import Backend, candidate_token_ids, check_finite
from core.base import procs, timeline
from core.base.errors import MissingDependency, Unsupported, VqbenchError
from core.inputs.requests import Generation, LoadInfo, Request
from core.models import registry
from core.models.families import family
from core.models.shape import ModelShape
from core.plan import capability, kernels

ARCHITECTURES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    # The HF-format InternVL (model_type "internvl", transformers' InternVLConfig: what core.models.internvl
    # writes). vLLM's registry serves this name with its interns1 model; its other InternVL class,
    # InternVLChatModel, is for the original remote-code format (model_type "internvl_chat"), which
    # this config is not.
    "internvl": "InternVLForConditionalGeneration",
}
"""vLLM model class per family (``ModelSpec.family``), for configs that do not name one (shape-only specs)."""
CPU_KV_CACHE_MIN_BYTES = 256 * 2**20
# CPU: vLLM's compile mode (dynamo + inductor) would compile for minutes on a small CI machine.
CPU_ENFORCE_EAGER = True


class VLLMEngineError(VqbenchError):
    """The vLLM engine failed to start, died, or rejected a request; the message says which and why."""


class VLLMBackend(Backend):
    """vLLM offline ``LLM`` engine: bf16, quantized checkpoints, optional FP8 KV cache."""

    name = "vllm"
    llm: Any = None
    _death: str = ""
    _engine_procs: list = []

    def imports(self) -> None:
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        try:
            import transformers  # noqa: F401
            import vllm
        except ImportError as exc:
            raise MissingDependency("vllm", "the vllm backend", capability.install_hint("vllm")) from exc
        self.vllm = vllm
        super().imports()

    def load(self) -> LoadInfo:
        t0 = time.perf_counter()
        directory, quant_arg, report = self._open()
        vllm = self.vllm
        quantize_s = report.get("quantize_s", 0.0)
        kwargs = self.engine_kwargs(directory, quant_arg, dummy=bool(report.get("dummy_weights")))
        before = procs.children()
        t1 = time.perf_counter()
        engine_log = kernels.EngineLog()
        try:
            with timeline.phase("engine start"), engine_log:
                self.llm = vllm.LLM(**kwargs)
            engine_s = time.perf_counter() - t1
        except Exception as exc:
            self._engine_procs = procs.started_since(before)
            self.close()
            raise VLLMEngineError(
                f"vLLM could not start {self.spec.name} {self.format.id} on {self.device.describe()}: "
                f"{type(exc).__name__}: {exc}. The engine process's log above has the root cause"
                f"{_memory_hint(exc)}.") from exc
        self._engine_procs = procs.started_since(before)
        self._watchdog: _Watchdog | None = _Watchdog(
            self._engine_procs, getattr(self.llm.llm_engine.engine_core, "outputs_queue", None))
        self.video_token_id = self.family.prompt_video_token_id(self.tokenizer)
        self._scores: dict[tuple, dict[str, float]] = {}
        t2 = time.perf_counter()
        try:
            with timeline.phase("warm-up"):
                self._warm_up()
        except BaseException:
            self.close()
            raise
        cache = getattr(self.llm.llm_engine.vllm_config, "cache_config", None)
        blocks, block_size = getattr(cache, "num_gpu_blocks", None), getattr(cache, "block_size", None)
        kv_bytes = (int(blocks * block_size * self.model_shape().kv_bytes_per_token(1 if self.format.kv_cache else 2))
                    if blocks and block_size else None)
        details: dict[str, Any] = {
            "directory": str(directory), "dtype": kwargs["dtype"], "vllm_quantization": quant_arg,
            "kv_cache_dtype": kwargs.get("kv_cache_dtype", "auto"), "load_format": kwargs["load_format"],
            "max_model_len": kwargs["max_model_len"], "enforce_eager": kwargs["enforce_eager"],
            "engine_s": engine_s, "warmup_s": time.perf_counter() - t2,
            "prefix_caching": getattr(cache, "enable_prefix_caching", None),
            "kv_cache_blocks": blocks, "kv_cache_bytes": kv_bytes,
            "gpu_memory_utilization": kwargs.get("gpu_memory_utilization"),
            "multiproc_method": os.environ.get("VLLM_WORKER_MULTIPROC_METHOD"),
            "engine_pids": [p.pid for p in self._engine_procs],
        }
        if self.device.kind == "cpu":
            details["cpu"] = _cpu_facts(self.device)
        details["kernels"] = self._observe_kernels(engine_log)
        if report:
            details["quantization"] = report  # the export's report, where the HF backend keeps its own
        if report.get("dummy_weights"):
            details["weights"] = ("dummy quantized weights: a config-only compressed-tensors checkpoint (the "
                                  "recipe's quantization_config) loaded with load_format='dummy'; speed and memory "
                                  "of the format, answers meaningless")
        elif report.get("random_weights"):
            details["weights"] = (f"finite random quantized weights ({report.get('weights')}): speed and memory of "
                                  "the format, answers meaningless")
        weights, source = _weights(directory, self.spec, self.format)
        return LoadInfo(load_s=engine_s + (t1 - t0) - quantize_s, quantize_s=quantize_s,
                        quantize_cached=bool(report.get("cached")), weight_bytes=weights, weights_source=source,
                        details=details)

    def server_kwargs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The arguments this engine would be started with, for a ``vllm serve`` process instead of an
        in-process engine (``core.load.server``), and the export's report; loads no engine here."""
        directory, quant_arg, report = self._open()
        return self.engine_kwargs(directory, quant_arg, dummy=bool(report.get("dummy_weights"))), report

    def _open(self) -> tuple[Path, str | None, dict[str, Any]]:
        """The checkpoint (made or found), its processor, tokenizer and family: what an engine, in process or
        behind a server, is started from. Returns the directory, the ``quantization=`` argument, the report."""
        if not hasattr(self, "vllm"):
            self.imports()
        import transformers

        directory, quant_arg, report = self._checkpoint()
        self.directory = directory
        self.processor = transformers.AutoProcessor.from_pretrained(
            directory, local_files_only=True, trust_remote_code=self.options.trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.family = family(self.spec.family)
        return directory, quant_arg, report

    def _observe_kernels(self, engine_log) -> dict[str, Any]:
        """What the engine resolved and ran (``core.plan.kernels``: the quantization method, each linear
        layer's kernel class); an observation that fails says why and never fails the load."""
        try:
            return kernels.observe_vllm(self.llm, engine_log, pids={p.pid for p in self._engine_procs})
        except Exception as exc:  # noqa: BLE001 - an aid to the record, not part of the engine
            return {"source": "none", "note": f"observing the engine's kernels failed: {type(exc).__name__}: {exc}"}

    def _checkpoint(self) -> tuple[Path, str | None, dict[str, Any]]:
        """The directory vLLM loads, its ``quantization=`` argument, and the export report."""
        fmt = self.format
        route = fmt.backends.get("vllm")
        if route is None:
            raise Unsupported(f"vllm cannot run {fmt.id}: {fmt.not_supported.get('vllm', 'no path for it')}")
        if self.device.kind == "cpu" and route.cpu:
            raise Unsupported(f"{route.cpu}; {fmt.id} cannot run there")
        if self.spec.is_prequantized:
            # Quantized elsewhere: loaded as it is, with the route's method, or vLLM's own detection from
            # config.json where the route says so (it picks the kernel family for the GPU).
            with timeline.phase("model build"):
                directory = registry.materialize(self.spec)
            return directory, None if route.auto else route.quantization, {
                "prequantized": self.spec.prequantized.to_dict(), "quantize_s": 0.0,
                "vllm_quantization": f"auto ({route.quantization} detected from config.json)" if route.auto
                else route.quantization}
        if route.how != "checkpoint":
            with timeline.phase("model build"):
                return registry.materialize(self.spec), None, {}
        from core.backends.exports import checkpoint_for

        directory, report = checkpoint_for(self.spec, fmt, options=self.options, device=self.device)
        return directory, route.quantization, report

    def engine_kwargs(self, directory: Path, quant_arg: str | None, *, dummy: bool = False) -> dict[str, Any]:
        """The ``vllm.LLM`` arguments of this engine (the bare-loop script builds its engine from them);
        ``dummy``: a config-only quantized checkpoint, filled with random weights by vLLM."""
        opts, cpu = self.options, self.device.kind == "cpu"
        max_len, overrides = _context_length(directory, opts.max_model_len, shape=self.spec.kind == "shape")
        kwargs: dict[str, Any] = {
            "model": str(directory), "runner": "generate", "dtype": self.device.dtype, "max_model_len": max_len,
            "seed": opts.seed, "tensor_parallel_size": opts.tensor_parallel_size,
            "trust_remote_code": opts.trust_remote_code, "limit_mm_per_prompt": {"video": 1},
            "disable_log_stats": False, "logprobs_mode": "raw_logprobs",
            "max_logprobs": max(20, opts.top_k, opts.vocab_top_k),
            "enforce_eager": CPU_ENFORCE_EAGER if cpu else False,
            # dummy: shape-only specs have no weights (nor do their config-only quantized checkpoints);
            # vLLM fills random ones (no HF parity intended)
            "load_format": "dummy" if self.spec.kind == "shape" and (quant_arg is None or dummy) else "auto",
        }
        # A config written straight from a config class (shape-only specs) names no architecture, and
        # vLLM then resolves the bare backbone as a pooling model: name the generative class.
        if not json.loads((directory / "config.json").read_text()).get("architectures"):
            overrides = {**(overrides or {}), "architectures": [architecture(self.spec)]}
        if overrides:
            kwargs["hf_overrides"] = overrides
        if quant_arg:
            kwargs["quantization"] = quant_arg
        if self.format.kv_cache == "fp8":
            kwargs["kv_cache_dtype"] = "fp8"
        if cpu:
            # Without a size the CPU worker claims gpu_memory_utilization of all RAM for its KV cache.
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                kwargs["kv_cache_memory_bytes"] = _cpu_kv_bytes(directory, max_len)
        else:
            kwargs["gpu_memory_utilization"] = opts.gpu_memory_utilization
        return kwargs

    def _warm_up(self) -> None:
        """Tiny video requests (4 black 56x56 frames), plain and asking for top-k and chosen-token
        log-probs: first-call set-up (the vision tower, the sampler's compiled log-prob ranking,
        several seconds on CPU) stays out of the first cell's numbers."""
        import numpy as np

        from core.inputs.video import Frames, VideoClip

        frames = Frames(array=np.zeros((4, 56, 56, 3), np.uint8), source_fps=2.0, total_frames=4,
                        indices=(0, 1, 2, 3), timestamps=(0.0, 0.5, 1.0, 1.5), duration=2.0,
                        source_size=(56, 56), rotation=0, decode_s=0.0)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "warm up"}]}]
        request = Request(clip=VideoClip(path=Path("warm-up"), id="warm-up"), frames=frames, messages=messages,
                          candidates=[], max_new_tokens=2)
        prompt = prompt_inputs(self.family, self.processor, request)
        SamplingParams = self.vllm.SamplingParams
        params = [SamplingParams(temperature=0.0, max_tokens=2),
                  SamplingParams(temperature=0.0, max_tokens=2, logprobs=self.options.top_k),
                  SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=[0, 1])]
        self._call(lambda: self.llm.generate([prompt] * 3, params, use_tqdm=False), "warm-up")
        self.before_round()

    def before_round(self) -> None:
        """Reset the prefix cache, the multimodal processor cache and the encoder cache (vLLM shares
        vision embeddings of the same video between requests), so the next request is first-seen."""
        if self.llm is None:
            return
        if hasattr(self.llm, "reset_prefix_cache") and self.llm.reset_prefix_cache() is False:
            raise VLLMEngineError(f"{self.spec.name} {self.format.id}: vLLM could not reset its prefix cache "
                                  "(a request is still running)")
        if hasattr(self.llm, "reset_mm_cache"):
            self.llm.reset_mm_cache()
        reset_encoder = getattr(self.llm.llm_engine, "reset_encoder_cache", None)
        if reset_encoder is not None:
            reset_encoder()

    def _check_open(self) -> None:
        if self.llm is None:
            why = f" ({self._death})" if self._death else ""
            raise VLLMEngineError(f"{self.spec.name} {self.format.id}: the vLLM engine is closed{why}")

    def generate(self, request: Request) -> Generation:
        return self._generate([request], f"{self.spec.name}/{self.format.id} on {request.clip.id}")[0]

    def generate_many(self, requests: list[Request]) -> list[Generation]:
        """Every request in flight at once: vLLM's scheduler batches them (one ``LLM.generate`` call). Each
        answer's timings are the engine's own figures for it within the batch; ``total_s`` is the batch's."""
        return self._generate(requests, f"{self.spec.name}/{self.format.id} on a batch of {len(requests)}")

    def _generate(self, requests: list[Request], where: str) -> list[Generation]:
        self._check_open()
        t0, wall0 = time.perf_counter(), time.time()
        offset = wall0 - time.monotonic()
        prompts = [prompt_inputs(self.family, self.processor, r) for r in requests]
        params = [self.vllm.SamplingParams(temperature=0.0, max_tokens=r.max_new_tokens,
                                           ignore_eos=self.options.ignore_eos) for r in requests]
        outs = self._call(lambda: self.llm.generate(prompts, params, use_tqdm=False), where)
        t2 = time.perf_counter()
        gens = []
        for out, prompt in zip(outs, prompts, strict=True):
            completion = out.outputs[0]
            token_ids = list(completion.token_ids)
            prompt_ids = list(out.prompt_token_ids or [])
            timings = _engine_timings(out.metrics, start_wall=wall0, offset=offset, total_s=t2 - t0)
            extra: dict[str, Any] = {"finish_reason": completion.finish_reason}
            if getattr(out.metrics, "first_token_latency", 0):
                extra["ttft_frontend_s"] = float(out.metrics.first_token_latency)
            gens.append(Generation(
                text=self.tokenizer.decode(token_ids, skip_special_tokens=True), token_ids=token_ids,
                prompt_tokens=len(prompt_ids), video_tokens=sum(1 for t in prompt_ids if t == self.video_token_id),
                timings=timings, extra=extra, raw=prompt,
            ))
        return gens

    def score(self, request: Request, generation: Generation) -> Generation:
        """Top-k log-probs of every generated token and the candidates' log-probs at the answer
        position, from untimed requests (the same greedy prompt again, with log-probs)."""
        self._check_open()
        prompt = generation.raw or prompt_inputs(self.family, self.processor, request)
        generation.raw = None
        where = f"{self.spec.name}/{self.format.id} on {request.clip.id} (scoring)"
        k = self.options.top_k
        params = self.vllm.SamplingParams(temperature=0.0, max_tokens=request.max_new_tokens,
                                          ignore_eos=self.options.ignore_eos,
                                          logprobs=max(k, self.options.vocab_top_k))
        out = self._call(lambda: self.llm.generate([prompt], params, use_tqdm=False), where)[0]
        completion = out.outputs[0]
        steps = completion.logprobs or []
        if list(completion.token_ids) != generation.token_ids:
            generation.extra["scoring_tokens_differ"] = True  # reported: greedy runs should agree
        cand_ids = candidate_token_ids(self.tokenizer, request.candidates)
        cand, how = self._candidate_logprobs(prompt, request, cand_ids, steps[0] if steps else {}, where)
        check_finite(list(cand.values()), where=where)
        generation.candidate_logprobs = cand
        generation.top_logprobs = [[(int(t), round(float(lp.logprob), 6)) for t, lp in
                                    sorted(step.items(), key=lambda kv: -kv[1].logprob)[:k]] for step in steps]
        generation.extra["candidate_scoring"] = how
        from core.metrics import fingerprint
        from core.metrics.vocab import compact_pairs

        # raw_logprobs: full-vocabulary log-softmax values of vLLM's top-k (see core.metrics.vocab)
        generation.vocab = compact_pairs([[(int(t), float(lp.logprob)) for t, lp in step.items()]
                                          for step in steps[: self.options.vocab_positions]],
                                         k=self.options.vocab_top_k)
        # vLLM runs the HF processor inside its engine; the fingerprint is of the same processor's
        # outputs for the same frames and prompt, built here (untimed)
        generation.inputs = {"processor_sha256": fingerprint.processor_sha256(
            self.family.hf_inputs(self.processor, request)),
            "processor": fingerprint.processor_versions(self.processor)}
        return generation

    def _candidate_logprobs(self, prompt, request: Request, cand_ids: dict[str, int], first: dict,
                            where: str) -> tuple[dict[str, float], str]:
        if all(i in first for i in cand_ids.values()):
            return {c: float(first[i].logprob) for c, i in cand_ids.items()}, "top-k"
        f = request.frames
        key = (prompt["prompt"], str(request.clip.path), f.indices, f.array.shape, tuple(cand_ids.values()))
        if key in self._scores:
            return dict(self._scores[key]), "logprob_token_ids (memoized)"
        params = self.vllm.SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=list(cand_ids.values()))
        out = self._call(lambda: self.llm.generate([prompt], params, use_tqdm=False), where)[0]
        scored = out.outputs[0].logprobs[0]
        self._scores[key] = {c: float(scored[i].logprob) for c, i in cand_ids.items()}
        return dict(self._scores[key]), "logprob_token_ids"

    def _call(self, fn, where: str):
        """Run an engine call; a dead engine process or an engine error becomes VLLMEngineError.
        A dead engine is closed at once (its processes reaped); later calls fail fast."""
        try:
            return fn()
        except Exception as exc:
            if isinstance(exc, VqbenchError):
                raise
            dead = self._dead_processes()
            if not dead and type(exc).__name__ not in {"EngineDeadError", "EngineGenerateError"}:
                raise VLLMEngineError(f"{where}: vLLM failed: {type(exc).__name__}: {exc}{_memory_hint(exc)}") from exc
            codes = ", ".join(f"pid {pid} exited" + (f" with {c}" if c is not None else "") for pid, c in dead.items())
            if -9 in dead.values():
                oom = "; -9 is SIGKILL, usually from the kernel's out-of-memory killer (see dmesg)"
            elif None in dead.values():
                oom = "; if it was killed (SIGKILL), the kernel's out-of-memory killer is the usual cause (see dmesg)"
            else:
                oom = ""
            self._death = (f"the vLLM engine process died ({codes or 'no exit code'}; {type(exc).__name__}: {exc})"
                           + oom + _memory_hint(exc))
            self.close()
            raise VLLMEngineError(f"{where}: {self._death}. Load the engine again to continue.") from exc

    def _dead_processes(self) -> dict[int, int | None]:
        """Engine processes that are gone: pid -> exit code (None when another parent collected it)."""
        pids = {p.pid for p in self._engine_procs}
        manager = getattr(getattr(getattr(self.llm, "llm_engine", None), "engine_core", None), "resources", None)
        started = list(getattr(getattr(manager, "engine_manager", None), "processes", None) or []) + procs.mp_children()
        # Reading exitcode collects an exited child, so its code is known (and it leaves no zombie).
        dead: dict[int, int | None] = {p.pid: p.exitcode for p in started if p.pid in pids and p.exitcode is not None}
        dead.update({p.pid: None for p in self._engine_procs if p.pid not in dead and not procs.running(p)})
        return dead

    def pids(self) -> list[int]:
        return [os.getpid(), *(p.pid for p in self._engine_procs)]

    def close(self) -> None:
        """Shut the engine down, wait for its processes (killing stragglers), free device memory.
        Safe to call twice and after a failed load."""
        llm, self.llm = self.llm, None
        engine_procs, self._engine_procs = self._engine_procs, []
        watchdog, self._watchdog = getattr(self, "_watchdog", None), None
        if watchdog is not None:
            watchdog.stop()
        if llm is not None:
            # A dead engine may fail to shut down; its processes are reaped below either way.
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown(timeout=procs.SHUTDOWN_TIMEOUT_S)
            del llm
        for attr in ("processor", "tokenizer"):
            self.__dict__.pop(attr, None)
        gc.collect()
        procs.reap(engine_procs)
        torch = sys.modules.get("torch")
        if torch is not None and self.device.kind == "cuda" and torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def model_shape(self) -> ModelShape:
        return ModelShape.from_dir(getattr(self, "directory", None) or registry.materialize(self.spec))


class _Watchdog:
    """Wakes a caller blocked on a dead engine. vLLM's sync client waits on its output queue
    forever when the engine core dies mid-request (its socket thread exits without a word), so
    this thread watches the engine's processes and posts an error to that queue when one dies.
    It holds no reference to the backend, so an unclosed backend can still be collected."""

    def __init__(self, engine_procs: list, outputs_queue, interval: float = 0.5) -> None:
        self._stop = threading.Event()
        if engine_procs and outputs_queue is not None:
            threading.Thread(target=self._run, args=(engine_procs, outputs_queue, interval), daemon=True,
                             name="vqbench-vllm-watchdog").start()

    def _run(self, engine_procs: list, outputs_queue, interval: float) -> None:
        while not self._stop.wait(interval):
            gone = [p.pid for p in engine_procs if not procs.running(p)]
            if gone:
                outputs_queue.put_nowait(RuntimeError(f"engine process(es) {gone} exited"))
                return

    def stop(self) -> None:
        self._stop.set()


def _engine_timings(metrics, *, start_wall: float, offset: float, total_s: float) -> dict[str, float]:
    """The timing split of one request from the engine core's clocks (see the module docstring);
    host clock only when the engine reports no stats."""
    sched = getattr(metrics, "scheduled_ts", 0.0) or 0.0
    first = getattr(metrics, "first_token_ts", 0.0) or 0.0
    last = getattr(metrics, "last_token_ts", 0.0) or 0.0
    if not (sched and first):
        return {"processor_s": 0.0, "prefill_s": total_s, "decode_s": 0.0, "generate_s": total_s, "total_s": total_s}
    processor = min(max(sched + offset - start_wall, 0.0), total_s)
    prefill = max(first - sched, 0.0)
    generate = max(total_s - processor, prefill)
    return {"processor_s": processor, "prefill_s": prefill, "decode_s": max(last - first, 0.0),
            "generate_s": generate, "total_s": max(total_s, processor + generate)}


def prompt_inputs(family, processor, request) -> dict[str, Any]:
    """vLLM's prompt dict for a request: the family's chat prompt, the frames (T, H, W, 3 uint8) with the
    metadata vLLM's processor needs, and the family's arguments for frames that arrive sampled."""
    return {"prompt": family.prompt(processor, request),
            "multi_modal_data": {"video": [(request.frames.array, request.frames.metadata())]},
            "mm_processor_kwargs": dict(family.processor_kwargs)}


def architecture(spec) -> str:
    """The vLLM model class for ``spec``'s family, named in ``hf_overrides`` when its config names none."""
    try:
        return ARCHITECTURES[spec.family]
    except KeyError:
        raise Unsupported(f"vllm: {spec.name}'s config.json names no architecture and vqbench knows no vLLM model "
                          f"class for its family {spec.family!r} (known: {', '.join(sorted(ARCHITECTURES))}): add "
                          "it to core.backends.vllm.ARCHITECTURES") from None


def _context_length(directory: Path, wanted: int, *, shape: bool) -> tuple[int, dict[str, Any] | None]:
    """max_model_len and hf_overrides: a shape-only config is stretched to ``wanted`` positions (its
    weights are random anyway); a real checkpoint keeps its own limit and the length is capped."""
    cfg = json.loads((directory / "config.json").read_text())
    limit = ModelShape.from_config(cfg).max_position_embeddings or wanted
    if limit >= wanted:
        return wanted, None
    if shape:
        override = {"max_position_embeddings": wanted}
        return wanted, {"text_config": override} if "text_config" in cfg else override
    return int(limit), None


def _cpu_kv_bytes(directory: Path, max_len: int) -> int:
    """KV cache for two full-length sequences (answer + scoring request) in bf16, at least 256 MiB."""
    return int(max(CPU_KV_CACHE_MIN_BYTES, 2 * max_len * ModelShape.from_dir(directory).kv_bytes_per_token(2.0)))


def _weights(directory: Path, spec, fmt) -> tuple[int, str]:
    """The weights' bytes and where they come from (``LoadInfo.weights_source``): the checkpoint's
    safetensors bytes (packed low-bit weights count as stored; a pre-quantized checkpoint's files are
    what the engine holds), or, for a weightless shape-only or config-only directory (dummy weights),
    an estimate: language-model linears at the format's nominal storage width, the rest in bf16."""
    files = list(directory.glob("*.safetensors"))
    if files or spec.is_prequantized:
        return sum(f.stat().st_size for f in files), "checkpoint files"
    total = spec.approx_params_b * 1e9
    lm = min(ModelShape.from_dir(directory).lm_params, total) if fmt.quantized else 0
    return int((total - lm) * 2 + lm * fmt.stored_bytes_per_weight("vllm")), "estimate"


def _memory_hint(exc: BaseException) -> str:
    text = str(exc).lower()
    if "memory" in text or "oom" in text or "cache blocks" in text:
        return ("; it looks like memory: lower max_model_len or gpu_memory_utilization, or free the device "
                "(on CPU set VLLM_CPU_KVCACHE_SPACE in GiB)")
    return ""


def _cpu_facts(device) -> dict[str, Any]:
    """On a CPU: the ISA and bf16 facts the suite read, the dtype the engine computes in, and the kernel
    library vLLM loaded here with the operators it lacks (asked of the build: core.backends.vllm_cpu_kernels)."""
    from core.backends import vllm_cpu_kernels

    found = vllm_cpu_kernels.probe()
    facts: dict[str, Any] = device.cpu_record()
    if "error" in found:
        facts["kernels_error"] = found["error"]
    else:
        facts["kernel_library"] = [Path(p).name for p in found.get("loaded", [])]
        facts["missing_ops"] = [op for op, ok in found["ops"].items() if not ok]
        facts["torch_cpu_capability"] = found.get("torch_cpu_capability")
    return facts

