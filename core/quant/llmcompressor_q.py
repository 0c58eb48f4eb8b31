"""llm-compressor (vLLM's own quantization toolchain) as a quantizer: compressed-tensors checkpoints
written by its ``oneshot`` with its recipes, in an environment of its own.

Why its own environment: llmcompressor 0.14.0.1 pins transformers <=5.17 (and torch <=2.14.0,
compressed-tensors ==0.19.0), while this project needs transformers >=5.18 (5.3-5.17 truncate
Qwen2.5-VL's video positions, so calibrating there would see other activations than the benchmark
runs). ``core.tools.envs.llmcompressor`` builds that environment from the project's own torch and
transformers with llmcompressor installed over them without its pins (measured to work for every
recipe below). ``export`` runs ``core.quant.llmcompressor_worker`` with that environment's python
(``$VQBENCH_LLMCOMPRESSOR_PYTHON``, else ``.tox/llmcompressor/bin/python`` of this checkout) and
puts what it writes into the artifact cache; the main environment only loads the checkpoints
(vLLM brings compressed-tensors; the HF route needs ``vqbench[ct]``).

Shape-only models have no weights to quantize: their "checkpoint" is the model's config plus the
recipe's ``quantization_config`` as llm-compressor wrote it for the tiny model (``ct_configs.json``,
made by ``python -m core.tools.ct_configs``), which vLLM loads with ``load_format="dummy"``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.base import atomic, paths, timeline
from core.base.envprobe import last_json_line, versions_probe
from core.base.errors import ArtifactError
from core.quant import random_ct
from core.quant.base import Applied, QuantContext, Quantizer

PYTHON_ENV = "VQBENCH_LLMCOMPRESSOR_PYTHON"
"""Environment variable naming the llm-compressor environment's python."""
TOX_ENV = Path(".tox") / "llmcompressor"
"""Where ``tox -e llmcompressor`` builds it, relative to the checkout (the default location)."""
BUILD_HINT = ("build it with `tox -e llmcompressor` (or `python -m core.tools.envs.llmcompressor VENV` and "
              f"set {PYTHON_ENV}=VENV/bin/python)")

HF_IGNORE_FIX = "re:.*visual.*"
"""llm-compressor 0.14 writes ``quantization_config.ignore`` in checkpoint key names
(``visual.blocks.0.attn.qkv``) while transformers 5.x names those modules ``model.visual.*``, so
transformers quantized the vision tower on load (missing scales: NaN logits, '!!!!!!!' output, or
a crash for W4A16). This pattern keeps it high precision for transformers and vLLM alike."""

# At calibration time transformers 5.x names the modules model.visual.*; the checkpoint saves visual.*.
IGNORE = ["lm_head", "re:visual.*", "re:model.visual.*"]
SMOOTHQUANT_MAPPINGS = [
    # Scoped to the language model: llm-compressor's default Qwen2.5-VL mappings also match the vision
    # MLP's gate_proj/up_proj and fail ("SmoothQuant must match a single smooth layer for each mapping").
    [["re:.*language_model.*q_proj", "re:.*language_model.*k_proj", "re:.*language_model.*v_proj"],
     "re:.*language_model.*input_layernorm"],
    [["re:.*language_model.*gate_proj", "re:.*language_model.*up_proj"],
     "re:.*language_model.*post_attention_layernorm"],
]
SEQUENTIAL_TARGETS = {"qwen2_5_vl": ["Qwen2_5_VLDecoderLayer"]}
"""The decoder layer class llm-compressor's sequential pipeline calibrates one at a time, per family."""
MAX_SEQ_LENGTH = 8192
CALIBRATION_SEED = 0
"""torch's seed in the worker before ``oneshot``: llm-compressor shuffles the calibration samples with it."""
CONFIGS_FILE = Path(__file__).with_name("ct_configs.json")


@dataclass(frozen=True)
class Recipe:
    """One llm-compressor recipe: its modifiers in order (class name, arguments) and whether it needs data."""

    modifiers: tuple[tuple[str, dict[str, Any]], ...]
    calibrated: bool

    def document(self) -> dict[str, Any]:
        """The recipe in llm-compressor's own recipe format (stage -> modifier group -> modifiers), as
        ``oneshot(recipe=...)`` reads it from a JSON/YAML string."""
        return {"quant_stage": {"quant_modifiers": {name: copy.deepcopy(args) for name, args in self.modifiers}}}


