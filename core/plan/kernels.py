"""Which linear kernels an engine really ran, observed at load, and whether they are the format's own.

A capability verdict (``core.plan.capability``) *declares* how a format runs: "native" means its own
kernels, from the tables in ``core.plan.formats``. This module *observes* it, once per engine load, and
``check`` compares the two: an engine that fell back to another kernel (a dequantizing or
weight-only one) is recorded as emulated, naming the kernel it saw.

What is observed (``details['kernels']`` of the load record):

* vLLM (``observe_vllm``): the quantization method the engine resolved (``model_config.quantization``)
  and, for every linear layer, the kernel class it picked. Two sources, both asked without unsafe
  settings: the worker's model, through ``LLM.collective_rpc('get_model_inspection')`` (a method name,
  not a pickled function, so no ``VLLM_ALLOW_INSECURE_SERIALIZATION``), which names each linear
  layer's class and quantization scheme (``quant=CompressedTensorsW8A8Int8``); and the engine's log,
  where vLLM says which kernel class it chose for a scheme. The log lines come from the worker
  process, so ``EngineLog`` hands the engine a logging config (``VLLM_LOGGING_CONFIG_PATH``: vLLM's
  own default console handler, plus a file handler on the kernel-selection loggers) and reads the
  file back. The lines (vLLM 0.32): ``Selected <Kernel> for <Scheme>`` (int8 and FP8 scaled-mm,
  ``kernels/linear/__init__.py``), ``Using <Kernel> for mixed-precision linear`` / ``... for
  CompressedTensorsWNA16`` / ``... for NVFP4 GEMM`` (mixed-precision and FP4 selection), and, at debug
  level, ``CPU unquantized GEMM dispatch: using oneDNN onednn_mm`` (``layers/utils.py``, the CPU's
  unquantized GEMM). Without the log (a user's own ``VLLM_LOGGING_CONFIG_PATH``, or
  ``VLLM_CONFIGURE_LOGGING=0``) only the schemes are known, and the record says so.
* HF (``observe_hf``): the module class and weight dtype (or tensor subclass) of every linear layer
  of the language model, e.g. ``{"Linear8bitLt/int8": 4}``: in transformers the module is the kernel.
* TensorRT-LLM reports nothing comparable through its LLM API: its records say so, and its
  matrix cells stay "unverified".

Which observed kernels count as a format's own: ``FAMILIES`` (per family, per device kind), named
by a route's ``Route.kernels``. The vLLM lists are vLLM 0.32's kernel tables
(``_POSSIBLE_INT8_KERNELS``, ``_POSSIBLE_FP8_KERNELS``, ``_POSSIBLE_FP8_BLOCK_KERNELS``,
``_POSSIBLE_KERNELS`` and ``_POSSIBLE_NVFP4_KERNELS`` in ``vllm/model_executor/kernels/linear/__init__.py``)
minus what those tables hold as fallbacks: weight-only kernels for a W8A8 or W4A4 format (Marlin
FP8/FP4, the ``*W4A16*`` NVFP4 kernels, Humming FP8, which vLLM lists among its W8A16 kernels and
allows from sm_75, below FP8 tensor cores), the CPU's W8A16 FP8 kernels
(``CPUFp8PerTensorScaledMMLinearKernel``, ``CPUFp8BlockScaledMMKernel``), ``Emulation*`` kernels, and
on a CPU the ``torch._scaled_mm`` FP8 kernels (no FP8 matrix units there; on a GPU they are cuBLASLt's
FP8 GEMM and count). A kernel the table does not know is never guessed at: the observation is then
inconclusive and the mode stays as declared (``mode_observed: false``).
"""

from __future__ import annotations

import atexit
import fnmatch
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Family:
    """The kernels that are one kind of format's own, per device kind (``cpu``, ``cuda``)."""

    what: str
    own: dict[str, tuple[str, ...]]
    """Device kind -> ``fnmatch`` patterns of observed kernel names."""
    quantized: bool = True


_VLLM_UNQUANTIZED_CPU = ("onednn_mm", "weight_packed_linear", "zentorch_linear_unary", "torch.nn.functional.linear")
"""vLLM's CPU GEMMs for unquantized layers (``dispatch_cpu_unquantized_gemm``: oneDNN, sgl-kernel's packed
GEMM for small shapes, zentorch on AMD Zen builds, torch's ``F.linear`` where oneDNN is absent): all
compute in the model's dtype."""
VLLM_UNQUANTIZED = "UnquantizedLinearMethod"
"""The kernel name of an unquantized linear layer when no dispatch line names one (GPU: torch's
``F.linear``, i.e. cuBLAS; vLLM logs nothing for it)."""

