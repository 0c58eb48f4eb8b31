"""Quantization formats as data: what each one quantizes, the tool and recipe that make it, the GPU its
real kernels need, and how each inference backend runs it (``Route``). ``core.plan.capability`` turns
this into verdicts; quantizers (``core.quant``) read ``tool`` and ``recipe``; no code branches on a
format's name.

A format name may carry modifiers: ``+kv_fp8`` (FP8 KV cache), e.g. ``int8_sq+kv_fp8``, and, for
formats of a tool whose ``QuantizerInfo.vision`` is set (ModelOpt), ``+vit`` (the vision tower quantized
too, calibrated on video clips, like seed 001's "VLM-calibrated" FP8 checkpoint), e.g. ``fp8+vit``; the
backends that cannot run it say why in ``BackendInfo.quantized_vision``. Both: ``fp8+vit+kv_fp8``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from core.base.errors import ConfigError, unknown_name
from core.plan.catalog import BACKENDS, quantizer_info

LM_ONLY = "language model linear layers (vision tower, embeddings and lm_head stay high precision)"

Tool = Literal["none", "modelopt", "bitsandbytes", "torchao", "llmcompressor", "prequantized"]
"""``prequantized``: formats read from checkpoints another tool made (AutoAWQ, GPTQModel, transformers'
FP8); vqbench never makes them, it loads them as they are (``core.models.prequantized``)."""


@dataclass(frozen=True, kw_only=True)
class Route:
    """How one backend runs a format."""

    how: Literal["native", "fake-quant", "checkpoint"]
    """'native': the backend quantizes at load and runs the format's own kernels; 'fake-quant': the
    format's numerics emulated in bf16 (accuracy yes, speed and memory no); 'checkpoint': the backend
    loads a quantized checkpoint that the format's tool writes (an export)."""
    quantization: str | None = None
    """For checkpoints: what the engine is told (vLLM ``quantization=``, TensorRT-LLM ``quant_algo``)."""
    cpu: str = ""
    """Why this route cannot run on a CPU ('' = it can)."""
    below_min_sm: Literal["skip", "emulated"] = "skip"
    """On a GPU older than the format's ``real_kernels_min_sm``: skip, or run emulated kernels."""
    emulation: str = ""
    """What runs instead on such a GPU (said in the verdict), e.g. vLLM's weight-only FP4 Marlin."""
    cpu_emulation: str = ""
    """On a CPU: what runs instead of the format's own kernels ('' = its own kernels, or it cannot
    run there: see ``cpu``); the verdict's mode is then 'emulated'."""
    decompressed: str = ""
    """Set when this route unpacks the checkpoint to bf16 and emulates the format on every device
    (never its kernels, so mode 'emulated' everywhere and bf16 storage): how, said in the verdict."""
    shape: str = ""
    """Why this route cannot run a shape-only model (real dimensions, no weights); '' = it can."""
    packages: tuple[str, ...] = ()
    """Keys of ``core.plan.catalog.PACKAGES`` this route needs besides its backend's and tool's."""
    cpu_kernels: tuple[str, ...] = ()
    """On a CPU: the operators the backend's CPU kernel library must register for this route (asked of
    the installed build by the backend's ``cpu_kernels`` probe; a build for another ISA may lack them)."""
    kernels: str = ""
    """The kernel family (a key of ``core.plan.kernels.FAMILIES``) whose kernels are this format's own on this
    backend: what an engine load observes is checked against it, so a "native" verdict whose engine ran
    another kernel is recorded as emulated. '' = no table (nothing judged: fake-quant and decompressing
    routes, loaders whose kernels are not listed)."""
    auto: bool = False
    """For checkpoints: the engine reads the method from the checkpoint's config (vLLM's auto-detection,
    which picks the fastest kernel family for the GPU, e.g. AWQ -> awq_marlin on sm_80+); ``quantization``
    is then what it detects, recorded, not passed."""


