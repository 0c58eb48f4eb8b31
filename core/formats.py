"""Quantization formats as data: what each one quantizes, the tool that makes it, the GPU it needs
and the inference backends that can run it. ``core.capability`` turns this into verdicts.

A format name may carry the ``+kv_fp8`` modifier (FP8 KV cache), e.g. ``int8_sq+kv_fp8``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from core.errors import unknown_name

LM_ONLY = "language model linear layers (vision tower, embeddings and lm_head stay high precision)"


@dataclass(frozen=True, kw_only=True)
class QuantFormat:
    """One quantization format and everything the suite needs to know to run or skip it."""

    name: str
    """Short name used in ids, options and goldens."""
    description: str
    tool: str
    """'none', 'modelopt', 'bitsandbytes' or 'torchao'."""
    weight_bits: int
    act_bits: int
    scope: str = LM_ONLY
    modelopt_config: str | None = None
    """Name of the ModelOpt preset in ``modelopt.torch.quantization`` (list-form ``quant_cfg``)."""
    real_kernels_min_sm: int | None = None
    """Lowest compute capability (e.g. 89) with real low-precision kernels; None = not applicable."""
    needs_cuda: bool = False
    """True when even emulation needs a CUDA GPU (e.g. NVFP4 fake-quant, bitsandbytes-free GPU ops)."""
    backends: dict[str, str] = field(default_factory=dict)
    """Backend name -> how it runs this format ('native', 'fake-quant', 'export:<quantization arg>')."""
    not_supported: dict[str, str] = field(default_factory=dict)
    """Backend name -> why it cannot run this format."""
    kv_cache: str | None = None
    """'fp8' for an FP8 KV cache, else None (the model's dtype)."""

    @property
    def id(self) -> str:
        return self.name + ("+kv_fp8" if self.kv_cache == "fp8" else "")

    @property
    def quantized(self) -> bool:
        return self.tool != "none"


_MODELOPT_VLLM_ONLY = (
    "vLLM's ModelOpt loader accepts only FP8 and NVFP4 checkpoints "
    "('ModelOpt currently only supports: [FP8, NVFP4]')"
)

FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in [
        QuantFormat(
            name="bf16", description="BF16 weights and activations (the reference)", tool="none",
            weight_bits=16, act_bits=16, scope="nothing is quantized",
            backends={"hf": "native", "vllm": "native", "trtllm": "native"},
        ),
        QuantFormat(
            name="fp8", description="W8A8 FP8 (E4M3), per-tensor scales (ModelOpt FP8_DEFAULT_CFG)",
            tool="modelopt", weight_bits=8, act_bits=8, modelopt_config="FP8_DEFAULT_CFG",
            real_kernels_min_sm=89,
            backends={"hf": "fake-quant", "vllm": "export:modelopt", "trtllm": "export:FP8"},
        ),
        QuantFormat(
            name="nvfp4", description="W4A4 NVFP4, FP8 scales per 16 values (ModelOpt NVFP4_DEFAULT_CFG)",
            tool="modelopt", weight_bits=4, act_bits=4, modelopt_config="NVFP4_DEFAULT_CFG",
            real_kernels_min_sm=100, needs_cuda=True,
            backends={"hf": "fake-quant", "vllm": "export:modelopt_fp4", "trtllm": "export:NVFP4"},
        ),
        QuantFormat(
            name="int8_sq", description="W8A8 INT8 SmoothQuant, per-channel weights (ModelOpt INT8_SMOOTHQUANT_CFG)",
            tool="modelopt", weight_bits=8, act_bits=8, modelopt_config="INT8_SMOOTHQUANT_CFG",
            real_kernels_min_sm=80,
            backends={"hf": "fake-quant", "trtllm": "export:W8A8_SQ_PER_CHANNEL"},
            not_supported={"vllm": _MODELOPT_VLLM_ONLY},
        ),
        QuantFormat(
            name="int4_awq", description="W4A16 INT4 AWQ, group size 128 (ModelOpt INT4_AWQ_CFG)",
            tool="modelopt", weight_bits=4, act_bits=16, modelopt_config="INT4_AWQ_CFG",
            real_kernels_min_sm=80,
            backends={"hf": "fake-quant", "trtllm": "export:W4A16_AWQ"},
            not_supported={"vllm": _MODELOPT_VLLM_ONLY},
        ),
        QuantFormat(
            name="w4a8_awq", description="W4A8 INT4 AWQ weights, FP8 activations (ModelOpt W4A8_AWQ_BETA_CFG)",
            tool="modelopt", weight_bits=4, act_bits=8, modelopt_config="W4A8_AWQ_BETA_CFG",
            real_kernels_min_sm=89,
            backends={"hf": "fake-quant", "trtllm": "export:W4A8_AWQ"},
            not_supported={"vllm": _MODELOPT_VLLM_ONLY},
        ),
        QuantFormat(
            name="bnb_int8", description="bitsandbytes LLM.int8() 8-bit weights (Linear8bitLt)",
            tool="bitsandbytes", weight_bits=8, act_bits=16,
            backends={"hf": "native"},
            not_supported={
                "vllm": "bitsandbytes is not among vLLM 0.32's quantization methods; run it through HF",
                "trtllm": "TensorRT-LLM has no bitsandbytes loader",
            },
        ),
        QuantFormat(
            name="bnb_nf4", description="bitsandbytes 4-bit NF4 weights (Linear4bit), bf16 compute",
            tool="bitsandbytes", weight_bits=4, act_bits=16,
            backends={"hf": "native"},
            not_supported={
                "vllm": "bitsandbytes is not among vLLM 0.32's quantization methods; run it through HF",
                "trtllm": "TensorRT-LLM has no bitsandbytes loader",
            },
        ),
        QuantFormat(
            name="fp8_dynamic", description="torchao FP8 dynamic activations + FP8 weights, per-row scales",
            tool="torchao", weight_bits=8, act_bits=8, real_kernels_min_sm=89, needs_cuda=True,
            backends={"hf": "native"},
            not_supported={"vllm": "torchao checkpoints are not loaded by this suite's vLLM path",
                           "trtllm": "TensorRT-LLM does not load torchao models"},
        ),
        QuantFormat(
            name="int8_weight_only", description="torchao INT8 weight-only, per-channel",
            tool="torchao", weight_bits=8, act_bits=16,
            backends={"hf": "native"},
            not_supported={"vllm": "torchao checkpoints are not loaded by this suite's vLLM path",
                           "trtllm": "TensorRT-LLM does not load torchao models"},
        ),
        QuantFormat(
            name="int4_weight_only", description="torchao INT4 weight-only, group size 128 (tinygemm kernels)",
            tool="torchao", weight_bits=4, act_bits=16, real_kernels_min_sm=80, needs_cuda=True,
            backends={"hf": "native"},
            not_supported={"vllm": "torchao checkpoints are not loaded by this suite's vLLM path",
                           "trtllm": "TensorRT-LLM does not load torchao models"},
        ),
    ]
}

KV_MODIFIER = "+kv_fp8"


def get_format(name: str) -> QuantFormat:
    """Look up a format by name (``int8_sq+kv_fp8`` adds an FP8 KV cache); "did you mean" on typos."""
    base, kv = (name[: -len(KV_MODIFIER)], "fp8") if name.endswith(KV_MODIFIER) else (name, None)
    if base not in FORMATS:
        known = list(FORMATS) + [f + KV_MODIFIER for f in FORMATS]
        raise unknown_name("format", name, known)
    fmt = FORMATS[base]
    return replace(fmt, kv_cache=kv) if kv else fmt


def all_formats() -> list[QuantFormat]:
    """Every base format in a stable order."""
    return list(FORMATS.values())