FAMILIES: dict[str, Family] = {
    "vllm:unquantized": Family(
        "unquantized GEMM in the model's dtype",
        {"cpu": _VLLM_UNQUANTIZED_CPU + (VLLM_UNQUANTIZED,), "cuda": (VLLM_UNQUANTIZED,)}, quantized=False),
    "vllm:int8_w8a8": Family(
        "INT8 W8A8 scaled-mm kernels",
        {"cpu": ("CPUInt8ScaledMMLinearKernel", "ZentorchInt8ScaledMMLinearKernel"),
         "cuda": ("CutlassInt8ScaledMMLinearKernel", "TritonInt8ScaledMMLinearKernel",
                  "HummingInt8ScaledMMLinearKernel", "AiterInt8ScaledMMLinearKernel")}),
    "vllm:fp8_w8a8": Family(
        "FP8 W8A8 kernels (FP8 activations and weights)",
        {"cpu": ("CPUFP8W8A8ScaledMMLinearKernel", "CPUFp8W8A8BlockScaledMMKernel"),
         "cuda": ("FlashInferFP8ScaledMMLinearKernel", "CutlassFP8ScaledMMLinearKernel",
                  "B12xTensorFP8ScaledMMLinearKernel", "PerTensorTorchFP8ScaledMMLinearKernel",
                  "ChannelWiseTorchFP8ScaledMMLinearKernel", "RowWiseTorchFP8ScaledMMLinearKernel",
                  "BlockWiseTorchFP8ScaledMMLinearKernel", "TritonFP8ScaledMMLinearKernel",
                  "FlashInferFp8DeepGEMMDynamicBlockScaledKernel", "DeepGemmFp8BlockScaledMMKernel",
                  "CutlassFp8BlockScaledMMKernel", "B12xFp8BlockScaledMMKernel", "TritonFp8BlockScaledMMKernel",
                  "Aiter*Fp8*Kernel", "ROCmFP8ScaledMMLinearKernel")}),
    "vllm:w4a16": Family(
        "INT4 weight-only (mixed-precision) kernels",
        {"cpu": ("CPUWNA16LinearKernel", "Dynamic4bitLinearKernel", "ZentorchWNA16LinearKernel"),
         "cuda": ("MarlinLinearKernel", "MacheteLinearKernel", "ConchLinearKernel", "ExllamaLinearKernel",
                  "TritonW4A16LinearKernel", "HummingLinearKernel", "RDNA*W4A16LinearKernel")}),
    "vllm:fp4_w4a4": Family(
        "NVFP4 W4A4 kernels (FP4 activations and weights)",
        {"cpu": (), "cuda": ("FlashInferCuteDslNvFp4LinearKernel", "FlashInferCutlassNvFp4LinearKernel",
                             "FlashInferB12xNvFp4LinearKernel", "CutlassNvFp4LinearKernel",
                             "FlashInferTrtllmNvFp4LinearKernel", "FlashInferCudnnNvFp4LinearKernel",
                             "FbgemmNvFp4LinearKernel", "B12xNvFp4LinearKernel", "TorchNvFp4LinearKernel",
                             "HummingNvFp4LinearKernel")}),
    # HF: the module class is the kernel (bitsandbytes' layers, torchao's tensor subclasses on nn.Linear).
    "hf:linear": Family("torch nn.Linear in the model's dtype",
                        {"cpu": ("Linear/*float*",), "cuda": ("Linear/*float*",)}, quantized=False),
    "hf:bnb_int8": Family("bitsandbytes Linear8bitLt", {"cpu": ("Linear8bitLt/*",), "cuda": ("Linear8bitLt/*",)}),
    "hf:bnb_4bit": Family("bitsandbytes Linear4bit", {"cpu": ("Linear4bit/*",), "cuda": ("Linear4bit/*",)}),
    "hf:torchao_int8": Family("torchao INT8 weight tensors on nn.Linear",
                              {"cpu": ("Linear/Int8*", "Linear/AffineQuantizedTensor"),
                               "cuda": ("Linear/Int8*", "Linear/AffineQuantizedTensor")}),
    "hf:torchao_fp8": Family("torchao FP8 weight tensors on nn.Linear",
                             {"cpu": (), "cuda": ("Linear/Float8*", "Linear/AffineQuantizedTensor")}),
    "hf:torchao_int4": Family("torchao INT4 weight tensors on nn.Linear",
                              {"cpu": (), "cuda": ("Linear/Int4*", "Linear/AffineQuantizedTensor")}),
}
"""Kernel family -> the observed kernels that are its own (see the module docstring for the sources)."""

