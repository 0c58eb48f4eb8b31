"""One question answered in one place: can this cell run here, and if not, why.

``check`` judges an engine (model x backend x format on a device); ``task_verdict``, ``golden_verdict``
and ``drift_verdict`` judge what the suite does with it. They read the facts the backends, quantizers
and formats declare about themselves (``core.backends.BACKENDS``, ``core.quant.QUANTIZERS``,
``core.plan.formats.FORMATS``) and are the only producers of ``CapabilityVerdict``s: the suite turns a "no" into
a skip mark carrying the reason, ``vqbench run`` into an error, ``vqbench doctor`` into its table.

A "no" is *structural* when it holds on every device of that kind in every environment (the backend
has no CPU path, the format has no route on the backend, the format needs CUDA, a model the suite
never judges by design): the suite deselects those tests, counted per reason in one summary, and
keeps skips for what a user can change (a missing package or tool environment, no goldens recorded
yet, a GPU too old or too small, no GPU at all).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from core.plan.catalog import PACKAGES, backend_info, quantizer_info, resolve
from core.plan.device import DeviceInfo
from core.plan.formats import QuantFormat

if TYPE_CHECKING:
    from core.models.registry import ModelSpec

# import name, distribution name(s), how to install

Mode = Literal["native", "emulated", "fake-quant"]

BF16_MIN_SM = 80
"""bfloat16 tensor cores start with Ampere. Below it (T4, V100) torch emulates bf16 math and vLLM
refuses a bf16 model ('Bfloat16 is only supported on GPUs with compute capability of at least 8.0')."""
MEMORY_HEADROOM = 0.9
"""A model whose bf16 weights exceed this share of the GPU's memory is skipped before loading."""


@functools.cache
def installed(package: str) -> bool:
    """Whether ``package`` (a key of PACKAGES) can be imported, without importing it."""
    module = PACKAGES[package].module
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def version(package: str) -> str | None:
    """Installed version of ``package`` (a key of PACKAGES), or None."""
    for dist in PACKAGES[package].dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def install_hint(package: str) -> str:
    return PACKAGES[package].install


def missing_reason(packages: tuple[str, ...] | list[str], purpose: str) -> str | None:
    """None when all are installed, else the skip reason naming the first missing one."""
    for p in packages:
        if not installed(p):
            return f"{purpose} needs '{PACKAGES[p].dists[0]}', which is not installed: {PACKAGES[p].install}"
    return None


@dataclass(frozen=True)
class CapabilityVerdict:
    """Whether something can run (or be judged) here; when it can, how (``mode``) and any note."""

    runnable: bool
    reason: str = ""
    mode: Mode = "native"
    """native: the format's own kernels; emulated: the format's numbers on slower kernels (bf16 on a
    GPU without bf16 tensor cores, FP4 emulated before Blackwell); fake-quant: ModelOpt emulation in
    bf16 (accuracy yes, speed and memory no)."""

    structural: bool = False
    """A "no" that holds on every device of this kind, whatever is installed: the combination can never
    run (or be judged) there. The suite deselects such tests instead of skipping them; a "no" that
    depends on the environment (a package, a tool environment, goldens, the GPU's sm or memory) is not
    structural and stays a skip with its reason."""

    def __bool__(self) -> bool:
        return self.runnable

    @property
    def real_kernels(self) -> bool:
        """Whether a latency measured under this verdict is the format's own speed."""
        return self.runnable and self.mode == "native"


def no(reason: str) -> CapabilityVerdict:
    """A "no" that depends on this environment (what is installed, which GPU): a skip with the reason."""
    return CapabilityVerdict(False, reason)


def impossible(reason: str) -> CapabilityVerdict:
    """A structural "no": true on every device of the kind judged, in every environment."""
    return CapabilityVerdict(False, reason, structural=True)


