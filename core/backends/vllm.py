"""vLLM backend: one ``vllm.LLM`` engine per (model, format), greedy decoding, engine-side timings.

Loading. bf16 checkpoints load as they are; shape-only specs (no weights) load with
``load_format="dummy"`` (random weights) and, when their config is shorter, with
``max_position_embeddings`` stretched to ``max_model_len``; ModelOpt FP8/NVFP4 load from the cached
``modelopt_export`` with ``quantization="modelopt"``/``"modelopt_fp4"`` (the format's
``backends["vllm"]``); ``+kv_fp8`` adds ``kv_cache_dtype="fp8"``. On CPU the engine runs eagerly
(compiling takes minutes on a small machine) with a KV cache sized for the model rather than
vLLM's default share of all RAM. A tiny warm-up request runs at load (``details['warmup_s']``).

Processes. The engine core (and on CPU its worker) runs in child processes, so a crash or an
out-of-memory kill there reaches this process as ``VLLMEngineError``, never as a dead pytest.
Children are started with ``spawn`` (``VLLM_WORKER_MULTIPROC_METHOD=spawn``, set here unless the
caller chose otherwise; vLLM's CPU platform forces it anyway): forking a pytest process that already
holds threads, captured file descriptors or a CUDA context is unsafe, and spawn needs no
``__main__`` guard under pytest or a console script. A watchdog thread turns an engine death
during a request into an error (vLLM's sync client would wait forever). ``close()`` shuts the
engine down and waits for every process it started, so device memory really returns.

Scores. vLLM returns, per request, either the top-k log-probs of each step or the log-probs of
chosen token ids (``SamplingParams.logprob_token_ids``, in 0.26 and 0.32), not both. The answer
request asks for top-k; when a candidate's first token is not among the first step's entries, a
one-token request with ``logprob_token_ids`` scores them at the same position. That second request
is memoized per (prompt, frames), so timed repeats of one cell measure generation alone
(``extra['candidate_scoring']`` says where the values came from). ``logprobs_mode="raw_logprobs"``
makes both full-vocabulary log-softmax values of the raw logits, as the HF backend reports.

Timings. ``processor_s`` is ``LLM.enqueue`` (chat template, HF processor, hand-off to the engine);
``prefill_s`` (time to first token) and ``decode_s`` come from the engine core's own timestamps in
``RequestOutput.metrics`` (needs ``disable_log_stats=False``); ``generate_s`` and ``total_s`` are
host wall clock around the blocking ``wait_for_completion``. Prefix caching and the multimodal
processor cache are off, so repeating one request re-runs the processor, the vision tower and
the prefill, as every HF round does (with prefix caching on, a repeated request skips its prefill).
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core import capability
from core.backends.base import (
    Backend,
    Generation,
    LoadInfo,
    Request,
    candidate_token_ids,
    check_finite,
)
from core.errors import MissingDependency, Unsupported, VqbenchError
from core.families import family
from core.models import registry

ARCHITECTURES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
"""vLLM model class per family, for configs that do not name one."""
CPU_KV_CACHE_MIN_BYTES = 256 * 2**20
SHUTDOWN_TIMEOUT_S = 30.0
# CPU: vLLM's compile mode (dynamo + inductor) would compile for minutes on a small CI machine.
CPU_ENFORCE_EAGER = True


class VLLMEngineError(VqbenchError):
    """The vLLM engine failed to start, died, or rejected a request; the message says which and why."""


class VLLMBackend(Backend):
    """vLLM offline ``LLM`` engine: bf16, ModelOpt FP8/NVFP4 exports, optional FP8 KV cache."""

    name = "vllm"
    llm: Any = None
    _death: str = ""

    def load(self) -> LoadInfo:
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        try:
            import transformers
            import vllm
        except ImportError as exc:
            raise MissingDependency("vllm", "the vllm backend", capability.PACKAGES["vllm"][2]) from exc
        self.vllm = vllm
        t0 = time.perf_counter()
        directory, quant_arg, report = self._checkpoint()
        quantize_s = report.get("quantize_s", 0.0)
        self.directory = directory
        self.processor = transformers.AutoProcessor.from_pretrained(
            directory, local_files_only=True, trust_remote_code=self.options.trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.family = family(self.spec.family)
        kwargs = self._engine_kwargs(directory, quant_arg)
        before = _child_pids()
        t1 = time.perf_counter()
        try:
            self.llm = vllm.LLM(**kwargs)
            engine_s = time.perf_counter() - t1
        except Exception as exc:
            self._engine_procs = _new_children(before)
            self.close()
            raise VLLMEngineError(
                f"vLLM could not start {self.spec.name} {self.format.id} on {self.device.describe()}: "
                f"{type(exc).__name__}: {exc}. The engine process's log above has the root cause"
                f"{_memory_hint(exc)}.") from exc
        self._engine_procs = _new_children(before)
        self._watchdog = _Watchdog(self._engine_procs, getattr(self.llm.llm_engine.engine_core, "outputs_queue", None))
        self.video_token_id = self.family.vllm_video_token_id(self.tokenizer)
        self._scores: dict[tuple, dict[str, float]] = {}
        t2 = time.perf_counter()
        try:
            self._warm_up()
        except BaseException:
            self.close()
            raise
        details: dict[str, Any] = {
            "directory": str(directory), "dtype": "bfloat16", "vllm_quantization": quant_arg,
            "kv_cache_dtype": kwargs.get("kv_cache_dtype", "auto"), "load_format": kwargs["load_format"],
            "max_model_len": kwargs["max_model_len"], "enforce_eager": kwargs["enforce_eager"],
            "engine_s": engine_s, "warmup_s": time.perf_counter() - t2,
            "multiproc_method": os.environ.get("VLLM_WORKER_MULTIPROC_METHOD"),
            "engine_pids": [p.pid for p in self._engine_procs],
        }
        if report:
            details["quantization"] = report  # the export's report, where the HF backend keeps its own
        return LoadInfo(load_s=engine_s + (t1 - t0) - quantize_s, quantize_s=quantize_s,
                        quantize_cached=bool(report.get("cached")), weight_bytes=_weight_bytes(directory, self.spec),
                        details=details)

    def _checkpoint(self) -> tuple[Path, str | None, dict[str, Any]]:
        """The directory vLLM loads, its ``quantization=`` argument, and the export report."""
        fmt, how = self.format, self.format.backends.get("vllm", "")
        if self.device.kind == "cpu" and (fmt.quantized or fmt.kv_cache):
            raise Unsupported(f"vLLM's CPU backend cannot run {fmt.id} (no ModelOpt/FP8 kernels on CPU)")
        if not fmt.quantized:
            return registry.materialize(self.spec), None, {}
        if not how.startswith("export:"):
            raise Unsupported(f"vllm cannot run {fmt.id}: {fmt.not_supported.get('vllm', 'no export path')}")
        from core.quant.exports import modelopt_export

        directory, report = modelopt_export(self.spec, fmt, options=self.options, device=self.device)
        return directory, how.split(":", 1)[1], report

    def _engine_kwargs(self, directory: Path, quant_arg: str | None) -> dict[str, Any]:
        opts, cpu = self.options, self.device.kind == "cpu"
        max_len, overrides = _context_length(directory, opts.max_model_len, shape=self.spec.kind == "shape")
        kwargs: dict[str, Any] = {
            "model": str(directory), "runner": "generate", "dtype": "bfloat16", "max_model_len": max_len, "seed": opts.seed,
            "tensor_parallel_size": opts.tensor_parallel_size, "trust_remote_code": opts.trust_remote_code,
            "limit_mm_per_prompt": {"video": 1}, "disable_log_stats": False,
            "logprobs_mode": "raw_logprobs", "max_logprobs": max(20, opts.top_k),
            "enable_prefix_caching": False, "mm_processor_cache_gb": 0,
            "enforce_eager": CPU_ENFORCE_EAGER if cpu else False,
            # dummy: shape-only specs have no weights; vLLM fills random ones (no HF parity intended)
            "load_format": "dummy" if self.spec.kind == "shape" and quant_arg is None else "auto",
        }
        # A config written straight from a config class (shape-only specs) names no architecture, and
        # vLLM then resolves the bare backbone as a pooling model: name the generative class.
        if not json.loads((directory / "config.json").read_text()).get("architectures"):
            overrides = {**(overrides or {}), "architectures": [ARCHITECTURES[self.spec.family]]}
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
        """Two tiny video requests (4 black 56x56 frames), asking for top-k and for chosen-token
        log-probs: first-call set-up (the vision tower, the sampler's compiled log-prob ranking,
        several seconds on CPU) stays out of the first cell's numbers."""
        import numpy as np

        from core.video import Frames, VideoClip

        frames = Frames(array=np.zeros((4, 56, 56, 3), np.uint8), source_fps=2.0, total_frames=4,
                        indices=(0, 1, 2, 3), timestamps=(0.0, 0.5, 1.0, 1.5), duration=2.0,
                        source_size=(56, 56), rotation=0, decode_s=0.0)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "warm up"}]}]
        request = Request(clip=VideoClip(path=Path("warm-up"), id="warm-up"), frames=frames, messages=messages,
                          candidates=[], max_new_tokens=2)
        prompt = self.family.vllm_inputs(self.processor, request)
        SamplingParams = self.vllm.SamplingParams
        params = [SamplingParams(temperature=0.0, max_tokens=2, logprobs=self.options.top_k),
                  SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=[0, 1])]
        self._call(lambda: self.llm.generate([prompt, prompt], params, use_tqdm=False), "warm-up")

    def generate(self, request: Request) -> Generation:
        if self.llm is None:
            why = f" ({self._death})" if self._death else ""
            raise VLLMEngineError(f"{self.spec.name} {self.format.id}: the vLLM engine is closed{why}")
        SamplingParams = self.vllm.SamplingParams
        t0 = time.perf_counter()
        prompt = self.family.vllm_inputs(self.processor, request)
        cand_ids = candidate_token_ids(self.tokenizer, request.candidates)
        params = SamplingParams(temperature=0.0, max_tokens=request.max_new_tokens,
                                ignore_eos=self.options.ignore_eos, logprobs=self.options.top_k)
        where = f"{self.spec.name}/{self.format.id} on {request.clip.id}"
        request_id = self._call(lambda: self.llm.enqueue(prompt, params, use_tqdm=False), where)[0]
        t1 = time.perf_counter()
        outputs = self._call(lambda: self.llm.wait_for_completion(use_tqdm=False), where)
        t2 = time.perf_counter()
        # enqueue returns the internal id ('3-1a2b3c4d'); outputs carry the caller's ('3'). Matching it
        # skips a leftover of an interrupted earlier call.
        out = next((o for o in outputs if request_id in (o.request_id, ) or request_id.startswith(f"{o.request_id}-")),
                   outputs[-1])
        completion = out.outputs[0]
        steps = completion.logprobs or []
        cand, scoring = self._candidate_logprobs(prompt, request, cand_ids, steps[0] if steps else {}, where)
        check_finite(list(cand.values()), where=where)
        k = self.options.top_k
        top = [[(int(t), round(float(lp.logprob), 6)) for t, lp in
                sorted(step.items(), key=lambda kv: -kv[1].logprob)[:k]] for step in steps]
        token_ids = list(completion.token_ids)
        prompt_ids = list(out.prompt_token_ids or [])
        timings = {"processor_s": t1 - t0, **_engine_timings(out.metrics, host_s=t2 - t1),
                   "generate_s": t2 - t1, "total_s": t2 - t0}
        return Generation(
            text=self.tokenizer.decode(token_ids, skip_special_tokens=True), token_ids=token_ids,
            candidate_logprobs=cand, top_logprobs=top, prompt_tokens=len(prompt_ids),
            video_tokens=sum(1 for t in prompt_ids if t == self.video_token_id), timings=timings,
            extra={"candidate_scoring": scoring, "finish_reason": completion.finish_reason},
        )

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
        procs = getattr(self, "_engine_procs", [])
        pids = {p.pid for p in procs}
        manager = getattr(getattr(getattr(self.llm, "llm_engine", None), "engine_core", None), "resources", None)
        started = list(getattr(getattr(manager, "engine_manager", None), "processes", None) or []) + _mp_children()
        # Reading exitcode collects an exited child, so its code is known (and it leaves no zombie).
        dead: dict[int, int | None] = {p.pid: p.exitcode for p in started if p.pid in pids and p.exitcode is not None}
        dead.update({p.pid: None for p in procs if p.pid not in dead and not _running(p)})
        return dead

    def close(self) -> None:
        """Shut the engine down, wait for its processes (killing stragglers), free device memory.
        Safe to call twice and after a failed load."""
        llm, self.llm = self.llm, None
        procs, self._engine_procs = getattr(self, "_engine_procs", []), []
        watchdog, self._watchdog = getattr(self, "_watchdog", None), None
        if watchdog is not None:
            watchdog.stop()
        if llm is not None:
            # A dead engine may fail to shut down; its processes are reaped below either way.
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown(timeout=SHUTDOWN_TIMEOUT_S)
            del llm
        for attr in ("processor", "tokenizer"):
            self.__dict__.pop(attr, None)
        gc.collect()
        _reap(procs)
        torch = sys.modules.get("torch")
        if torch is not None and self.device.kind == "cuda" and torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def versions(self) -> dict[str, str]:
        return {p: capability.version(p) or "?" for p in ("vllm", "torch", "transformers")}