UNQUANTIZED = {"vllm": "vllm:unquantized", "hf": "hf:linear"}
"""Per backend, the family of a layer the format left unquantized."""


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


# ---------------------------------------------------------------------------------------------- vLLM


_SELECTED = re.compile(r"(?:Selected|Using) (\w+Kernel) for (.+?)\.?\s*$")
_CPU_UNQUANTIZED = re.compile(r"CPU unquantized GEMM dispatch: using (?:oneDNN |sgl-kernel )?([\w.]+)")
KERNEL_LOGGERS = {"vllm.model_executor.kernels": "INFO", "vllm.model_executor.layers.quantization": "INFO",
                  "vllm.model_executor.layers.utils": "DEBUG"}
"""The vLLM loggers whose lines name kernel choices, and the level that shows them (the CPU's
unquantized GEMM dispatch logs at debug level)."""


def parse_log(lines: list[str]) -> dict[str, Any]:
    """Kernel choices in vLLM log lines: ``{"by_scheme": {scheme: [kernel]}, "general": [kernel],
    "unquantized": [kernel], "lines": [the lines used]}``. ``general`` holds kernels named for a
    kind of layer rather than a scheme (``mixed-precision linear``, ``NVFP4 GEMM``)."""
    by_scheme: dict[str, list[str]] = {}
    general: list[str] = []
    unquantized: list[str] = []
    used: list[str] = []
    for line in lines:
        m = _CPU_UNQUANTIZED.search(line)
        if m:
            unquantized.append(m.group(1))
            used.append(line[m.start():].strip())
            continue
        m = _SELECTED.search(line)
        if not m:
            continue
        kernel, target = m.group(1), m.group(2).strip()
        used.append(line[m.start():].strip())
        if re.fullmatch(r"[A-Z]\w+", target) and not target.endswith("GEMM"):
            by_scheme.setdefault(target, []).append(kernel)
        else:
            general.append(kernel)
    dedup = lambda xs: list(dict.fromkeys(xs))  # noqa: E731
    return {"by_scheme": {k: dedup(v) for k, v in by_scheme.items()}, "general": dedup(general),
            "unquantized": dedup(unquantized), "lines": dedup(used)}


_TREE_LINE = re.compile(r"^(?P<indent> *)(?:\((?P<name>[^)]*)\): )?(?:(?P<count>\d+) x )?(?P<cls>[A-Za-z_]\w*)"
                        r"(?P<rest>.*)$")
_QUANT = re.compile(r"\bquant=(\w+)")


def parse_inspection(text: str) -> list[tuple[str, str, str | None, int]]:
    """The linear layers of vLLM's model inspection (``LLM.__repr__``, ``get_model_inspection``):
    ``(path, class, quantization scheme or None, count)``, where ``count`` is how many layers the
    line stands for (vLLM folds identical numbered children: ``(0-27): 28 x Qwen2DecoderLayer(``)."""
    out: list[tuple[str, str, str | None, int]] = []
    stack: list[tuple[int, str, int]] = []  # (indent, name, multiplier) of the open parents
    for raw in text.splitlines():
        if not raw.strip() or raw.strip() == ")":
            continue
        m = _TREE_LINE.match(raw)
        if not m:
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = m.group("name") or ""
        mult = (stack[-1][2] if stack else 1) * int(m.group("count") or 1)
        path = ".".join([s[1] for s in stack if s[1]] + ([name] if name else []))
        cls, rest = m.group("cls"), m.group("rest")
        if rest.rstrip().endswith("("):  # a module with children: its lines follow, indented
            stack.append((indent, name, mult))
        elif cls.endswith("Linear"):
            q = _QUANT.search(rest)
            out.append((path, cls, q.group(1) if q else None, mult))
    return out


def is_language_model(path: str) -> bool:
    """Whether a module path of vLLM's model is in the language model (``language_model.*``; a bare
    decoder: ``model.layers.*``), not the vision tower or the projector."""
    parts = path.split(".")
    return "language_model" in parts or parts[:2] == ["model", "layers"]