@dataclass(frozen=True, kw_only=True)
class QuantFormat:
    """One quantization format and everything the suite needs to know to run or skip it."""

    name: str
    """Short name used in ids, options and goldens."""
    description: str
    tool: Tool
    """The quantizer that makes it (a key of ``core.quant.QUANTIZERS``)."""
    recipe: str = ""
    """The tool's own name for the recipe: a ModelOpt preset (``FP8_DEFAULT_CFG``), a bitsandbytes
    mode, a torchao config (keys of each quantizer's recipe table)."""
    weight_bits: int
    act_bits: int
    scope: str = LM_ONLY
    real_kernels_min_sm: int | None = None
    """Lowest compute capability (e.g. 89) with real low-precision kernels; None = not applicable."""
    needs_cuda: bool = False
    """True when even emulation needs a CUDA GPU (e.g. NVFP4 fake-quant, torchao's CUDA kernels)."""
    backends: dict[str, Route] = field(default_factory=dict)
    """Backend name -> how it runs this format."""
    not_supported: dict[str, str] = field(default_factory=dict)
    """Backend name -> why it cannot run this format."""
    kv_cache: str | None = None
    """'fp8' for an FP8 KV cache, else None (the model's dtype)."""
    lm_bytes_per_weight: float = 2.0
    """Bytes per language-model linear weight as the format stores it (packed 4-bit with scales ~0.53)."""
    vision: bool = False
    """True when the vision tower's linear layers are quantized too (the ``+vit`` modifier)."""
    prequantized_not_supported: dict[str, str] = field(default_factory=dict)
    """Backend -> why it cannot load a checkpoint already quantized in this format (beyond ``not_supported``)."""

    @property
    def id(self) -> str:
        return self.name + (VIT_MODIFIER if self.vision else "") + ("+kv_fp8" if self.kv_cache == "fp8" else "")

    @property
    def quantized(self) -> bool:
        return self.tool != "none"

    @property
    def checkpoint_only(self) -> bool:
        """Read from checkpoints other tools made, never made here (``tool == 'prequantized'``)."""
        return self.tool == "prequantized"

    def routes(self, *, prequantized: bool) -> tuple[dict[str, Route], dict[str, str]]:
        """(routes, reasons) of each backend: for a model quantized here, ``backends`` and
        ``not_supported``; for a checkpoint already quantized in this format, the routes that load it as
        it is ('checkpoint', and 'native' loaders that read its quantization_config), since a fake-quant
        route quantizes a bf16 model and there is none to quantize."""
        if not prequantized:
            return self.backends, self.not_supported
        routes = {b: r for b, r in self.backends.items()
                  if r.how != "fake-quant" and b not in self.prequantized_not_supported}
        reasons = {**self.not_supported, **self.prequantized_not_supported}
        for b in self.backends:
            if b not in routes and b not in reasons:
                reasons[b] = (f"{b} runs {self.name} as {self.tool} fake-quant of a bf16 model; a checkpoint already "
                              f"quantized has no bf16 weights to fake-quantize")
        return routes, reasons

    def stored_bytes_per_weight(self, backend: str) -> float:
        """Bytes per LM linear weight on ``backend``: fake-quant and decompressing routes store bf16."""
        route = self.backends.get(backend)
        bf16 = route is not None and (route.how == "fake-quant" or bool(route.decompressed))
        return 2.0 if bf16 else self.lm_bytes_per_weight


_MODELOPT_VLLM_ONLY = (
    "vLLM's ModelOpt loader accepts only FP8 and NVFP4 checkpoints "
    "('ModelOpt currently only supports: [FP8, NVFP4]'); vLLM serves INT8 and INT4 as compressed-tensors "
    "checkpoints: ct_w8a8, ct_w4a16"
)
_NO_MODELOPT_ON_VLLM_CPU = ("vLLM's CPU backend has no kernels for ModelOpt FP8/FP4 checkpoints "
                            "(it runs compressed-tensors ones: ct_w8a8, ct_w4a16, ct_fp8_dynamic)")
_NO_MODELOPT_ON_HF = {"hf": "transformers has no loader for ModelOpt exports (no 'modelopt' quantization method; "
                            "measured with transformers 5.17 and 5.23): a ModelOpt checkpoint runs on vllm or trtllm"}
_BNB = {"vllm": "bitsandbytes is not among vLLM 0.32's quantization methods; run it through HF",
        "trtllm": "TensorRT-LLM has no bitsandbytes loader"}
_TORCHAO = {"vllm": "torchao checkpoints are not loaded by this suite's vLLM path",
            "trtllm": "TensorRT-LLM does not load torchao models"}