class _Watchdog:
    """Wakes a caller blocked on a dead engine. vLLM's sync client waits on its output queue
    forever when the engine core dies mid-request (its socket thread exits without a word), so
    this thread watches the engine's processes and posts an error to that queue when one dies.
    It holds no reference to the backend, so an unclosed backend can still be collected."""

    def __init__(self, procs: list, outputs_queue, interval: float = 0.5) -> None:
        self._stop = threading.Event()
        if procs and outputs_queue is not None:
            threading.Thread(target=self._run, args=(procs, outputs_queue, interval), daemon=True,
                             name="vqbench-vllm-watchdog").start()

    def _run(self, procs: list, outputs_queue, interval: float) -> None:
        while not self._stop.wait(interval):
            gone = [p.pid for p in procs if not _running(p)]
            if gone:
                outputs_queue.put_nowait(RuntimeError(f"engine process(es) {gone} exited"))
                return

    def stop(self) -> None:
        self._stop.set()


def _engine_timings(metrics, *, host_s: float) -> dict[str, float]:
    """prefill_s (first token - scheduled) and decode_s (last - first token), engine-core clocks."""
    first = getattr(metrics, "first_token_ts", 0.0) or 0.0
    sched = getattr(metrics, "scheduled_ts", 0.0) or 0.0
    last = getattr(metrics, "last_token_ts", 0.0) or 0.0
    if not (first and sched):
        return {"prefill_s": host_s, "decode_s": 0.0}  # stats off: host clock only
    return {"prefill_s": first - sched, "decode_s": max(last - first, 0.0)}


