"""``vqbench run --backend vllm --batch N`` keeps the engine full: up to N decoded videos in flight at once
(one ``LLM.generate`` call that vLLM's scheduler batches), the answers untimed, then one batch's worth
answered again one at a time for the sequential rate and the batch drift (issue 25, item 7).

Run it where vLLM is installed: ``tox -e vllm-cpu``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from core.base import paths
from core.inputs.dataset import fixture_clips
from core.plan import capability

_MISSING = (capability.missing_reason(["vllm"], "vqbench run --backend vllm")
            or capability.missing_reason(["torch", "transformers"], "vqbench run --backend vllm"))
pytestmark = [pytest.mark.cpu, pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]


def test_a_folder_in_batches_of_four_on_vllm(tmp_path):
    d = tmp_path / "v"
    d.mkdir()
    for c in fixture_clips()[:4]:
        shutil.copy(c.path, d / c.path.name)
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "core.cli", "run", "--model", "tiny-trained", "--backend", "vllm",
                           "--device", "cpu", "--videos", str(d), "--batch", "4", "--output", str(out)],
                          capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    recs = doc["results"]
    assert [r["status"] for r in recs] == ["ok"] * 4
    # one batch of four, in flight together; untimed answers
    assert {r["batch"]["size"] for r in recs} == {4} and sorted(r["batch"]["index"] for r in recs) == [0, 1, 2, 3]
    assert {r["kind"] for r in recs} == {"scoring"} and len({r["batch"]["wall_s"] for r in recs}) == 1
    b = doc["batching"]
    assert b["batch"] == 4 and b["folder_batched_videos"] == 4 and b["videos"] == 4
    assert b["batched_videos_per_s"] > 0 and b["sequential_videos_per_s"] > 0 and b["speedup"] > 0
    # the same clips answered one at a time: a trained model keeps its answers (8-bit tier limits)
    assert b["batch_drift"]["n"] == 4 and b["batch_drift"]["status"] in ("pass", "inconclusive"), b["batch_drift"]
    assert "batches of 4:" in proc.stderr and "one at a time" in proc.stderr