_CT_TRTLLM = ("this suite's TensorRT-LLM path loads ModelOpt exports (hf_quant_config.json's quant_algo); "
              "compressed-tensors checkpoints are not wired to it, and TensorRT-LLM cannot be installed on this "
              "project's machines to verify a loader for them")
_CT_NO_SHAPE_ON_HF = ("transformers loads a compressed-tensors checkpoint with its weights and a shape-only model "
                      "has none (vLLM runs it with dummy quantized weights)")


_PREQ_TRTLLM = ("this suite's TensorRT-LLM path loads ModelOpt layouts only (hf_quant_config.json's quant_algo); "
                "other checkpoints are not wired to it")
_PREQ_SCOPE = ("what the checkpoint's own quantization_config quantizes (its ignore / modules_to_not_convert "
               "lists; usually the language model's linear layers)")
_PREQ_NO_SHAPE = "a checkpoint quantized elsewhere has its own weights; shape-only models have none"


def _ct_hf(*, activations: bool) -> Route:
    """transformers' compressed-tensors integration: the same checkpoint, decompressed (never compressed
    kernels: ``run_compressed`` is gone in transformers 5.x; measured with compressed-tensors 0.20)."""
    acts = ", input activations fake-quantized on every forward" if activations else ""
    return Route(how="checkpoint", quantization="compressed-tensors", packages=("compressed_tensors",),
                 shape=_CT_NO_SHAPE_ON_HF,
                 decompressed=("transformers runs compressed-tensors checkpoints decompressed: weights unpacked "
                               f"to bf16{acts}; the format's numerics at bf16 speed and memory"))


def _ct_vllm(**kw) -> Route:
    """vLLM loads compressed-tensors checkpoints with its own kernels (``quantization='compressed-tensors'``)."""
    return Route(how="checkpoint", quantization="compressed-tensors", **kw)


FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in [
        QuantFormat(
            name="bf16", description="BF16 weights and activations (the reference)", tool="none",
            weight_bits=16, act_bits=16, scope="nothing is quantized",
            backends={"hf": Route(how="native", kernels="hf:linear"),
                      "vllm": Route(how="native", kernels="vllm:unquantized"),
                      "trtllm": Route(how="native")},
        ),
        QuantFormat(
            name="fp8", description="W8A8 FP8 (E4M3), per-tensor scales (ModelOpt FP8_DEFAULT_CFG)",
            tool="modelopt", recipe="FP8_DEFAULT_CFG", weight_bits=8, act_bits=8, real_kernels_min_sm=89,
            lm_bytes_per_weight=1.0,
            backends={"hf": Route(how="fake-quant"),
                      "vllm": Route(how="checkpoint", quantization="modelopt", cpu=_NO_MODELOPT_ON_VLLM_CPU,
                                    kernels="vllm:fp8_w8a8"),
                      "trtllm": Route(how="checkpoint", quantization="FP8")},
            prequantized_not_supported=dict(_NO_MODELOPT_ON_HF),
        ),
        QuantFormat(
            name="nvfp4", description="W4A4 NVFP4, FP8 scales per 16 values (ModelOpt NVFP4_DEFAULT_CFG)",
            tool="modelopt", recipe="NVFP4_DEFAULT_CFG", weight_bits=4, act_bits=4, real_kernels_min_sm=100,
            needs_cuda=True, lm_bytes_per_weight=0.5625,
            backends={"hf": Route(how="fake-quant"),
                      "vllm": Route(how="checkpoint", quantization="modelopt_fp4", cpu=_NO_MODELOPT_ON_VLLM_CPU,
                                    below_min_sm="emulated", emulation="vLLM emulates it (weight-only FP4 Marlin)",
                                    kernels="vllm:fp4_w4a4"),
                      "trtllm": Route(how="checkpoint", quantization="NVFP4")},
            prequantized_not_supported=dict(_NO_MODELOPT_ON_HF),
        ),
        QuantFormat(
            name="int8_sq", description="W8A8 INT8 SmoothQuant, per-channel weights (ModelOpt INT8_SMOOTHQUANT_CFG)",
            tool="modelopt", recipe="INT8_SMOOTHQUANT_CFG", weight_bits=8, act_bits=8, real_kernels_min_sm=80,
            lm_bytes_per_weight=1.0,
            backends={"hf": Route(how="fake-quant"),
                      "trtllm": Route(how="checkpoint", quantization="W8A8_SQ_PER_CHANNEL")},
            not_supported={"vllm": _MODELOPT_VLLM_ONLY}, prequantized_not_supported=dict(_NO_MODELOPT_ON_HF),
        ),
        QuantFormat(
            name="int4_awq", description="W4A16 INT4 AWQ, group size 128 (ModelOpt INT4_AWQ_CFG)",
            tool="modelopt", recipe="INT4_AWQ_CFG", weight_bits=4, act_bits=16, real_kernels_min_sm=80,
            lm_bytes_per_weight=0.53,
            backends={"hf": Route(how="fake-quant"),
                      "trtllm": Route(how="checkpoint", quantization="W4A16_AWQ")},
            not_supported={"vllm": _MODELOPT_VLLM_ONLY}, prequantized_not_supported=dict(_NO_MODELOPT_ON_HF),
        ),
        QuantFormat(
            name="w4a8_awq", description="W4A8 INT4 AWQ weights, FP8 activations (ModelOpt W4A8_AWQ_BETA_CFG)",
            tool="modelopt", recipe="W4A8_AWQ_BETA_CFG", weight_bits=4, act_bits=8, real_kernels_min_sm=89,
            lm_bytes_per_weight=0.53,
            backends={"hf": Route(how="fake-quant"),
                      "trtllm": Route(how="checkpoint", quantization="W4A8_AWQ")},
            not_supported={"vllm": _MODELOPT_VLLM_ONLY}, prequantized_not_supported=dict(_NO_MODELOPT_ON_HF),
        ),
        QuantFormat(
            name="bnb_int8", description="bitsandbytes LLM.int8() 8-bit weights (Linear8bitLt)",
            tool="bitsandbytes", recipe="int8", weight_bits=8, act_bits=16, lm_bytes_per_weight=1.0,
            backends={"hf": Route(how="native", kernels="hf:bnb_int8")}, not_supported=dict(_BNB),
        ),
        QuantFormat(
            name="bnb_nf4", description="bitsandbytes 4-bit NF4 weights (Linear4bit), bf16 compute",
            tool="bitsandbytes", recipe="nf4", weight_bits=4, act_bits=16, lm_bytes_per_weight=0.53,
            backends={"hf": Route(how="native", kernels="hf:bnb_4bit")}, not_supported=dict(_BNB),
        ),
        QuantFormat(
            name="fp8_dynamic", description="torchao FP8 dynamic activations + FP8 weights, per-row scales",
            tool="torchao", recipe="float8_dynamic_per_row", weight_bits=8, act_bits=8, real_kernels_min_sm=89,
            needs_cuda=True, lm_bytes_per_weight=1.0,
            backends={"hf": Route(how="native", kernels="hf:torchao_fp8")}, not_supported=dict(_TORCHAO),
        ),
        QuantFormat(
            name="int8_weight_only", description="torchao INT8 weight-only, per-channel",
            tool="torchao", recipe="int8_weight_only", weight_bits=8, act_bits=16, lm_bytes_per_weight=1.0,
            backends={"hf": Route(how="native", kernels="hf:torchao_int8")}, not_supported=dict(_TORCHAO),
        ),
        QuantFormat(
            name="int4_weight_only", description="torchao INT4 weight-only, group size 128 (tinygemm kernels)",
            tool="torchao", recipe="int4_weight_only_tinygemm", weight_bits=4, act_bits=16, real_kernels_min_sm=80,
            needs_cuda=True, lm_bytes_per_weight=0.53,
            backends={"hf": Route(how="native", kernels="hf:torchao_int4")}, not_supported=dict(_TORCHAO),
        ),
        # llm-compressor (vLLM's own toolchain) writes compressed-tensors checkpoints; min SMs are vLLM's
        # scheme minimums (compressed_tensors/schemes/*.get_min_capability, vLLM 0.32).
        QuantFormat(
            name="ct_w8a8", description="W8A8 INT8 compressed-tensors: SmoothQuant + GPTQ, per-channel weights, "
                                        "dynamic per-token activations (llm-compressor)",
            tool="llmcompressor", recipe="W8A8_SQ_GPTQ", weight_bits=8, act_bits=8, real_kernels_min_sm=75,
            lm_bytes_per_weight=1.0,
            backends={"hf": _ct_hf(activations=True),
                      "vllm": _ct_vllm(cpu_kernels=("create_onednn_scaled_mm_handler", "onednn_scaled_mm"),
                                       kernels="vllm:int8_w8a8")},
            not_supported={"trtllm": _CT_TRTLLM},
        ),
        QuantFormat(
            name="ct_w4a16", description="W4A16 INT4 compressed-tensors: GPTQ, group size 128 (llm-compressor)",
            tool="llmcompressor", recipe="W4A16_GPTQ", weight_bits=4, act_bits=16, real_kernels_min_sm=75,
            lm_bytes_per_weight=0.5 + 2 / 128,
            backends={"hf": _ct_hf(activations=False),
                      "vllm": _ct_vllm(cpu_kernels=("cpu_gemm_wna16",), kernels="vllm:w4a16")},
            not_supported={"trtllm": _CT_TRTLLM},
        ),
        QuantFormat(
            name="ct_fp8_dynamic", description="W8A8 FP8 compressed-tensors: per-channel weights, dynamic per-token "
                                               "activations, no calibration (llm-compressor FP8_DYNAMIC)",
            tool="llmcompressor", recipe="FP8_DYNAMIC", weight_bits=8, act_bits=8, real_kernels_min_sm=89,
            lm_bytes_per_weight=1.0,
            backends={"hf": _ct_hf(activations=True),
                      "vllm": _ct_vllm(below_min_sm="emulated", kernels="vllm:fp8_w8a8",
                                       emulation="vLLM runs it weight-only (FP8 Marlin W8A16: activations stay bf16)",
                                       cpu_emulation="vLLM 0.32's own CPU FP8 kernel needs AMX-FP8 (Intel Diamond "
                                                     "Rapids); other CPUs get ChannelWiseTorchFP8ScaledMMLinearKernel "
                                                     "(torch._scaled_mm): FP8 weights in memory, no FP8 matrix units")},
            not_supported={"trtllm": _CT_TRTLLM},
        ),
        QuantFormat(
            name="ct_nvfp4", description="W4A4 NVFP4 compressed-tensors: FP4 weights and activations, FP8 scales per "
                                         "16 values, calibrated global scales (llm-compressor NVFP4)",
            tool="llmcompressor", recipe="NVFP4", weight_bits=4, act_bits=4, real_kernels_min_sm=100,
            lm_bytes_per_weight=0.5625,
            backends={"hf": _ct_hf(activations=True),
                      "vllm": _ct_vllm(cpu="vLLM 0.32's NVFP4 kernel table has CUDA and ROCm entries only ('Failed "
                                           "to find a kernel that can implement the NVFP4 linear layer')",
                                       below_min_sm="emulated", kernels="vllm:fp4_w4a4",
                                       emulation="vLLM runs it weight-only (FP4 Marlin: FP4 weights, bf16 "
                                                 "activations)")},
            not_supported={"trtllm": _CT_TRTLLM},
        ),
        # Checkpoints quantized elsewhere (read from their quantization_config; core.models.prequantized).
        # Minimum SMs are vLLM 0.32's (AWQConfig 75, GPTQConfig 60, Fp8Config 89 for FP8 tensor cores; its
        # Marlin variants, picked by auto-detection on sm_80+, run AWQ/GPTQ faster and FP8 weight-only).
        QuantFormat(
            name="awq", description="W4A16 INT4 AWQ checkpoint in AutoAWQ's layout (quant_method 'awq', GEMM "
                                    "packing, zero points, group size 128), quantized elsewhere",
            tool="prequantized", scope=_PREQ_SCOPE, weight_bits=4, act_bits=16, real_kernels_min_sm=75,
            lm_bytes_per_weight=0.5 + 4 / 128,
            backends={"hf": Route(how="checkpoint", quantization="awq", packages=("gptqmodel", "accelerate"),
                                  shape=_PREQ_NO_SHAPE),
                      "vllm": Route(how="checkpoint", quantization="awq", auto=True, kernels="vllm:w4a16")},
            not_supported={"trtllm": _PREQ_TRTLLM},
        ),
        QuantFormat(
            name="gptq", description="W4A16 INT4 GPTQ checkpoint (quant_method 'gptq': AutoGPTQ/GPTQModel layout), "
                                     "quantized elsewhere",
            tool="prequantized", scope=_PREQ_SCOPE, weight_bits=4, act_bits=16, real_kernels_min_sm=60,
            lm_bytes_per_weight=0.5 + 4 / 128,
            backends={"hf": Route(how="checkpoint", quantization="gptq",
                                  packages=("optimum", "gptqmodel", "accelerate"), shape=_PREQ_NO_SHAPE),
                      "vllm": Route(how="checkpoint", quantization="gptq", auto=True, kernels="vllm:w4a16")},
            not_supported={"trtllm": _PREQ_TRTLLM},
        ),
        QuantFormat(
            name="fp8_block", description="W8A8 FP8 checkpoint with 128x128 block weight scales and dynamic "
                                          "activations (quant_method 'fp8': transformers' FineGrainedFP8, the "
                                          "DeepSeek/Qwen FP8 layout), quantized elsewhere",
            tool="prequantized", scope=_PREQ_SCOPE, weight_bits=8, act_bits=8, real_kernels_min_sm=89,
            lm_bytes_per_weight=1.0,
            backends={"hf": Route(how="checkpoint", quantization="fp8", packages=("accelerate",), shape=_PREQ_NO_SHAPE,
                                  below_min_sm="emulated",
                                  emulation="transformers dequantizes FP8 checkpoints to bf16 below sm_89",
                                  cpu_emulation="transformers dequantizes FP8 checkpoints to bf16 on a CPU "
                                                "(FineGrainedFP8HfQuantizer: 'default to dequantizing')"),
                      "vllm": Route(how="checkpoint", quantization="fp8", kernels="vllm:fp8_w8a8",
                                    cpu="vLLM 0.32's CPU backend has no kernels for FP8 checkpoints (it runs "
                                        "compressed-tensors W8A8, AWQ and GPTQ there)",
                                    below_min_sm="emulated",
                                    emulation="vLLM runs it weight-only (FP8 Marlin W8A16: activations stay bf16)")},
            not_supported={"trtllm": _PREQ_TRTLLM},
        ),
    ]
}