RECIPES: dict[str, Recipe] = {
    # W8A8 = int8 per-channel weights, dynamic per-token int8 activations; GPTQ after smoothing.
    "W8A8_SQ_GPTQ": Recipe(modifiers=(
        ("SmoothQuantModifier", {"smoothing_strength": 0.8, "mappings": SMOOTHQUANT_MAPPINGS}),
        ("GPTQModifier", {"targets": ["Linear"], "scheme": "W8A8", "ignore": IGNORE}),
    ), calibrated=True),
    # W4A16 = int4 symmetric weights, group 128 (3B/7B linear dims are multiples of 128; the tiny's 256/512 too).
    "W4A16_GPTQ": Recipe(modifiers=(
        ("GPTQModifier", {"targets": ["Linear"], "scheme": "W4A16", "ignore": IGNORE}),
    ), calibrated=True),
    "FP8_DYNAMIC": Recipe(modifiers=(
        ("QuantizationModifier", {"targets": ["Linear"], "scheme": "FP8_DYNAMIC", "ignore": IGNORE}),
    ), calibrated=False),
    # NVFP4 needs data for its activations' global scale (static min-max observer); CPU calibration works.
    "NVFP4": Recipe(modifiers=(
        ("QuantizationModifier", {"targets": ["Linear"], "scheme": "NVFP4", "ignore": IGNORE}),
    ), calibrated=True),
}


def recipe(fmt) -> Recipe:
    if fmt.tool != "llmcompressor" or fmt.recipe not in RECIPES:
        raise ArtifactError(f"{fmt.id} is not an llm-compressor format (recipes: {', '.join(RECIPES)})")
    return RECIPES[fmt.recipe]


