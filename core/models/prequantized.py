"""Checkpoints someone else already quantized: their format, read from their files.

* ModelOpt exports: ``hf_quant_config.json`` (``quantization.quant_algo``, ``kv_cache_quant_algo``);
* everything else: ``quantization_config`` in ``config.json``, by ``quant_method``:
  ``compressed-tensors`` (its ``config_groups`` matched to the ``ct_*`` formats' schemes), ``awq``
  (AutoAWQ's layout), ``gptq``, ``fp8`` (transformers' FineGrainedFP8 / vLLM's ``fp8``),
  ``bitsandbytes`` (8-bit or 4-bit NF4), ``modelopt`` (newer ModelOpt exports write it there too).

A scheme that maps to no format here is an error naming what was found, never a guess. ``detect``
returns None for a plain (unquantized) checkpoint. The fingerprint is the SHA-256 of the
quantization config's canonical JSON: goldens record it, so a re-quantized checkpoint under the same
directory name shows as a changed input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.base.errors import ModelError

MODELOPT_FILE = "hf_quant_config.json"

MODELOPT_ALGOS = {"FP8": "fp8", "NVFP4": "nvfp4", "W8A8_SQ_PER_CHANNEL": "int8_sq", "W4A16_AWQ": "int4_awq",
                  "W4A8_AWQ": "w4a8_awq"}
"""ModelOpt ``quant_algo`` -> format (``core.plan.formats``)."""


@dataclass(frozen=True)
class Detected:
    """What a checkpoint's files say about its quantization."""

    format: str
    """The format id it runs as (``fp8``, ``ct_w8a8``, ``awq``, ``bnb_nf4+kv_fp8`` ...)."""
    method: str
    """The quantization method its files name (``modelopt``, ``compressed-tensors``, ``awq`` ...)."""
    source: str
    """Which file and field said so, for messages and reports."""
    config: dict[str, Any]
    """The quantization config as found (hf_quant_config.json's, or config.json's quantization_config)."""

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "method": self.method, "source": self.source, "fingerprint": self.fingerprint}


def detect(path: Path, config: dict[str, Any]) -> Detected | None:
    """The format of the checkpoint at ``path`` (whose config.json is ``config``), or None when it is
    not quantized. Raises ``ModelError`` for a quantization config that is broken or maps to no format."""
    modelopt = path / MODELOPT_FILE
    if modelopt.is_file():
        try:
            data = json.loads(modelopt.read_text())
        except ValueError as exc:
            raise ModelError(f"{modelopt} is not valid JSON: {exc}") from None
        quant = data.get("quantization") if isinstance(data, dict) else None
        if not isinstance(quant, dict):
            raise ModelError(f"{modelopt} has no 'quantization' block (ModelOpt's export writes "
                             "{'quantization': {'quant_algo': ...}})")
        return _modelopt(quant, f"{MODELOPT_FILE} quantization.quant_algo", data)
    qcfg = config.get("quantization_config")
    if qcfg is None:
        return None
    where = f"{path / 'config.json'}: quantization_config"
    if not isinstance(qcfg, dict):
        raise ModelError(f"{where} is not a JSON object")
    method = str(qcfg.get("quant_method", "")).lower().replace("_", "-")
    readers = {"compressed-tensors": _compressed_tensors, "awq": _awq, "gptq": _gptq, "fp8": _fp8,
               "bitsandbytes": _bitsandbytes, "modelopt": _modelopt_in_config}
    if method not in readers:
        raise ModelError(f"{where}: quant_method '{qcfg.get('quant_method')}' is not one vqbench reads "
                         f"(it reads: {', '.join(readers)})")
    fmt = readers[method](qcfg, where)
    return Detected(format=fmt, method=method, source=f"config.json quantization_config (quant_method '{method}')",
                    config=qcfg)


def _with_kv(fmt: str, kv: Any, where: str) -> str:
    if kv in (None, "", "NONE"):
        return fmt
    if str(kv).upper() == "FP8":
        return fmt + "+kv_fp8"
    raise ModelError(f"{where}: kv_cache_quant_algo '{kv}' maps to no KV-cache format here (FP8 only)")


def _modelopt(quant: dict[str, Any], source: str, config: dict[str, Any]) -> Detected:
    algo = quant.get("quant_algo")
    if algo not in MODELOPT_ALGOS:
        raise ModelError(f"ModelOpt checkpoint ({source}): quant_algo {algo!r} maps to no format here "
                         f"(known: {', '.join(f'{k} -> {v}' for k, v in MODELOPT_ALGOS.items())})")
    fmt = _with_kv(MODELOPT_ALGOS[algo], quant.get("kv_cache_quant_algo"), source)
    return Detected(format=fmt, method="modelopt", source=source, config=config)


def _modelopt_in_config(qcfg: dict[str, Any], where: str) -> str:
    quant = qcfg.get("quantization", qcfg)  # ModelOpt writes the block itself, or flat
    return _modelopt(quant, where, qcfg).format