KV_MODIFIER = "+kv_fp8"
VIT_MODIFIER = "+vit"


def split_modifiers(name: str) -> tuple[str, bool, bool]:
    """``fp8+vit+kv_fp8`` -> (``fp8``, vision, kv_fp8), modifiers in either order."""
    vision = kv = False
    while True:
        if name.endswith(KV_MODIFIER) and not kv:
            name, kv = name[: -len(KV_MODIFIER)], True
        elif name.endswith(VIT_MODIFIER) and not vision:
            name, vision = name[: -len(VIT_MODIFIER)], True
        else:
            return name, vision, kv


def get_format(name: str) -> QuantFormat:
    """Look up a format by name (``int8_sq+kv_fp8`` adds an FP8 KV cache, ``fp8+vit`` quantizes the
    vision tower too); "did you mean" on typos."""
    base, vision, kv = split_modifiers(name)
    with_vision = [f for f, q in FORMATS.items() if quantizer_info(q.tool).vision]
    if base not in FORMATS:
        known = list(FORMATS) + [f + KV_MODIFIER for f in FORMATS] + [f + VIT_MODIFIER for f in with_vision]
        raise unknown_name("format", name, known)
    fmt = FORMATS[base]
    if vision:
        if base not in with_vision:
            tools = sorted({FORMATS[f].tool for f in with_vision})
            raise ConfigError(f"format '{name}': the {VIT_MODIFIER} modifier (vision tower quantized too) exists for "
                              f"formats of {' and '.join(tools)} only ({', '.join(with_vision)})")
        # a backend that runs the base format (or refuses it) and cannot run a quantized vision tower says why
        why_not = {b: info.quantized_vision for b, info in BACKENDS.items()
                   if info.quantized_vision and (b in fmt.backends or b in fmt.not_supported)}
        fmt = replace(fmt, vision=True, scope="language model and vision tower linear layers (lm_head stays high "
                                               "precision); calibrated on video clips",
                      backends={b: r for b, r in fmt.backends.items() if b not in why_not},
                      not_supported={**fmt.not_supported, **why_not})
    return replace(fmt, kv_cache="fp8") if kv else fmt


def all_formats() -> list[QuantFormat]:
    """Every base format in a stable order."""
    return list(FORMATS.values())
