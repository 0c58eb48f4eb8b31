"""The vqbench pytest plugin (entry point ``pytest11: vqbench``): options, the matrix, fixtures.

Any project can use it: install vqbench and write tests that take the ``vqbench_cell`` or
``vqbench_engine`` fixtures; cells are parametrized from the settings, skipped with their reason
when they cannot run here, ordered so each engine loads once, and optionally sharded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from core import capability, device as devices
from core.errors import VqbenchError

_STATE = pytest.StashKey["VqbenchState"]()

OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--model", "models", {"action": "append", "help": "model name or local checkpoint dir for CPU cells "
                                                        "(repeatable; default: tiny)"}),
    ("--gpu-model", "gpu_models", {"action": "append", "help": "model for GPU cells (repeatable; default: "
                                                               "tiny and the shape-only 3B/7B/Cosmos-7B)"}),
    ("--backend", "backends", {"action": "append", "help": "hf, vllm, trtllm (repeatable; default: all)"}),
    ("--format", "formats", {"action": "append", "help": "quantization format (repeatable; default: all; "
                                                         "add +kv_fp8 for an FP8 KV cache)"}),
    ("--task", "tasks", {"action": "append", "help": "anomaly or mcq (default: anomaly)"}),
    ("--videos", "videos", {"help": "folder, CSV manifest, RoadBuddy JSON, or a built-in "
                                     "set: fixtures, heldout, roadbuddy (default: per task)"}),
    ("--max-videos", "max_videos", {"type": int, "help": "use only the first N clips"}),
    ("--fps", "fps", {"type": float, "help": "sampling rate in frames per second (default 4)"}),
    ("--nframes", "nframes", {"type": int, "help": "sample exactly N frames instead of --fps"}),
    ("--min-frames", "min_frames", {"type": int, "help": "lower bound on sampled frames (default 4)"}),
    ("--max-frames", "max_frames", {"type": int, "help": "upper bound on sampled frames (default 768)"}),
    ("--resolution", "resolution", {"help": "frame size WIDTHxHEIGHT, rounded to 28 px (default 250x250; "
                                            "'' keeps the aspect ratio)"}),
    ("--max-new-tokens", "max_new_tokens", {"type": int, "help": "generated tokens per answer (default 7)"}),
    ("--rounds", "rounds", {"type": int, "help": "timed rounds per cell (default 3)"}),
    ("--warmup-rounds", "warmup_rounds", {"type": int, "help": "untimed warm-up rounds per cell (default 1)"}),
    ("--reference-format", "reference_format", {"help": "format drift is measured against (default bf16)"}),
    ("--results", "results", {"help": "append every finished cell to this JSON-lines file"}),
    ("--attn", "attn_implementation", {"help": "sdpa (default), eager, flash_attention_2"}),
    ("--fast", "fast", {"action": "store_true", "default": None,
                        "help": "HF: static KV cache + torch.compile"}),
    ("--ignore-eos", "ignore_eos", {"action": "store_true", "default": None,
                                    "help": "always generate --max-new-tokens tokens"}),
    ("--calibration", "calibration", {"help": "ModelOpt calibration set: captions or clips"}),
    ("--calib-size", "calib_size", {"type": int, "help": "calibration samples (default 32)"}),
    ("--tp", "tensor_parallel_size", {"type": int, "help": "tensor parallel size for vLLM/TRT-LLM"}),
    ("--allow-pickle", "allow_pickle", {"action": "store_true", "default": None,
                                        "help": "allow pickle (.bin) checkpoints"}),
    ("--trust-remote-code", "trust_remote_code", {"action": "store_true", "default": None,
                                                  "help": "allow model code from checkpoints"}),
    ("--golden-tolerance", "golden_tolerance", {"type": float, "help": "log-prob tolerance of goldens"}),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vqbench", "vqbench: video VLM quantization benchmark")
    for flag, dest, kwargs in OPTIONS:
        group.addoption(flag, dest=f"vqbench_{dest}", **kwargs)
    group.addoption("--threshold", dest="vqbench_threshold", action="append", default=[],
                    help="drift limit FORMAT.METRIC=VALUE, e.g. int4_awq.max_mean_kl=0.02 (repeatable)")
    group.addoption("--shard", dest="vqbench_shard", default=None,
                    help="run shard i of n (e.g. 2/4), split by engine so each loads once per shard")


class VqbenchState:
    """Session state: settings, the planned matrix, the engine pool, caches and the results file."""

    def __init__(self, config: pytest.Config) -> None:
        from core import settings as settings_mod

        overrides = {}
        for _flag, dest, _kw in OPTIONS:
            value = config.getoption(f"vqbench_{dest}")
            if value is not None:
                overrides[dest] = value
        thresholds = parse_thresholds(config.getoption("vqbench_threshold") or [])
        if "tasks" in overrides:
            overrides["model_tasks"] = {}  # an explicit --task applies to every model
        self.settings = settings_mod.build(Path(str(config.rootpath)), overrides)
        if thresholds:
            merged = {f: {**self.settings.thresholds.get(f, {}), **m} for f, m in thresholds.items()}
            self.settings = dataclasses.replace(self.settings, thresholds={**self.settings.thresholds, **merged})
        self.config = config
        self._plans = None
        self._clips = None
        self.pool = None
        self.frames = None
        self.writer = None
        self.records: dict[str, dict[str, Any]] = {}
        self.shard = None
        if config.getoption("vqbench_shard"):
            from core.matrix import parse_shard

            self.shard = parse_shard(config.getoption("vqbench_shard"))

    @property
    def plans(self):
        if self._plans is None:
            from core.matrix import plan_engines

            self._plans = plan_engines(self.settings)
        return self._plans

    def clips_for(self, task: str):
        """The clips a task runs on: --videos for every task, else the task's own fixture set."""
        if self._clips is None:
            self._clips = {}
        if task not in self._clips:
            from core import dataset

            source = self.settings.videos or DEFAULT_DATASETS.get(task, "fixtures")
            clips = dataset.load(source)
            if self.settings.max_videos:
                clips = clips[: self.settings.max_videos]
            self._clips[task] = clips
        return self._clips[task]

    def runtime(self):
        """The engine pool, frame cache and results writer (created on first use)."""
        if self.pool is None:
            from core.results import ResultsWriter
            from core.runner import EnginePool, FrameCache

            self.pool, self.frames = EnginePool(self.settings), FrameCache()
            if self.settings.results:
                self.writer = ResultsWriter(self.settings.results, header={
                    "settings": self.settings.to_dict(), "machine": machine_info()})
        return self.pool, self.frames

    def save_drift(self, engine_id: str, task: str, report: dict[str, Any], passed: bool) -> None:
        """Record a drift report in the results file (reports read it)."""
        if self.writer is not None:
            self.writer.write({"type": "drift", "engine": engine_id, "task": task, "passed": passed,
                               "report": report})

    def save(self, rec: dict[str, Any]) -> None:
        self.records[rec["cell"]] = rec
        if self.writer is not None:
            self.writer.write(rec)

    def run(self, cell, *, timer=None) -> dict[str, Any]:
        """Run ``cell`` (or return its stored record when no timing is asked); failures are recorded
        with their reason and re-raised, and memory is freed after an out-of-memory error."""
        from core.runner import error_record, run_cell

        if timer is None and cell.id in self.records:
            rec = self.records[cell.id]
            if rec["status"] == "ok":
                return rec
        pool, frames = self.runtime()
        try:
            rec = run_cell(cell, pool, frames, self.settings, timer=timer)
        except BaseException as exc:
            if _is_oom(exc):
                _free_after_oom()
            if isinstance(exc, Exception):
                self.save(error_record(cell, exc))
            raise
        self.save(rec)
        return rec

    def close(self) -> None:
        if self.pool is not None:
            self.pool.release()
        if self.writer is not None:
            self.writer.close()


