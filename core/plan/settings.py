"""Suite settings and the one table of options that declares them.

Every option is declared once, as a field of ``Settings`` whose metadata says its flags, its help,
how a string is parsed, and which front ends take it. From that table come the pytest options
(``core.suite.plugin``), the ``vqbench`` subcommands' arguments (``core.cli``), the
``[tool.vqbench]`` / ``VQBENCH_<KEY>`` readers and ``EngineOptions``.
Precedence: defaults < ``[tool.vqbench]`` in pyproject.toml < ``VQBENCH_*`` environment < options.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from core.base.errors import ConfigError, unknown_name
from core.inputs.sampling import SamplingSpec, parse_resolution
from core.plan import catalog

DEFAULT_GPU_MODELS = ("tiny", "qwen2.5-vl-3b", "qwen2.5-vl-7b", "cosmos-reason1-7b")

Front = Literal["pytest", "run", "quantize"]
"""Where an option is offered: the pytest plugin, ``vqbench run``, ``vqbench quantize``."""


# --- parsers: a bad value fails at the boundary, with the value in the message ---------------------

def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    key = str(text).strip().lower()
    if key in {"1", "true", "yes", "on"}:
        return True
    if key in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"'{text}' is not a boolean (use true/false)")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise ValueError(f"must be > 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text}")
    return value


def parse_fps(text: str | float | None) -> float | None:
    if text is None or str(text).strip().lower() in {"", "none"}:
        return None
    value = float(text)
    if not value > 0:
        raise ValueError(f"fps must be > 0, got {text}")
    return value


def parse_nframes(text: str | int | None) -> int | None:
    if text is None or str(text).strip().lower() in {"", "0", "none"}:
        return None
    return _positive(int)(str(text))


LOAD_SCENARIOS = ("offline", "server", "camera", "sweep")


def parse_scenario(text: str) -> str:
    value = text.strip().lower()
    if value not in (*LOAD_SCENARIOS, "all"):
        raise ValueError(f"expected a load scenario: {', '.join(LOAD_SCENARIOS)} or all, got {text!r}")
    return value


def parse_fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(f"must be in (0, 1], got {text}")
    return value


def parse_workers(text: str | int | None) -> int | None:
    """'auto' (or '') -> None (sized to the machine); otherwise a count >= 0 (0 = no worker processes)."""
    if text is None or str(text).strip().lower() in {"", "auto"}:
        return None
    return _non_negative_int(str(text).strip())


def parse_size(text: str | int) -> int:
    """'2GiB', '2G', '512MiB', '1.5g', '100B' -> bytes (binary multiples); a bare number is MiB."""
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)([kmgt]?)(i?b)?", str(text).strip().lower().replace(" ", ""))
    if m is None:
        raise ValueError(f"'{text}' is not a size (use e.g. 2GiB or 512MiB)")
    number, prefix, suffix = m.groups()
    scale = 2 ** (10 * "_kmgt".index(prefix)) if prefix else (1 if suffix else 2**20)
    value = int(float(number) * scale)
    if value < 1:
        raise ValueError(f"'{text}' is not a positive size")
    return value


def _size_text(text: str) -> str:
    parse_size(text)  # validates; the text is kept (what results and the options table show)
    return str(text).strip()


def parse_decoder(text: str) -> str:
    key = str(text).strip().lower()
    if key not in ("pyav", "nvdec"):
        raise ValueError(f"unknown decoder '{text}' (use pyav or nvdec)")
    return key


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): the second of four shards (1-based, as CI systems and Slurm arrays count)."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like 2/4, got '{text}'") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def parse_threshold(text: str) -> dict[str, dict[str, float]]:
    """'int4_awq.max_mean_kl=0.02' -> {'int4_awq': {'max_mean_kl': 0.02}}."""
    try:
        lhs, value = str(text).split("=", 1)
        fmt, metric = lhs.rsplit(".", 1)
        return {fmt.strip(): {metric.strip(): float(value)}}
    except ValueError:
        raise ValueError(f"--threshold must look like FORMAT.METRIC=VALUE, got '{text}'") from None


def parse_confidence(text: str) -> float:
    value = float(text)
    if not 0.5 <= value < 1:
        raise ValueError(f"must be in [0.5, 1), got {text}")
    return value


def parse_inconclusive(text: str) -> str:
    value = str(text).strip().lower()
    if value not in ("pass", "fail"):
        raise ValueError(f"must be 'pass' or 'fail', got '{text}'")
    return value


def parse_cpu_dtype(text: str) -> str:
    from core.plan.device import CPU_DTYPES

    value = text.strip().lower()
    aliases = {"bf16": "bfloat16", "fp32": "float32"}
    value = aliases.get(value, value)
    if value not in CPU_DTYPES:
        raise ValueError(f"expected one of {', '.join(CPU_DTYPES)} (or bf16, fp32), got {text!r}")
    return value


def _resolution(text: str) -> str:
    if text:
        parse_resolution(text)  # validates; the string itself is kept (it is what results record)
    return text


@dataclass(frozen=True, kw_only=True)
class Option:
    """How one ``Settings`` field is offered to users."""

    help: str | Callable[[], str]
    """What it does; a function when the text lists what a table holds at the time (the backends of
    ``core.plan.catalog``): ``help_text()`` reads it."""
    flags: tuple[str, ...] = ()
    """Command-line flags (first is the canonical one); () = only pyproject/environment."""
    fronts: tuple[Front, ...] = ("pytest",)
    parse: Callable[[Any], Any] | None = None
    """String -> value, used for flags, environment variables and comma lists alike."""
    kind: Literal["value", "list", "flag", "merge"] = "value"
    """'list': repeatable, appends; 'flag': store_true; 'merge': repeatable, dicts merged."""
    engine: bool = False
    """Part of ``EngineOptions`` (changes how an engine loads or runs)."""
    metavar: str | None = None

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help


def option(default: Any = None, *, help: str | Callable[[], str], flags: tuple[str, ...] = (),
           fronts: tuple[Front, ...] = ("pytest",), parse: Callable[[Any], Any] | None = None,
           kind: Literal["value", "list", "flag", "merge"] = "value",
           engine: bool = False, metavar: str | None = None, factory: Callable[[], Any] | None = None) -> Any:
    meta = {"option": Option(help=help, flags=flags, fronts=fronts, parse=parse, kind=kind, engine=engine,
                             metavar=metavar)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


ENGINE_FRONTS: tuple[Front, ...] = ("pytest", "run", "quantize")
RUN_FRONTS: tuple[Front, ...] = ("pytest", "run")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything that selects cells and changes how they run; one frozen object per session."""

    # --- what runs -------------------------------------------------------------------------------
    models: list[str] = option(factory=lambda: ["tiny"], flags=("--model",), kind="list", metavar="M",
                               help="model for CPU cells: a built-in name or a local checkpoint dir "
                                    "(repeatable; default: tiny)")
    gpu_models: list[str] = option(factory=lambda: list(DEFAULT_GPU_MODELS), flags=("--gpu-model",), kind="list",
                                   metavar="M", help="model for GPU cells (repeatable; default: tiny and the "
                                                     "shape-only 3B/7B/Cosmos-7B)")
    backends: list[str] = option(factory=lambda: list(catalog.BACKENDS), flags=("--backend",), kind="list",
                                 metavar="B", help=lambda: f"{catalog.backend_names()} (repeatable; default: all)")
    formats: list[str] = option(factory=list, flags=("--format",), kind="list", metavar="F",
                                help="quantization format (repeatable; default: all; add +kv_fp8 for an FP8 KV cache)")
    tasks: list[str] = option(factory=lambda: ["anomaly"], flags=("--task",), kind="list", metavar="T",
                              help="anomaly or mcq (repeatable; default: anomaly)")
    model_tasks: dict[str, list[str]] = option(factory=dict, help="per-model task lists ([tool.vqbench.model_tasks])")
    shard: tuple[int, int] | None = option(None, flags=("--shard",), parse=parse_shard, metavar="I/N",
                                           help="run shard I of N (e.g. 2/4), split by engine so each loads once")
    unit: str = option("", flags=("--unit",), metavar="NAME",
                       help="run one work unit of the schedule (what a Ray task or a scheduler's job runs; "
                            "see --unit-workers)")
    unit_workers: int = option(1, flags=("--unit-workers",), parse=_positive(int), metavar="N",
                               help="the worker count the --unit names were planned for (default 1)")
    schedule_history: str = option("", flags=("--schedule-history",), metavar="FILE",
                                   help="results file of an earlier run: its measured load and cell times "
                                        "schedule -n N runs (default: estimates from model size and backend)")
    # --- videos and sampling ---------------------------------------------------------------------
    videos: str = option("", flags=("--videos",), fronts=RUN_FRONTS, metavar="PATH",
                         help="folder, CSV manifest, RoadBuddy JSON, or a built-in set: fixtures, heldout, "
                              "roadbuddy (default: the task's own set)")
    max_videos: int = option(0, flags=("--max-videos",), fronts=RUN_FRONTS, parse=_non_negative_int, metavar="N",
                             help="use only the first N videos (0 = all)")
    fps: float | None = option(4.0, flags=("--fps",), fronts=RUN_FRONTS, parse=parse_fps,
                               help="frames per second to sample (default 4)")
    nframes: int | None = option(None, flags=("--nframes",), fronts=RUN_FRONTS, parse=parse_nframes, metavar="N",
                                 help="sample exactly N frames instead of --fps")
    min_frames: int = option(4, flags=("--min-frames",), fronts=RUN_FRONTS, parse=_positive(int), metavar="N",
                             help="at least N frames (default 4)")
    max_frames: int = option(768, flags=("--max-frames",), fronts=RUN_FRONTS, parse=_positive(int), metavar="N",
                             help="at most N frames (default 768)")
    resolution: str = option("250x250", flags=("--resolution",), fronts=RUN_FRONTS, parse=_resolution,
                             metavar="WxH", help="frame size WIDTHxHEIGHT rounded to 28 px (default 250x250; "
                                                 "'' keeps the aspect ratio within the pixel budget)")
    max_new_tokens: int = option(7, flags=("--max-new-tokens", "--max-tokens"), fronts=RUN_FRONTS,
                                 parse=_positive(int), metavar="N", help="new tokens per answer (default 7)")
    # --- decoding (``vqbench run``; the suite decodes each clip once, outside its timed rounds) ------
    decoder: str = option("pyav", flags=("--decoder",), fronts=("run",), parse=parse_decoder, metavar="D",
                          help="video decoder: pyav (FFmpeg on the CPU, default) or nvdec (the GPU's decoder "
                               "through PyNvVideoCodec; falls back to pyav, saying why, where it cannot run)")
    decode_workers: int | None = option(None, flags=("--decode-workers",), fronts=("run",), parse=parse_workers,
                                        metavar="N", help="processes decoding upcoming videos while the engine "
                                                          "answers (default auto: every core but two for a GPU "
                                                          "engine, one for a CPU engine; 0 = decode in the main "
                                                          "process, one video at a time)")
    decode_memory: str = option("2GiB", flags=("--decode-memory",), fronts=("run",), parse=_size_text,
                                metavar="SIZE", help="memory for decoded videos waiting for the engine, which "
                                                     "bounds how many are decoded ahead (default 2GiB; a bare "
                                                     "number is MiB)")
    batch: int = option(1, flags=("--batch",), fronts=("run",), parse=_positive(int), metavar="N",
                        help="answer up to N decoded videos at once (vLLM keeps them all in flight and batches "
                             "them); the answers are untimed, and one batch's worth of videos is answered again "
                             "one at a time to give the sequential rate and the batch drift (default 1: one at "
                             "a time, each timed)")
    resume: bool = option(False, flags=("--resume",), kind="flag", fronts=("run",),
                          help="answer only the videos the results file has no answer for yet (same settings "
                               "required: a changed one is refused, naming it)")
    # --- timing ----------------------------------------------------------------------------------
    rounds: int = option(3, flags=("--rounds",), parse=_positive(int), metavar="N",
                         help="timed rounds per cell (default 3)")
    warmup_rounds: int = option(1, flags=("--warmup-rounds",), parse=_non_negative_int, metavar="N",
                                help="untimed warm-up rounds per cell (default 1)")
    # --- engines ---------------------------------------------------------------------------------
    attn_implementation: str = option("sdpa", flags=("--attn",), fronts=ENGINE_FRONTS, engine=True,
                                      help="HF attention: sdpa (default), eager, flash_attention_2")
    fast: bool = option(False, flags=("--fast",), kind="flag", fronts=RUN_FRONTS, engine=True,
                        help="HF: static KV cache + compiled decode step (GPU)")
    ignore_eos: bool = option(False, flags=("--ignore-eos",), kind="flag", fronts=RUN_FRONTS, engine=True,
                              help="always generate --max-new-tokens tokens (equal token counts)")
    calibration: str = option("captions", flags=("--calibration",), fronts=ENGINE_FRONTS, engine=True,
                              help="calibration set for calibrated formats: captions (text) or clips (videos)")
    calib_size: int = option(32, flags=("--calib-size",), fronts=ENGINE_FRONTS, parse=_positive(int), engine=True,
                             metavar="N", help="calibration samples (default 32)")
    tensor_parallel_size: int = option(1, flags=("--tp",), fronts=RUN_FRONTS, parse=_positive(int), engine=True,
                                       metavar="N", help="tensor-parallel size for vLLM/TensorRT-LLM")
    gpu_memory_utilization: float = option(0.85, flags=("--gpu-memory-utilization",), fronts=RUN_FRONTS,
                                           parse=parse_fraction, engine=True, metavar="X",
                                           help="vLLM: share of GPU memory the engine may take (default 0.85)")
    max_model_len: int = option(8192, flags=("--max-model-len",), fronts=RUN_FRONTS, parse=_positive(int),
                                engine=True, metavar="N", help="vLLM/TensorRT-LLM context length (default 8192)")
    cpu_dtype: str = option("auto", flags=("--cpu-dtype",), fronts=ENGINE_FRONTS, parse=parse_cpu_dtype, engine=True,
                            metavar="auto|bfloat16|float32",
                            help="dtype of CPU engines: auto (default) computes in bfloat16 where the CPU has bf16 "
                                 "arithmetic (AVX512-BF16, AMX) and in float32 where bf16 is emulated (AVX2: "
                                 "~100x slower); goldens and artifacts are kept apart per dtype (cpu, cpu_fp32)")
    allow_pickle: bool = option(False, flags=("--allow-pickle",), kind="flag", fronts=ENGINE_FRONTS, engine=True,
                                help="allow pickle (.bin) checkpoints (unsafe: pickle can run code)")
    trust_remote_code: bool = option(False, flags=("--trust-remote-code",), kind="flag", fronts=ENGINE_FRONTS,
                                     engine=True, help="run model code shipped with a checkpoint")
    # --- answers ---------------------------------------------------------------------------------
    reference_format: str = option("bf16", flags=("--reference-format",), metavar="F",
                                   help="format drift is measured against (default bf16)")
    reference_model: str = option("", flags=("--reference-model",), fronts=RUN_FRONTS, metavar="PATH",
                                  help="the model a pre-quantized --model checkpoint was quantized from (its bf16 "
                                       "parent: a local directory or a built-in name); its drift is measured "
                                       "against that model's --reference-format answers on the same "
                                       "backend and device")
    golden_tolerance: float = option(0.05, flags=("--golden-tolerance",), parse=_positive(float), metavar="X",
                                     help="nats a golden log-prob may move (default 0.05)")
    golden_tolerances: dict[str, float] = option(
        factory=dict, help="per-format golden tolerance overriding golden_tolerance ([tool.vqbench.golden_tolerances])")
    thresholds: dict[str, dict[str, float]] = option(
        factory=dict, flags=("--threshold",), kind="merge", parse=parse_threshold, metavar="FMT.METRIC=V",
        help="drift limit, e.g. int4_awq.max_mean_kl=0.02 (repeatable)")
    drift_confidence: float = option(0.95, flags=("--drift-confidence",), parse=parse_confidence, metavar="C",
                                     help="confidence of the drift gates: the paired McNemar gate's level and "
                                          "the power analysis behind 'inconclusive' (default 0.95)")
    drift_inconclusive: str = option("pass", flags=("--drift-inconclusive",), parse=parse_inconclusive,
                                     metavar="pass|fail", help="whether a drift verdict from a clip set too small "
                                                               "to see its limits passes (default) or fails")
    history: str = option("", flags=("--history",), metavar="FILE",
                          help="SQLite file of earlier runs' latencies: each timed cell is judged against the "
                               "rolling history on the same GPU class (warn 5%%, fail 10%% beyond the measured "
                               "noise; a clock change is reported as such) and this run is added")
    results: str = option("", flags=("--results",), fronts=RUN_FRONTS, metavar="FILE",
                          help="JSON-lines file every finished cell is appended to")

    # --- load (a real vLLM server under load: core.load) -------------------------------------------
    load: list[str] = option(factory=list, flags=("--load",), kind="list", parse=parse_scenario, metavar="S",
                             help="serve each vLLM engine from a real `vllm serve` process and run load scenario S on "
                                  "it: offline, server, camera, sweep or all (repeatable; default: "
                                  "none, and bench/test_load.py collects nothing)")
    load_requests: int = option(64, flags=("--load-requests",), parse=_positive(int), metavar="N",
                                help="requests per load point (offline, server, each sweep point; default 64; p99 "
                                     "needs >= 100, fewer are judged on the max, which is said)")
    load_confirm: int = option(300, flags=("--load-confirm",), parse=_non_negative_int, metavar="N",
                               help="sweep: send the largest rate found once more as N requests of fresh Poisson "
                                    "arrivals and say whether it is confirmed at 95%% (at most 1%% over the SLO; "
                                    "needs N >= 299 with none over; default 300, 0: no confirmation)")
    load_rate: float | None = option(None, flags=("--load-rate",), parse=_positive(float), metavar="R",
                                     help="Poisson arrival rate of the server scenario, requests/s (default: half "
                                          "the engine's offline videos/s)")
    load_slo: float = option(1.0, flags=("--load-slo",), parse=_positive(float), metavar="SECONDS",
                             help="SLO of the server scenario and the sweep: p99 end-to-end latency (default 1.0 s)")
    camera_period: float = option(2.0, flags=("--camera-period",), parse=_positive(float), metavar="SECONDS",
                                  help="camera scenario: each stream sends its next clip every SECONDS (default 2.0)")
    camera_clips: int = option(5, flags=("--camera-clips",), parse=_positive(int), metavar="N",
                               help="camera scenario: clips each stream sends per point (default 5)")
    load_timeout: float = option(300.0, flags=("--load-timeout",), parse=_positive(float), metavar="SECONDS",
                                 help="a load request with no complete answer after SECONDS fails (default 300)")
    server_start_timeout: float = option(900.0, flags=("--server-start-timeout",), parse=_positive(float),
                                         metavar="SECONDS", help="a vLLM server not healthy after SECONDS fails "
                                                                 "(default 900: a cold GPU engine compiles)")

    def load_scenarios(self) -> list[str]:
        """The --load scenarios in their canonical order ('all' is every one)."""
        chosen = set(LOAD_SCENARIOS) if "all" in self.load else set(self.load)
        return [s for s in LOAD_SCENARIOS if s in chosen]

    def tasks_for(self, model: str) -> list[str]:
        """The tasks a model's cells run (``--task`` given on the command line applies to all)."""
        return self.model_tasks.get(model, self.tasks)

    def golden_tolerance_for(self, fmt_name: str) -> float:
        """The golden log-prob tolerance of a format (its own, else the global one)."""
        return float(self.golden_tolerances.get(fmt_name, self.golden_tolerance))

    def decode_memory_bytes(self) -> int:
        return parse_size(self.decode_memory)

    def sampling(self) -> SamplingSpec:
        res = parse_resolution(self.resolution) if self.resolution else None
        return SamplingSpec(fps=None if self.nframes else self.fps, nframes=self.nframes,
                            min_frames=self.min_frames, max_frames=self.max_frames, resolution=res)

    def engine_options(self):
        """The ``EngineOptions`` part of these settings (one projection, no option re-declared)."""
        from core.inputs.requests import EngineOptions

        return EngineOptions(**{f.name: getattr(self, f.name) for f in options() if f.metadata["option"].engine})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def options(front: Front | None = None) -> Iterator:
    """The fields of ``Settings`` that are options (of ``front``, when given), in declaration order."""
    for f in fields(Settings):
        opt: Option | None = f.metadata.get("option")
        if opt is not None and (front is None or (opt.flags and front in opt.fronts)):
            yield f