def check(backend: str, fmt: QuantFormat, device: DeviceInfo, *, spec: ModelSpec | None = None,
          check_packages: bool = True, tool_environment: bool = True) -> CapabilityVerdict:
    """Can ``backend`` run ``fmt`` (for ``spec``, when given) on ``device``? Reasons name the fix or
    the hardware needed. ``tool_environment=False`` leaves out whether the quantizing tool's own
    environment is ready: what an engine can serve once a checkpoint exists. Structural reasons
    (``structural_verdict``) come before those of this environment, so a combination that can never
    run gets the same verdict everywhere."""
    info = backend_info(backend)
    if spec is not None and spec.kind == "unknown":
        return no(spec.description)
    never = structural_verdict(backend, fmt, device.kind, spec=spec)
    if never is not None:
        return never
    if spec is not None:
        gate = _memory_gate(spec, device)
        if gate is not None:
            return gate
    prequantized = spec is not None and spec.is_prequantized
    routes, _ = fmt.routes(prequantized=prequantized or fmt.checkpoint_only)
    route = routes[backend]
    tool = quantizer_info(spec.tool_for(fmt) if spec is not None else fmt.tool)
    sm = device.sm
    slow_bf16 = device.kind == "cuda" and sm is not None and sm < BF16_MIN_SM
    if slow_bf16 and info.bf16_tensor_cores:
        return no(f"{backend} needs bfloat16 support (sm_{BF16_MIN_SM}+, Ampere or newer) for this suite's bf16 "
                  f"models; found sm_{sm} ({device.name}); the hf backend still runs there, with bf16 emulated")
    if check_packages:
        why = missing_reason(info.packages, f"the {backend} backend")
        why = why or missing_reason(tool.packages, f"format {fmt.id}")
        why = why or missing_reason(route.packages, f"{fmt.id} on {backend}")
        if not why and tool.environment and tool_environment:
            why = resolve(f"{tool.environment}:unavailable")(spec)
        if not why and device.kind == "cpu" and route.cpu_kernels and info.cpu_kernels:
            why = resolve(info.cpu_kernels)(route.cpu_kernels, fmt.id)
        if why:
            return no(why)
    bf16_note = (f"sm_{sm} ({device.name}) has no bfloat16 tensor cores: bf16 math is emulated, so latency is "
                 "not representative of the model" if slow_bf16 else "")
    if device.kind == "cpu":
        bf16_note = cpu_bf16_note(device)
    if route.decompressed:
        return CapabilityVerdict(True, "; ".join(filter(None, [route.decompressed, bf16_note])), mode="emulated")
    min_sm = fmt.real_kernels_min_sm
    emulated = route.cpu_emulation if device.kind == "cpu" else ""
    if route.how != "fake-quant" and min_sm and sm is not None and sm < min_sm:
        if route.below_min_sm != "emulated":
            return no(f"{fmt.id} on {backend} needs sm_{min_sm}+ kernels; found sm_{sm} ({device.name})")
        emulated = f"{fmt.id} needs sm_{min_sm}+ for its tensor cores; found sm_{sm}: {route.emulation}"
    if route.how == "fake-quant":
        note = f"{fmt.tool} fake-quant: numerics of the format, bf16 storage and speed"
        if min_sm and (sm is None or sm < min_sm):
            note += f"; real kernels need sm_{min_sm}+, found {'CPU' if sm is None else f'sm_{sm}'}"
        return CapabilityVerdict(True, "; ".join(filter(None, [note, bf16_note])), mode="fake-quant")
    if emulated or (bf16_note and (device.kind == "cuda" or not fmt.quantized)):
        # on a CPU only the bf16 format itself is emulated; a quantized format keeps its own kernels
        # (its activations in the CPU's compute dtype, which the note says)
        return CapabilityVerdict(True, "; ".join(filter(None, [emulated, bf16_note])), mode="emulated")
    return CapabilityVerdict(True, bf16_note)


def structural_verdict(backend: str, fmt: QuantFormat, device_kind: str, *,
                       spec: ModelSpec | None = None) -> CapabilityVerdict | None:
    """The structural "no" for ``backend`` x ``fmt`` (x ``spec``) on a device of ``device_kind``
    ("cpu" or "cuda"), or None: only facts the backends, formats, quantizers and the model declare,
    never what is installed or which GPU this is, so the answer is the same in every environment."""
    info = backend_info(backend)
    if spec is not None and spec.kind != "unknown":
        if device_kind == "cpu" and spec.needs_gpu:
            return impossible(f"{spec.name} is shape-only: its random weights are created on a GPU; run it with "
                              "-m gpu")
        mismatch = _prequantized_gate(spec, fmt)
        if mismatch is not None:
            return mismatch
    prequantized = spec is not None and spec.is_prequantized
    routes, reasons = fmt.routes(prequantized=prequantized or fmt.checkpoint_only)
    what = f"{fmt.id} checkpoints" if prequantized or fmt.checkpoint_only else fmt.id
    if backend in reasons:
        return impossible(f"{backend} cannot run {what}: {reasons[backend]}")
    route = routes.get(backend)
    if route is None:
        return impossible(f"{backend} has no path for {what}")
    # A checkpoint quantized elsewhere: the tool that made it never runs here (no packages, no recipes).
    tool = quantizer_info(spec.tool_for(fmt) if spec is not None else fmt.tool)
    if spec is not None and spec.kind != "unknown":
        if tool.families and spec.family not in tool.families:
            return impossible(f"{fmt.tool}'s recipes here are written for {', '.join(tool.families)} (SmoothQuant "
                              f"mappings, sequential targets, ignore patterns); {spec.name} is {spec.family}")
        if spec.kind == "shape" and route.shape:
            return impossible(f"{backend} cannot run {fmt.id} for shape-only {spec.name}: {route.shape}")
    if device_kind == "cpu":
        if info.cpu:
            return impossible(info.cpu)
        if route.cpu:
            return impossible(f"{route.cpu}; {fmt.id} cannot run there")
        if fmt.kv_cache and info.cpu_kv_fp8:
            return impossible(info.cpu_kv_fp8)
        if fmt.needs_cuda:
            how = f"{fmt.tool} fake-quant" if route.how == "fake-quant" else fmt.tool
            return impossible(f"{fmt.id} needs a CUDA GPU even for emulation ({how} fails with 'CUDA is not "
                              "available' on CPU)")
    return None