def with_ignore_fix(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a checkpoint's config.json with ``HF_IGNORE_FIX`` in ``quantization_config.ignore``."""
    out = copy.deepcopy(config)
    qcfg = out.get("quantization_config")
    if not isinstance(qcfg, dict):
        raise ArtifactError("config.json has no quantization_config: not a compressed-tensors checkpoint")
    ignore = qcfg.setdefault("ignore", [])
    if HF_IGNORE_FIX not in ignore:
        ignore.append(HF_IGNORE_FIX)
    return out


# --- the environment ---------------------------------------------------------------------------------

PROBE = versions_probe(("llmcompressor", "compressed-tensors", "transformers", "torch"), then="""
state.update(python=sys.version.split()[0], llmcompressor_found=u.find_spec("llmcompressor") is not None)
""")


def python_path() -> Path:
    """The llm-compressor environment's python: ``$VQBENCH_LLMCOMPRESSOR_PYTHON``, else tox's env."""
    env = os.environ.get(PYTHON_ENV)
    return Path(env).expanduser() if env else paths.PROJECT_ROOT / TOX_ENV / "bin" / "python"


@functools.cache
def probe(python: str) -> dict[str, Any]:
    """Versions in that environment, read without importing llmcompressor (well under a second)."""
    try:
        done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return {"error": last[0] if last else f"exit {done.returncode}"}
    return last_json_line(done.stdout)


def unavailable(spec=None) -> str | None:
    """Why llm-compressor cannot run here (None when it can, or when ``spec`` is shape-only: its
    config-only checkpoint needs no run of the tool)."""
    if spec is not None and spec.kind == "shape":
        return None
    python = python_path()
    where = f"${PYTHON_ENV}" if os.environ.get(PYTHON_ENV) else "the default location"
    if not python.exists():
        return (f"llm-compressor runs in an environment of its own (it pins transformers <=5.17; this project "
                f"needs >=5.18) and none was found at {python} ({where}): {BUILD_HINT}")
    state = probe(str(python))
    if "error" in state:
        return f"{python} ({where}) does not run: {state['error']}; {BUILD_HINT}"
    if not state.get("llmcompressor_found"):
        return f"{python} ({where}) has no llmcompressor: {BUILD_HINT}"
    return None


def env_versions(python: Path) -> dict[str, str | None]:
    state = probe(str(python))
    return {k: state.get(k) for k in ("llmcompressor", "compressed-tensors", "transformers", "torch")}


def recorded_versions() -> dict[str, str]:
    """What goldens record of the environment that made their checkpoints ({} when there is none)."""
    if unavailable() is not None:
        return {}
    v = env_versions(python_path())
    return {"llmcompressor": str(v["llmcompressor"]),
            "llmcompressor env": f"compressed-tensors {v['compressed-tensors']}, transformers {v['transformers']}, "
                                 f"torch {v['torch']}"}


# --- checkpoints -------------------------------------------------------------------------------------

def export(spec, fmt, *, options, device) -> tuple[Path, dict[str, Any]]:
    """The compressed-tensors checkpoint of ``spec`` in ``fmt`` (made once, then from the cache) and a
    report; shape-only specs get a config-only checkpoint (``dummy_checkpoint``)."""
    from core.models import registry
    from core.quant import artifacts, calibration

    if spec.kind == "shape":
        return dummy_checkpoint(spec, fmt)
    why = unavailable(spec)
    if why:
        raise ArtifactError(f"cannot make {fmt.id} of {spec.name}: {why}")
    python = python_path()
    rec = recipe(fmt)
    with timeline.phase("model build"):
        directory = registry.materialize(spec)
    calib = calibration.make(options.calibration, options.calib_size) if rec.calibrated else None
    versions = env_versions(python)
    key = artifacts.key(spec=spec, directory=directory, fmt=fmt, calib=calib, kind="llmcompressor",
                        device_class=device.gpu_class, versions=versions, recipe=rec.document())
    t0 = time.perf_counter()

    def build(tmp: Path) -> dict[str, Any]:
        job = job_for(spec, fmt, directory=directory, calib=calib, out=tmp, allow_pickle=options.allow_pickle,
                      dtype=device.dtype)
        with timeline.phase("calibration + quantize"):
            worker = run_worker(python, job, out=tmp, cpu_only=device.kind == "cpu",
                                what=f"{fmt.id} of {spec.name}")
        check_checkpoint(tmp)
        return {"format": fmt.id, "model": spec.name, "kind": "llmcompressor", "key": key, "versions": versions,
                "calibration": calib.describe() if calib else None, "worker": worker,
                "files": artifacts._file_digests(tmp)}

    path, built = atomic.build_directory(artifacts.entry_dir(key), build,
                                         validate=lambda d, r: artifacts.verify(d))
    record = atomic.read_marker(path) or {}
    qcfg = json.loads((path / "config.json").read_text())["quantization_config"]
    return path, {"export_dir": str(path), "cached": not built, "quantize_s": time.perf_counter() - t0,
                  "artifact_key": key, "tool": "llmcompressor", "recipe": fmt.recipe,
                  "quant_algo": qcfg.get("format"), "versions": record.get("versions"),
                  "calibration": record.get("calibration"), "worker": record.get("worker")}


def job_for(spec, fmt, *, directory: Path, calib, out: Path, allow_pickle: bool = False,
            dtype: str = "bfloat16") -> dict[str, Any]:
    """What the worker is asked to do (written as JSON beside its output); ``dtype``: what calibration
    computes in (the device's: float32 on a CPU without bf16 arithmetic, where bf16 is ~100x slower)."""
    return {"dtype": dtype, "model": str(directory), "format": fmt.id, "family": spec.family,
            "recipe": recipe(fmt).document(),
            "calibration": calib.describe() if calib is not None else None,
            "sequential_targets": SEQUENTIAL_TARGETS.get(spec.family), "max_seq_length": MAX_SEQ_LENGTH,
            "allow_pickle": allow_pickle, "out": str(out), "seed": CALIBRATION_SEED}


def run_worker(python: Path, job: dict[str, Any], *, out: Path, cpu_only: bool, what: str) -> dict[str, Any]:
    """Run ``core.quant.llmcompressor_worker`` in the llm-compressor environment on ``job``; its log
    goes to ``out/llmcompressor.log`` and its report is returned. Failures raise ``ArtifactError``
    with the log's tail and the command that reproduces them."""
    job_file = out / "vqbench-job.json"
    job_file.write_text(json.dumps(job, indent=2) + "\n")
    log = out / "llmcompressor.log"
    cmd = [str(python), "-m", "core.quant.llmcompressor_worker", str(job_file)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_code_root()), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a checkpoint for a CPU engine is made on the CPU
    with tempfile.TemporaryDirectory(prefix="vqbench-llmc-") as cwd, open(log, "w") as fh:
        # Its own working directory: nothing the tool drops there lands in the cache entry.
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        # The output directory is removed after a failure: keep the job and the log for the message.
        kept = Path(tempfile.mkdtemp(prefix="llmcompressor-failed-", dir=paths.cache_dir()))
        for f in (job_file, log):
            shutil.copy2(f, kept / f.name)
        raise ArtifactError(failure_message(what, code, [*cmd[:-1], str(kept / job_file.name)], kept / log.name))
    report = out / "vqbench-export.json"
    if not report.is_file():
        raise ArtifactError(f"llm-compressor making {what} exited 0 but wrote no {report.name}; log: {_tail(log)}")
    return json.loads(report.read_text())


def failure_message(what: str, code: int, cmd: list[str], log: Path) -> str:
    why = (" (killed by SIGKILL: usually the kernel's out-of-memory killer, see dmesg)" if code == -9
           else f" (killed by signal {-code})" if code < 0 else "")
    return (f"llm-compressor failed making {what}: exit {code}{why}. Last lines of its log ({log}):\n"
            f"{_tail(log)}\nReproduce with: PYTHONPATH={_code_root()} {' '.join(cmd)}")


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


def _code_root() -> Path:
    """The directory holding this ``core`` package: the worker runs the same code as the caller."""
    return Path(__file__).resolve().parent.parent.parent


def check_checkpoint(directory: Path) -> dict[str, Any]:
    """The checkpoint's quantization_config, after checking it is one transformers and vLLM can load."""
    cfg_file = directory / "config.json"
    if not cfg_file.is_file() or not list(directory.glob("*.safetensors")):
        raise ArtifactError(f"{directory} is not a checkpoint (config.json and *.safetensors expected)")
    qcfg = json.loads(cfg_file.read_text()).get("quantization_config") or {}
    if qcfg.get("quant_method") != "compressed-tensors":
        raise ArtifactError(f"{cfg_file}: quant_method is {qcfg.get('quant_method')!r}, not 'compressed-tensors'")
    if HF_IGNORE_FIX not in qcfg.get("ignore", []):
        raise ArtifactError(f"{cfg_file}: quantization_config.ignore lacks {HF_IGNORE_FIX!r}, without which "
                            "transformers quantizes the vision tower on load")
    return qcfg


# --- shape-only models ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def quantization_configs() -> dict[str, Any]:
    """The committed quantization_config of each recipe, from real checkpoints of the tiny model."""
    return json.loads(CONFIGS_FILE.read_text())


def dummy_checkpoint(spec, fmt) -> tuple[Path, dict[str, Any]]:
    """A config-only compressed-tensors checkpoint of a shape-only model: its config.json with the
    recipe's quantization_config, for vLLM's ``load_format="dummy"`` (random quantized weights)."""
    from core.models import registry
    from core.quant import artifacts

    recipe(fmt)  # a clear error for a format of another tool
    data = quantization_configs()
    if fmt.recipe not in data["configs"]:
        raise ArtifactError(f"{CONFIGS_FILE.name} has no quantization_config for {fmt.recipe}: "
                            "regenerate it with `python -m core.tools.ct_configs`")
    qcfg = data["configs"][fmt.recipe]
    directory = registry.materialize(spec)
    if qcfg.get("format") == random_ct.FORMAT:
        return random_checkpoint(spec, fmt, qcfg, directory)
    key = artifacts.key(spec=spec, directory=directory, fmt=fmt, calib=None, kind="llmcompressor-dummy",
                        device_class="any", versions={}, recipe=qcfg)

    def build(tmp: Path) -> dict[str, Any]:
        for f in directory.iterdir():
            if f.is_file() and f.name != atomic.COMPLETE_MARKER:
                shutil.copy2(f, tmp / f.name)
        config = json.loads((tmp / "config.json").read_text())
        config["quantization_config"] = copy.deepcopy(qcfg)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return {"format": fmt.id, "model": spec.name, "kind": "llmcompressor-dummy", "key": key,
                "source": data.get("source"), "files": artifacts._file_digests(tmp)}

    path, built = atomic.build_directory(artifacts.entry_dir(key), build, validate=lambda d, r: artifacts.verify(d))
    return path, {"export_dir": str(path), "cached": not built, "quantize_s": 0.0, "artifact_key": key,
                  "tool": "llmcompressor", "recipe": fmt.recipe, "quant_algo": qcfg.get("format"),
                  "dummy_weights": True, "config_source": data.get("source")}


def random_checkpoint(spec, fmt, qcfg: dict[str, Any], directory: Path) -> tuple[Path, dict[str, Any]]:
    """An NVFP4 checkpoint of a shape-only model with finite random weights (``core.quant.random_ct``
    says why vLLM's dummy weights cannot serve NVFP4), made once and cached."""
    from core.plan.capability import version
    from core.quant import artifacts

    versions = {"compressed-tensors": version("compressed_tensors")}
    key = artifacts.key(spec=spec, directory=directory, fmt=fmt, calib=None, kind="llmcompressor-random",
                        device_class="any", versions=versions, recipe=qcfg)
    t0 = time.perf_counter()

    def build(tmp: Path) -> dict[str, Any]:
        with timeline.phase("random NVFP4 weights"):
            written = random_ct.write(directory, tmp, copy.deepcopy(qcfg))
        return {"format": fmt.id, "model": spec.name, "kind": "llmcompressor-random", "key": key,
                "versions": versions, "written": written, "files": artifacts._file_digests(tmp)}

    path, built = atomic.build_directory(artifacts.entry_dir(key), build, validate=lambda d, r: artifacts.verify(d))
    record = atomic.read_marker(path) or {}
    written = record.get("written") or {}
    return path, {"export_dir": str(path), "cached": not built, "quantize_s": time.perf_counter() - t0,
                  "artifact_key": key, "tool": "compressed-tensors", "recipe": fmt.recipe,
                  "quant_algo": qcfg.get("format"), "random_weights": True, "versions": versions,
                  "weights": written.get("weights"), "config_source": quantization_configs().get("source")}


# --- the HF side ---------------------------------------------------------------------------------------

class LLMCompressorQuantizer(Quantizer):
    """The HF backend loads the checkpoint (``Route.how == 'checkpoint'``); ``apply`` unpacks it to bf16
    now, as transformers would at the first forward, and reports what runs."""

    name = "llmcompressor"

    def apply(self, model, fmt, ctx: QuantContext) -> Applied:
        from collections import Counter

        from core.quant.inspect import weight_size

        statuses: Counter[str] = Counter()
        parts: Counter[str] = Counter()
        activations = False
        for name, module in model.named_modules():
            scheme = getattr(module, "quantization_scheme", None)
            if scheme is None:
                continue
            statuses[str(getattr(module, "quantization_status", "?")).rsplit(".", 1)[-1]] += 1
            parts["vision" if "visual" in name else "lm_head" if "lm_head" in name else "language_model"] += 1
            activations = activations or scheme.input_activations is not None
        if not parts:
            raise ArtifactError(f"{ctx.directory}: transformers loaded no compressed-tensors layer")
        if parts["vision"]:
            raise ArtifactError(f"{parts['vision']} vision-tower layers were loaded quantized; the checkpoint's "
                                f"ignore list lacks {HF_IGNORE_FIX!r}")
        packed = weight_size(model)
        hf_quantizer = getattr(model, "hf_quantizer", None)
        compressor = getattr(hf_quantizer, "compressor", None)
        t0 = time.perf_counter()
        if hasattr(model, "ct_decompress_hook") and compressor is not None:
            # What compressed-tensors' first-forward hook would do: done at load, so no timed round pays for it.
            with timeline.phase("decompress"):
                compressor.decompress_model(model)
        upcast = _weights_to_compute_dtype(model, ctx.device.dtype)
        decompress_s = time.perf_counter() - t0
        qcfg = getattr(hf_quantizer, "quantization_config", None)
        report = {
            "tool": "llmcompressor", "recipe": fmt.recipe, "checkpoint": str(ctx.directory),
            "runs": "decompressed",
            "how": ("weights unpacked to bf16 at load (compressed-tensors' decompress_model, which transformers "
                    "would run at the first forward); " + ("input activations fake-quantized on every forward"
                                                           if activations else "activations in bf16")),
            "packed_weight_bytes": packed.bytes, **({"packed_weight_bytes_note": packed.note} if packed.note else {}),
            "decompress_s": decompress_s, "layers": dict(parts),
            **({"upcast_to_compute_dtype": upcast} if upcast else {}),
            "status_at_load": dict(statuses),
            "dequantize": getattr(qcfg, "dequantize", None),
            "use_optimized_inference": getattr(qcfg, "use_optimized_inference", None),
        }
        return Applied(model=model, report=report)


def _weights_to_compute_dtype(model, dtype: str) -> dict[str, Any]:
    """compressed-tensors 0.20 unpacks NVFP4 weights to bf16 whatever the model's dtype
    (``unpack_fp4_from_uint8``'s default), so a model computing in float32 (a CPU without bf16
    arithmetic, class ``cpu_fp32``) failed its first forward ('self and mat2 must have the same dtype,
    but got Float and BFloat16'). The decompressed weights of quantized layers follow the compute
    dtype; bf16 -> float32 is exact, so the weights keep the values compressed-tensors gave them.
    Returns what was cast ({} when nothing was)."""
    import torch

    target = getattr(torch, dtype)
    cast: dict[str, int] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (getattr(module, "quantization_scheme", None) is None or not isinstance(weight, torch.Tensor)
                or not weight.is_floating_point() or weight.dtype == target):
            continue
        key = str(weight.dtype).removeprefix("torch.")
        cast[key] = cast.get(key, 0) + 1
        weight.data = weight.data.to(target)
    return {"to": dtype, "layers_from": cast} if cast else {}