def add_arguments(add: Callable[..., Any], front: Front) -> None:
    """Declare every option of ``front`` through ``add`` (pytest's ``group.addoption`` or argparse's
    ``add_argument``); values land in ``vqbench_<field>`` and are None when not given."""
    for f in options(front):
        opt: Option = f.metadata["option"]
        kwargs: dict[str, Any] = {"dest": f"vqbench_{f.name}", "help": opt.help_text(), "default": None}
        if opt.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            if opt.kind in ("list", "merge"):
                kwargs["action"] = "append"
            if opt.parse is not None:
                kwargs["type"] = _argparse_type(opt.parse, opt.flags[0])
            if opt.metavar:
                kwargs["metavar"] = opt.metavar
        add(*opt.flags, **kwargs)


def _argparse_type(parse: Callable[[str], Any], flag: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (TypeError, ValueError, ConfigError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = flag
    return convert


def given(namespace: Any, front: Front) -> dict[str, Any]:
    """The options of ``front`` the user gave (parsed values from pytest or argparse)."""
    out = {}
    for f in options(front):
        value = getattr(namespace, f"vqbench_{f.name}", None)
        if value is None:
            continue
        if f.metadata["option"].kind == "merge":
            value = _merge(value)
        out[f.name] = value
    return out


def _merge(dicts: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for d in dicts:
        for k, v in d.items():
            out.setdefault(k, {}).update(v)
    return out


def _coerce(f, value: Any) -> Any:
    """A value from pyproject (typed TOML) or the environment (a string) as the field's type."""
    opt: Option = f.metadata["option"]
    if f.name in {"model_tasks", "thresholds", "golden_tolerances"}:
        if not isinstance(value, dict):
            raise ConfigError(f"{f.name} must be a table")
        return value
    if opt.kind == "list":
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ConfigError(f"{f.name} must be a list or a comma-separated string")
    if opt.kind == "flag":
        return parse_bool(value)
    if isinstance(value, str) and opt.parse is not None:
        return opt.parse(value)
    if opt.parse is not None and not isinstance(value, (list, dict)):
        return opt.parse(str(value)) if not isinstance(value, (int, float)) else opt.parse(value)
    return value


def load_pyproject(root: Path) -> dict[str, Any]:
    """The ``[tool.vqbench]`` table of ``root/pyproject.toml`` ({} when absent)."""
    f = root / "pyproject.toml"
    if not f.is_file():
        return {}
    try:
        return tomllib.loads(f.read_text()).get("tool", {}).get("vqbench", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{f}: invalid TOML ({exc})") from None


def build(root: Path, overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from pyproject, then environment (``VQBENCH_<FIELD>``), then explicit overrides
    (already parsed values, e.g. from ``given``)."""
    by_name = {f.name: f for f in options()}
    values: dict[str, Any] = {}
    environ = env if env is not None else os.environ
    sources = (("pyproject", load_pyproject(root), True),
               ("environment", {k[8:].lower(): v for k, v in environ.items()
                                if k.startswith("VQBENCH_") and k[8:].lower() in by_name}, True),
               ("option", {k: v for k, v in (overrides or {}).items() if v is not None}, False))
    for source, data, raw in sources:
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in by_name:
                raise unknown_name(f"[tool.vqbench] key (from {source})", name, by_name)
            try:
                value = _coerce(by_name[name], value) if raw else value
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: bad value {value!r} for {name}: {exc}") from None
            if name == "thresholds" and isinstance(value, dict):
                value = _merge([values.get("thresholds", {}), value])
            values[name] = value
    if "tasks" in (overrides or {}):
        values["model_tasks"] = {}  # an explicit --task applies to every model
    settings = replace(Settings(), **values)
    settings.sampling()  # validate early, with the user's values in the message
    return settings