def parse_thresholds(items: list[str]) -> dict[str, dict[str, float]]:
    """['int4_awq.max_mean_kl=0.02'] -> {'int4_awq': {'max_mean_kl': 0.02}}."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        try:
            lhs, value = item.split("=", 1)
            fmt, metric = lhs.rsplit(".", 1)
            out.setdefault(fmt.strip(), {})[metric.strip()] = float(value)
        except ValueError:
            raise pytest.UsageError(f"--threshold must look like FORMAT.METRIC=VALUE, got '{item}'") from None
    return out


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ in {"OutOfMemoryError", "OutOfMemory"} or "out of memory" in str(exc).lower()


def _free_after_oom() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def state(config: pytest.Config) -> VqbenchState:
    return config.stash[_STATE]


def _xdist_controller(config: pytest.Config) -> bool:
    return getattr(config.option, "numprocesses", None) not in (None, 0) and not hasattr(config, "workerinput")


def _pin_worker_gpu(worker: str) -> None:
    """Give xdist worker gwN its own GPU (the N-th visible one), before anything initialises CUDA."""
    import os

    gpus = devices.gpus()
    if not gpus:
        return
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count > len(gpus):
        raise pytest.UsageError(f"-n {count} exceeds the {len(gpus)} visible GPUs: two workers would share a "
                                f"GPU and skew each other's timings; use -n {len(gpus)} or fewer")
    index = int(worker.removeprefix("gw"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [t.strip() for t in visible.split(",")] if visible else [str(g.index) for g in gpus]
    os.environ["CUDA_VISIBLE_DEVICES"] = physical[index % len(physical)]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    import os

    from core.safety import enforce_offline

    enforce_offline()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        _pin_worker_gpu(worker)
    if _xdist_controller(config):
        # One model/backend per worker: each engine loads once, drift sees its reference.
        if getattr(config.option, "dist", "no") == "load":
            config.option.dist = "loadgroup"
        if not config.getoption("vqbench_results") and not os.environ.get("VQBENCH_RESULTS"):
            import tempfile

            os.environ["VQBENCH_RESULTS"] = str(Path(tempfile.mkdtemp(prefix="vqbench-")) / "results.jsonl")
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    try:
        config.stash[_STATE] = VqbenchState(config)
    except VqbenchError as exc:
        raise pytest.UsageError(f"vqbench: {exc}") from None


MARKERS = {
    "cpu": "runs without a GPU (structural tests and CPU cells of the tiny model)",
    "gpu": "needs a CUDA GPU (skipped with the reason when there is none)",
    "hf": "a cell of the Hugging Face transformers backend",
    "vllm": "a cell of the vLLM backend",
    "trtllm": "a cell of the TensorRT-LLM backend",
    "slow": "takes more than a few seconds on CPU",
    "xdist_group": "xdist_group(name): cells of one model/backend run on one xdist worker (registered here "
                   "so --strict-markers works without pytest-xdist)",
}


DEFAULT_DATASETS = {"anomaly": "fixtures", "mcq": "roadbuddy"}


def _task_gap(task: str, clips) -> str:
    """Why a task cannot run on these clips ('' when it can): mcq needs questions and options."""
    if task == "mcq" and not all(c.question and c.options for c in clips):
        return ("the mcq task needs questions with options (a RoadBuddy-style JSON); these videos have "
                "none: pass --task anomaly, or a JSON via --videos")
    return ""


def _param(plan, id_: str, values: tuple, *, skip: str = "") -> Any:
    marks = [getattr(pytest.mark, m) for m in plan.marks]
    e = plan.engine
    marks.append(pytest.mark.xdist_group(f"{e.device}-{e.model}-{e.backend}"))
    if not plan.verdict.runnable:
        marks.append(pytest.mark.skip(reason=plan.verdict.reason))
    elif skip:
        marks.append(pytest.mark.skip(reason=skip))
    return pytest.param(*values, id=id_, marks=marks)


def golden_id(plan, task: str) -> str:
    """Engine id with the device class (cpu, sm90 ...) in place of the device kind."""
    e = plan.engine
    gpu = devices.primary()
    dev = "cpu" if e.device == "cpu" else (gpu.gpu_class if gpu.kind == "cuda" else "gpu")
    return f"{e.model}-{e.backend}-{e.format}-{dev}-{task}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vqbench_cell" not in metafunc.fixturenames and "vqbench_engine" not in metafunc.fixturenames:
        return
    st = state(metafunc.config)
    try:
        plans = st.plans
        tasks = sorted({t for p in plans for t in st.settings.tasks_for(p.engine.model)})
        clips = {t: st.clips_for(t) for t in tasks}
    except VqbenchError as exc:
        raise pytest.UsageError(f"vqbench: {exc}") from None
    if "vqbench_cell" in metafunc.fixturenames:
        from core.matrix import expand

        cells = [c for p in plans for t in st.settings.tasks_for(p.engine.model) for c in expand([p], [t], clips[t])]
        params = [_param(c.plan, c.id, (c,), skip=_task_gap(c.task, [c.clip])) for c in cells]
        metafunc.parametrize("vqbench_cell", params)
    else:
        params = [_param(p, golden_id(p, t), ((p, t),), skip=_task_gap(t, clips[t]))
                  for p in plans for t in st.settings.tasks_for(p.engine.model)]
        metafunc.parametrize("vqbench_engine", params)


def _engine_of(item: pytest.Item):
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    if "vqbench_cell" in callspec.params:
        return callspec.params["vqbench_cell"].plan
    if "vqbench_engine" in callspec.params:
        return callspec.params["vqbench_engine"][0]
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group items by engine (reference format first) so each engine loads once; then shard."""
    st = state(config)
    ref = st.settings.reference_format
    order: dict[Any, int] = {}

    def key(pair):
        idx, item = pair
        plan = _engine_of(item)
        if plan is None:
            return (0, "", 0, idx)
        e = plan.engine
        group = (e.device, e.model, e.backend)
        order.setdefault(group, len(order))
        kind = 0 if "vqbench_cell" in item.callspec.params else 1  # cells, then golden/drift
        return (1, order[group], 0 if e.format == ref else 1, e.format, kind, idx)

    items[:] = [it for _, it in sorted(enumerate(items), key=key)]
    if st.shard:
        i, n = st.shard
        engines = sorted({_engine_of(it).engine.id for it in items if _engine_of(it) is not None})
        mine = {e for k, e in enumerate(engines) if k % n == i - 1}
        keep = [it for it in items if _engine_of(it) is None or _engine_of(it).engine.id in mine]
        deselected = [it for it in items if it not in keep]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    st = session.config.stash.get(_STATE, None)
    if st is not None:
        st.close()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Under xdist, merge the workers' timed cells into one pytest-benchmark JSON."""
    import json
    import os

    target = getattr(config.option, "benchmark_json", None)
    source = config.getoption("vqbench_results") or os.environ.get("VQBENCH_RESULTS")
    if not (_xdist_controller(config) and target and source and Path(source).exists()):
        return
    from core import results
    from core.benchjson import to_document

    doc = to_document(results.cells(source), machine_info={"vqbench": machine_info()},
                      extra_keys=results.BENCHMARK_EXTRA_KEYS)
    Path(target).write_text(json.dumps(doc, indent=2, default=str))
    config.get_terminal_writer().line(
        f"vqbench: merged {len(doc['benchmarks'])} timed cells from the xdist workers into {target}")