def vllm_kernels(inspection: str | None, log: dict[str, Any] | None) -> dict[str, Any]:
    """The kernels record of a vLLM engine from its model inspection and its parsed log: per linear
    layer the scheme (inspection) and the kernel the log names for it; counts for the language model
    (``linear``) and the rest (``other_linear``: vision tower, projector)."""
    log = log or {"by_scheme": {}, "general": [], "unquantized": [], "lines": []}
    unquantized = "+".join(log["unquantized"]) or VLLM_UNQUANTIZED
    general = log["general"]
    layers = parse_inspection(inspection) if inspection else []
    lm: Counter[str] = Counter()
    other: Counter[str] = Counter()
    schemes: Counter[str] = Counter()
    for path, _cls, scheme, n in layers:
        if scheme is None:
            kernel = unquantized
        elif log["by_scheme"].get(scheme):
            kernel = "+".join(log["by_scheme"][scheme])
        elif len(general) == 1:
            kernel = general[0]
        else:
            kernel = scheme  # the scheme's kernel was not logged: named by the scheme, judged unknown
        (lm if is_language_model(path) else other)[kernel] += n
        if is_language_model(path):
            schemes[scheme or "unquantized"] += n
    if not layers:  # no inspection: the kernels the log names, without counts
        for k in [k for ks in log["by_scheme"].values() for k in ks] + general:
            lm[k] += 0
    return {"linear": dict(sorted(lm.items())), "other_linear": dict(sorted(other.items())),
            "schemes": dict(sorted(schemes.items())), "log": log["lines"]}


class EngineLog:
    """Captures vLLM's kernel-selection log lines from the engine's processes.

    vLLM's worker logs which kernel it picked; that process is a child, so its logging is set up from
    ``VLLM_LOGGING_CONFIG_PATH`` (vLLM >= 0.32 also hands the parent's ``LoggingConfig`` on, which
    reads the same variable). Inside ``with EngineLog() as log:`` around ``vllm.LLM(...)`` the variable
    points at a config that is vLLM's own default (the console looks the same) plus a file handler
    on ``KERNEL_LOGGERS``; the file is one per process (``read`` takes what this engine added).
    A user's own config (``VLLM_LOGGING_CONFIG_PATH`` set, or ``VLLM_CONFIGURE_LOGGING=0``) is left
    alone: ``why`` then says the log is not captured."""

    _dir: Path | None = None

    def __init__(self) -> None:
        self.why = ""
        self.path: Path | None = None
        self.offset = 0
        self._saved: str | None = None
        self._active = False

    @classmethod
    def _directory(cls) -> Path:
        if cls._dir is None:
            cls._dir = Path(tempfile.mkdtemp(prefix=f"vqbench-vllm-log-{os.getpid()}-"))
            atexit.register(shutil.rmtree, cls._dir, True)
        return cls._dir

    def __enter__(self) -> EngineLog:
        if os.environ.get("VLLM_LOGGING_CONFIG_PATH"):
            self.why = "VLLM_LOGGING_CONFIG_PATH is the user's: the engine's kernel log lines are not captured"
            return self
        if os.environ.get("VLLM_CONFIGURE_LOGGING", "1") == "0":
            self.why = "VLLM_CONFIGURE_LOGGING=0: vLLM's logging is off, its kernel lines are not captured"
            return self
        try:
            from vllm.logger import DEFAULT_LOGGING_CONFIG
        except ImportError as exc:
            self.why = f"vllm.logger has no DEFAULT_LOGGING_CONFIG ({exc})"
            return self
        directory = self._directory()
        self.path = directory / "engine.log"
        config_path = directory / "logging.json"
        if not config_path.exists():
            config_path.write_text(json.dumps(logging_config(DEFAULT_LOGGING_CONFIG, self.path)))
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self._saved = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
        os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_path)
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            self._active = False
            if self._saved is None:
                os.environ.pop("VLLM_LOGGING_CONFIG_PATH", None)
            else:
                os.environ["VLLM_LOGGING_CONFIG_PATH"] = self._saved

    def read(self, pids: set[int] | None = None) -> list[str]:
        """The lines this engine's processes (``pids``; any, when None) wrote since ``__enter__``."""
        if self.path is None or not self.path.exists():
            return []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.offset)
            lines = f.read().splitlines()
        if pids is None:
            return lines
        return [ln for ln in lines if ln.split(" ", 1)[0].isdigit() and int(ln.split(" ", 1)[0]) in pids]