def _context_length(directory: Path, wanted: int, *, shape: bool) -> tuple[int, dict[str, Any] | None]:
    """max_model_len and hf_overrides: a shape-only config is stretched to ``wanted`` positions (its
    weights are random anyway); a real checkpoint keeps its own limit and the length is capped."""
    cfg = json.loads((directory / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    limit = int(text.get("max_position_embeddings") or cfg.get("max_position_embeddings") or wanted)
    if limit >= wanted:
        return wanted, None
    if shape:
        key = "text_config" if "text_config" in cfg else None
        override = {"max_position_embeddings": wanted}
        return wanted, {key: override} if key else override
    return limit, None


def _cpu_kv_bytes(directory: Path, max_len: int) -> int:
    """KV cache for two full-length sequences (answer + scoring request) in bf16, at least 256 MiB."""
    cfg = json.loads((directory / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    heads = text["num_attention_heads"]
    head_dim = text.get("head_dim") or text["hidden_size"] // heads
    per_token = 2 * text["num_hidden_layers"] * text.get("num_key_value_heads", heads) * head_dim * 2
    return max(CPU_KV_CACHE_MIN_BYTES, 2 * max_len * per_token)


def _weight_bytes(directory: Path, spec) -> int:
    """Checkpoint bytes on disk (packed low-bit weights count as stored); a shape-only estimate."""
    files = list(directory.glob("*.safetensors"))
    if files:
        return sum(f.stat().st_size for f in files)
    return int(spec.approx_params_b * 1e9 * 2)


def _memory_hint(exc: BaseException) -> str:
    text = str(exc).lower()
    if "memory" in text or "oom" in text or "cache blocks" in text:
        return ("; it looks like memory: lower max_model_len or gpu_memory_utilization, or free the device "
                "(on CPU set VLLM_CPU_KVCACHE_SPACE in GiB)")
    return ""


def _child_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _new_children(before: set[int]) -> list:
    """psutil handles of the processes the engine started (not multiprocessing's resource tracker)."""
    import psutil

    tracker = _resource_tracker_pid()
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.pid != tracker]


def _resource_tracker_pid() -> int | None:
    try:
        from multiprocessing import resource_tracker

        return resource_tracker._resource_tracker._pid
    except Exception:  # noqa: BLE001
        return None


def _running(p) -> bool:
    """A live process (a zombie has exited: it only waits for its parent to collect it)."""
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _mp_children() -> list:
    """Processes started through multiprocessing that it has not joined yet (the engine core)."""
    return list(getattr(multiprocessing.process, "_children", ()))


def _reap(procs: list, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Wait for the engine's processes to exit, kill stragglers, and collect every exit status.

    multiprocessing collects its own children (``active_children`` joins exited ones), so their
    exit codes stay readable; psutil collects anything else that is left as a zombie."""
    import psutil

    deadline = time.monotonic() + timeout
    while procs and time.monotonic() < deadline:
        multiprocessing.active_children()
        if not any(_running(p) for p in procs):
            break
        time.sleep(0.1)
    for p in procs:
        if _running(p):
            try:
                p.kill()
            except psutil.Error:
                pass
    multiprocessing.active_children()
    psutil.wait_procs([p for p in procs if p.is_running()], timeout=5)