def cpu_bf16_note(device: DeviceInfo) -> str:
    """What a CPU without bf16 arithmetic does to a cell ('' where bf16 is native)."""
    if device.kind != "cpu" or device.bf16_native is not False:
        return ""
    where = f"bf16 is emulated on this CPU ({device.isa}: {device.bf16_why}), ~100x slower than fp32"
    if device.dtype == "float32":
        return f"{where}: computed in float32 instead (--cpu-dtype auto; its answers are kept as class cpu_fp32)"
    return f"{where}: --cpu-dtype {device.dtype} keeps it (slow; --cpu-dtype auto computes in float32)"


def _prequantized_gate(spec: ModelSpec, fmt: QuantFormat) -> CapabilityVerdict | None:
    """A pre-quantized checkpoint runs in its own format only; a checkpoint-only format needs one."""
    detected = spec.detected_format
    if detected is not None and fmt.id != detected:
        return impossible(f"{spec.name} is a checkpoint already quantized as {detected} "
                          f"({spec.prequantized.source}): it runs as {detected} only, never quantized again")
    if detected is None and fmt.checkpoint_only:
        return impossible(f"{fmt.id} is read from checkpoints quantized elsewhere (vqbench does not make it): pass "
                          f"--model PATH of such a checkpoint; {spec.name} is not one")
    return None


def _memory_gate(spec: ModelSpec, device: DeviceInfo) -> CapabilityVerdict | None:
    """A model too big for this GPU (another GPU may hold it: not structural)."""
    if device.kind == "cuda" and spec.weight_gib_bf16() > (device.memory_gib or 0) * MEMORY_HEADROOM:
        return no(f"{spec.name} needs ~{spec.weight_gib_bf16():.0f} GiB in bf16; {device.describe()} has too little "
                  "memory")
    return None


def no_device(reason: str) -> CapabilityVerdict:
    """No device of the kind a cell needs (e.g. GPU cells on a machine without one)."""
    return no(f"no CUDA GPU: {reason}")


def task_verdict(task: str, clips) -> CapabilityVerdict:
    """Whether ``task`` can be asked of ``clips``: multiple choice needs questions with options."""
    if task == "mcq" and not all(c.question and c.options for c in clips):
        return no("the mcq task needs questions with options (a RoadBuddy-style JSON); these videos have none: "
                  "pass --task anomaly, or a JSON via --videos")
    return CapabilityVerdict(True)


def golden_verdict(spec: ModelSpec, device_class: str, *, recorded_classes: set[str],
                   updating: bool) -> CapabilityVerdict:
    """Whether an engine's answers are checked against goldens here."""
    if spec.kind == "shape":  # by design, on every GPU
        return impossible(f"{spec.name} is shape-only: random weights give near-tied labels that GPU kernels flip "
                          "run to run, so a golden would test noise; goldens cover tiny, tiny-trained and real "
                          "checkpoints")
    if not updating and device_class not in recorded_classes:
        return no(f"no goldens recorded for device class {device_class} yet (goldens are per GPU class); record "
                  "them once with `pytest bench -m gpu --snapshot-update`")
    return CapabilityVerdict(True)


def drift_verdict(spec: ModelSpec, fmt_id: str, *, reference_format: str, reference: CapabilityVerdict | None,
                  reference_id: str, reference_model: str = "") -> CapabilityVerdict:
    """Whether drift against the reference format (for a pre-quantized checkpoint: the reference
    model's engine in that format) is judged for this engine."""
    if spec.is_prequantized and not reference_model:
        return no(f"{spec.name} is a checkpoint quantized elsewhere ({fmt_id}): its drift is measured against the "
                  f"model it was quantized from; name that with --reference-model PATH (its {reference_format} "
                  "parent)")
    if fmt_id == reference_format:
        if spec.kind == "shape":  # by design, on every GPU
            return impossible(f"{spec.name} is shape-only: random weights give near-tied labels, so a run-to-run "
                              f"check of its {reference_format} answers would test noise (its cells are still timed)")
        return CapabilityVerdict(True)  # the reference gets its run-to-run check
    if spec.random_weights:  # by design, on every device
        return impossible(f"{spec.name} has random weights (near-tied labels): its answers carry no meaning, so "
                          f"drift against {reference_format} is not judged; tiny-trained and real checkpoints are")
    if reference is None:
        if spec.is_prequantized:
            return no(f"reference {reference_id} cannot run: not in the matrix (its backend or device is not "
                      "planned)")
        return no(f"reference {reference_id} cannot run: not in the matrix (add --format {reference_format})")
    if not reference.runnable:  # as structural as the reference's own verdict
        return CapabilityVerdict(False, f"reference {reference_id} cannot run: {reference.reason}",
                       structural=reference.structural)
    return CapabilityVerdict(True)