def logging_config(default: dict[str, Any], path: Path) -> dict[str, Any]:
    """vLLM's default logging config (``vllm.logger.DEFAULT_LOGGING_CONFIG``: the console stays as it
    is) plus a file handler at ``path`` on the kernel-selection loggers, each line led by its pid."""
    import copy

    cfg = copy.deepcopy(default)
    cfg.setdefault("formatters", {})["vqbench_kernels"] = {"format": "%(process)d %(name)s %(levelname)s %(message)s"}
    cfg.setdefault("handlers", {})["vqbench_kernels"] = {"class": "logging.FileHandler", "filename": str(path),
                                                         "level": "DEBUG", "formatter": "vqbench_kernels"}
    loggers = cfg.setdefault("loggers", {})
    for name, level in KERNEL_LOGGERS.items():
        # propagate: the lines still reach vLLM's console handler, which filters them at its own level
        loggers[name] = {"handlers": ["vqbench_kernels"], "level": level, "propagate": True}
    return cfg


INSPECTION_TIMEOUT_S = 120.0
"""How long the worker may take to describe its model (a dead engine must not hang the load)."""


def observe_vllm(llm, log: EngineLog, *, pids: set[int]) -> dict[str, Any]:
    """``details['kernels']`` of a started vLLM engine (see the module docstring)."""
    config = getattr(getattr(llm, "llm_engine", None), "vllm_config", None)
    model_config = getattr(config, "model_config", None)
    quant = getattr(model_config, "quantization", None)
    notes: list[str] = []
    try:
        inspection = llm.collective_rpc("get_model_inspection", timeout=INSPECTION_TIMEOUT_S)[0]
    except Exception as exc:  # noqa: BLE001 - an older vLLM: the log alone
        inspection = None
        notes.append(f"the worker's model could not be inspected ({type(exc).__name__}: {exc})")
    lines = log.read(pids)
    if log.why:
        notes.append(log.why)
    elif not lines:
        notes.append("the engine logged no kernel choice")
    record = vllm_kernels(inspection, parse_log(lines) if lines else None)
    sources = [s for s, ok in (("worker model", inspection is not None), ("engine log", bool(lines))) if ok]
    dtype = getattr(model_config, "dtype", None)
    record = {"quantization": str(quant) if quant is not None else None,
              "dtype": str(dtype).replace("torch.", "") if dtype is not None else None, **record,
              "source": " + ".join(sources) or "none"}
    if notes:
        record["note"] = "; ".join(notes)
    return record


# ------------------------------------------------------------------------------------------------ HF


def linear_kernels(module) -> dict[str, int]:
    """Linear layers of ``module`` by class and weight: ``Linear8bitLt/int8``, ``Linear/bfloat16``, or,
    for a tensor subclass (torchao), its class: ``Linear/Int8Tensor``."""
    counts: Counter[str] = Counter()
    for _name, m in module.named_modules():
        w = getattr(m, "weight", None)
        cls = type(m).__name__
        if w is None or not hasattr(w, "dtype") or getattr(w, "dim", lambda: 0)() != 2 or "linear" not in cls.lower():
            continue
        kind = type(w).__name__ if hasattr(w, "__tensor_flatten__") else str(w.dtype).replace("torch.", "")
        counts[f"{cls}/{kind}"] += 1
    return dict(sorted(counts.items()))