# --- compressed-tensors --------------------------------------------------------------------------------

def _scheme(args: dict[str, Any] | None) -> tuple | None:
    """A quantization args block as (type, bits, strategy, group_size, dynamic), None when absent."""
    if not args:
        return None
    dynamic = args.get("dynamic", False)
    return (str(args.get("type", "int")), int(args.get("num_bits", 0)), str(args.get("strategy", "")),
            args.get("group_size"), dynamic if isinstance(dynamic, str) else bool(dynamic))


CT_SCHEMES: dict[tuple, str] = {
    # (weights, input activations) -> format; values as llm-compressor writes them (core/quant/ct_configs.json)
    (("int", 8, "channel", None, False), ("int", 8, "token", None, True)): "ct_w8a8",
    (("int", 4, "group", 128, False), None): "ct_w4a16",
    (("float", 8, "channel", None, False), ("float", 8, "token", None, True)): "ct_fp8_dynamic",
    (("float", 4, "tensor_group", 16, False), ("float", 4, "tensor_group", 16, "local")): "ct_nvfp4",
}


def _describe(s: tuple | None) -> str:
    if s is None:
        return "none"
    kind, bits, strategy, group, dynamic = s
    return (f"{kind}{bits} {strategy}" + (f" group_size {group}" if group else "")
            + (f" dynamic={dynamic}" if dynamic else " static"))


def _compressed_tensors(qcfg: dict[str, Any], where: str) -> str:
    groups = qcfg.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise ModelError(f"{where}: a compressed-tensors config without config_groups (nothing says what is "
                         "quantized)")
    found = set()
    for name, group in groups.items():
        if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
            raise ModelError(f"{where}: config_groups.{name} has no weights block")
        found.add((_scheme(group["weights"]), _scheme(group.get("input_activations"))))
    if len(found) != 1:
        schemes = "; ".join(f"weights {_describe(w)}, activations {_describe(a)}" for w, a in sorted(found, key=str))
        raise ModelError(f"{where}: config groups with different schemes (mixed precision: {schemes}) "
                         "map to no single format here")
    weights, acts = found.pop()
    fmt = CT_SCHEMES.get((weights, acts))
    if fmt is None:
        known = "; ".join(f"{f}: weights {_describe(w)}, activations {_describe(a)}"
                          for (w, a), f in CT_SCHEMES.items())
        raise ModelError(f"{where}: compressed-tensors scheme weights {_describe(weights)}, input activations "
                         f"{_describe(acts)} maps to no format here (known: {known})")
    kv = qcfg.get("kv_cache_scheme")
    if kv:
        if (str(kv.get("type")), int(kv.get("num_bits", 0))) != ("float", 8):
            raise ModelError(f"{where}: kv_cache_scheme {kv} maps to no KV-cache format here (FP8 only)")
        fmt += "+kv_fp8"
    return fmt


# --- other quantization methods ---------------------------------------------------------------------------

def _awq(qcfg: dict[str, Any], where: str) -> str:
    bits, group = qcfg.get("bits", qcfg.get("w_bit")), qcfg.get("group_size", qcfg.get("q_group_size"))
    version = str(qcfg.get("version", "gemm")).lower()
    if bits != 4 or version not in ("gemm", "gemv"):
        raise ModelError(f"{where}: AWQ with bits={bits}, version={version!r} maps to no format here (awq: "
                         "4-bit, AutoAWQ's gemm/gemv layout)")
    if group not in (128, 64, 32):
        raise ModelError(f"{where}: AWQ group_size {group} maps to no format here (awq: 32, 64 or 128)")
    return "awq"


def _gptq(qcfg: dict[str, Any], where: str) -> str:
    bits = qcfg.get("bits")
    if bits != 4:
        raise ModelError(f"{where}: GPTQ with bits={bits} maps to no format here (gptq: 4-bit)")
    return "gptq"


def _fp8(qcfg: dict[str, Any], where: str) -> str:
    block = qcfg.get("weight_block_size")
    scheme = qcfg.get("activation_scheme", "dynamic")
    if block is None or scheme != "dynamic":
        raise ModelError(f"{where}: FP8 with weight_block_size={block}, activation_scheme={scheme!r} maps to no "
                         "format here (fp8_block: block-wise weight scales, dynamic activations)")
    return "fp8_block"


def _bitsandbytes(qcfg: dict[str, Any], where: str) -> str:
    if qcfg.get("load_in_8bit"):
        return "bnb_int8"
    if qcfg.get("load_in_4bit"):
        kind = qcfg.get("bnb_4bit_quant_type", "fp4")
        if kind != "nf4":
            raise ModelError(f"{where}: bitsandbytes 4-bit '{kind}' maps to no format here (bnb_nf4: NF4)")
        return "bnb_nf4"
    raise ModelError(f"{where}: bitsandbytes config with neither load_in_8bit nor load_in_4bit")