@pytest.fixture(scope="session")
def vqbench_state(request: pytest.FixtureRequest) -> VqbenchState:
    """The session's settings, matrix, engine pool and results."""
    return state(request.config)


@pytest.fixture(scope="session")
def vqbench_settings(vqbench_state):
    """The resolved vqbench Settings."""
    return vqbench_state.settings


def machine_info() -> dict[str, Any]:
    """GPU, driver, CUDA and package versions (for pytest-benchmark's machine_info and results)."""
    gpu = devices.primary()
    info: dict[str, Any] = {
        "gpu": None if gpu.kind == "cpu" else {
            "name": gpu.name, "compute_capability": f"{gpu.capability[0]}.{gpu.capability[1]}",
            "memory_gib": round(gpu.memory_gib or 0, 1), "driver": gpu.driver, "cuda_driver": gpu.cuda_driver_version,
            "count": len(devices.gpus())},
        "gpu_class": gpu.gpu_class,
        "packages": {p: capability.version(p) for p in
                     ("torch", "transformers", "vllm", "tensorrt_llm", "modelopt", "bitsandbytes", "torchao", "av")
                     if capability.version(p)},
    }
    if gpu.kind == "cpu":
        info["no_gpu_reason"] = devices.no_gpu_reason()
    return info


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["vqbench"] = globals()["machine_info"]()