def observe_hf(model) -> dict[str, Any]:
    """``details['kernels']`` of an HF model: its language model's linear layers (module class and
    weight), the rest's (vision tower, projector, lm_head), and its config's quantization method."""
    qc = getattr(getattr(model, "config", None), "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    record: dict[str, Any] = {"quantization": str(getattr(method, "value", method)) if method is not None else None}
    everything = Counter(linear_kernels(model))
    lm = getattr(getattr(model, "model", model), "language_model", None)
    if lm is None:
        record.update(linear=dict(everything), other_linear={}, source="model modules",
                      note=f"no language_model inside {type(model).__name__}: every linear layer counted")
        return record
    lm_counts = Counter(linear_kernels(lm))
    record.update(linear=dict(sorted(lm_counts.items())), other_linear=dict(sorted((everything - lm_counts).items())),
                  source="model modules")
    return record


# --------------------------------------------------------------------------------------------- check


def check(observed: dict[str, Any] | None, *, family: str, backend: str, device_kind: str,
          fmt_id: str) -> dict[str, Any]:
    """Compare what ran (``observed``: a kernels record) with what ``family`` says is the format's own.

    Returns ``{"mode": "native" | "emulated" | None, "note": ..., "own": {...}, "other": {...}}``:
    native when every language-model linear layer ran one of the format's own kernels (a quantized
    format's layers may also run unquantized, as long as some ran its own), emulated when one ran a
    kernel the table names as not the format's, or when a quantized format ran no quantized kernel at
    all; None (inconclusive) when nothing was observed or a kernel is unknown to the table."""
    fam = FAMILIES.get(family)
    if fam is None:
        return {"mode": None, "note": f"no kernel table for {fmt_id} on {backend}"}
    linear = (observed or {}).get("linear") or {}
    if not linear:
        why = (observed or {}).get("note") or "no linear layer observed"
        return {"mode": None, "note": f"{fmt_id} on {backend}: kernels not observed ({why})"}
    own_patterns = fam.own.get(device_kind, ())
    plain = FAMILIES[UNQUANTIZED[backend]].own.get(device_kind, ()) if backend in UNQUANTIZED else ()
    own: dict[str, int] = {}
    unquantized: dict[str, int] = {}
    foreign: dict[str, int] = {}
    unknown: dict[str, int] = {}
    for kernel, n in linear.items():
        parts = kernel.split("+")
        if all(_matches(p, own_patterns) for p in parts):
            own[kernel] = n
        elif fam.quantized and all(_matches(p, plain) for p in parts):
            unquantized[kernel] = n
        elif all(_known(p, backend) for p in parts):
            foreign[kernel] = n
        else:
            unknown[kernel] = n
    result: dict[str, Any] = {"own": own, "other": {**unquantized, **foreign, **unknown}}
    what = f"{fmt_id}'s own kernels ({fam.what})"
    if foreign:
        seen = ", ".join(f"{k} ({n} layers)" if n else k for k, n in foreign.items())
        result.update(mode="emulated", note=f"observed {seen} in the language model: not {what}")
    elif unknown:
        result.update(mode=None, note=f"kernel of {', '.join(unknown)} not observed (or unknown to the kernel table)")
    elif own:
        seen = ", ".join(f"{k} ({n} layers)" if n else k for k, n in own.items())
        result.update(mode="native", note=f"observed {seen}: {what}")
    else:
        seen = ", ".join(unquantized)
        result.update(mode="emulated",
                      note=f"no quantized kernel observed: the language model ran unquantized ({seen}), not {what}")
    return result


def _known(kernel: str, backend: str) -> bool:
    """Whether ``kernel`` is a kernel name the table can judge (a vLLM kernel class, a CPU GEMM, an HF
    module), as opposed to a scheme whose kernel was not logged."""
    if backend == "vllm":
        return kernel.endswith("Kernel") or kernel in _VLLM_UNQUANTIZED_CPU or kernel == VLLM_UNQUANTIZED
    return "/" in kernel


def family_of(fmt, backend: str) -> str | None:
    """The kernel family of ``fmt`` on ``backend`` (its route's ``kernels``), None if it has none."""
    route = fmt.backends.get(backend)
    return getattr(route, "kernels", None) or None


def observe_mode(observed: dict[str, Any] | None, *, fmt, backend: str, device_kind: str) -> dict[str, Any]:
    """``check`` for a format on a backend (its route names the family)."""
    family = family_of(fmt, backend)
    if family is None:
        return {"mode": None, "note": f"no kernel table for {fmt.id} on {backend}"}
    return check(observed, family=family, backend=backend, device_kind=device_kind, fmt_id=fmt.id)


def record_mode(declared_mode: str, declared_note: str, observed: dict[str, Any] | None) -> dict[str, Any]:
    """The ``mode`` / ``mode_note`` / ``mode_observed`` fields of a cell record: the verdict's, unless an
    observation (``observe_mode``'s result, in the load record) shows a declared-native format ran
    another kernel, in which case the mode becomes "emulated" and the note names the kernel.
    ``mode_observed`` is true when an observation confirms the recorded mode."""
    seen = (observed or {}).get("mode")
    note = (observed or {}).get("note", "")
    if declared_mode == "native" and seen == "emulated":
        return {"mode": "emulated", "mode_note": "; ".join(filter(None, [note, declared_note])), "mode_observed": True}
    return {"mode": declared_mode, "mode_note": declared_note,
            "mode_observed": seen is not None and seen == declared_mode}

