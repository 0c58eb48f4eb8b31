"""llm-compressor itself (its own environment, built by ``tox -e llmcompressor`` or the cpu tier): the
same checkpoint, built twice from the same model, recipe and calibration set, has the same bytes. Unseeded,
llm-compressor's calibration shuffle gave two builds of ``ct_w8a8`` different int8 weights."""

from __future__ import annotations

import hashlib

import pytest

from core.models import registry
from core.plan.formats import get_format
from core.quant import calibration
from core.quant import llmcompressor_q as llmc

pytestmark = pytest.mark.cpu


def test_a_rebuilt_checkpoint_has_the_same_bytes(tmp_path):
    spec = registry.resolve("tiny-trained")
    why = llmc.unavailable(spec)
    if why:
        pytest.skip(why)
    directory = registry.materialize(spec)
    fmt = get_format("ct_w8a8")  # SmoothQuant + GPTQ over 8 calibration samples: order-sensitive
    calib = calibration.make("captions", 8)
    digests = []
    for name in ("first", "second"):
        out = tmp_path / name
        out.mkdir()
        job = llmc.job_for(spec, fmt, directory=directory, calib=calib, out=out, dtype="float32")
        llmc.run_worker(llmc.python_path(), job, out=out, cpu_only=True, what=f"{fmt.id} of {spec.name}")
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.safetensors")})
    assert digests[0], "the worker wrote no safetensors"
    assert digests[0] == digests[1]
