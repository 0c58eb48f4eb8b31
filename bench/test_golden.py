"""Golden answers per engine: labels exact, label log-probs within a tolerance (``golden/``).

After a deliberate re-quantization or model change: ``pytest bench --snapshot-update``.
"""

from __future__ import annotations

import json

import pytest

from core.golden import (
    GoldenJSON,
    compare,
    golden_extension,
    golden_payload,
    recorded_with,
    unjudged,
    version_changes,
)
from core.matrix import Cell


@pytest.fixture
def golden(snapshot, vqbench_settings):
    return snapshot.use_extension(golden_extension(vqbench_settings.golden_tolerance))


def test_golden(vqbench_engine, vqbench_state, golden, request):
    plan, task = vqbench_engine
    if plan.spec.kind == "shape":
        pytest.skip(f"{plan.spec.name} is shape-only: random weights give near-tied labels that GPU kernels "
                    "flip run to run, so a golden would test noise; goldens cover tiny, tiny-trained and "
                    "real checkpoints")
    device_class = request.node.callspec.id.split("-")[-2]
    updating = bool(getattr(request.config.option, "update_snapshots", False))
    if not updating and not list(GoldenJSON.golden_dir.glob(f"*-{device_class}-*.json")):
        pytest.skip(f"no goldens recorded for device class {device_class} yet (goldens are per GPU class); "
                    f"record them once with `pytest bench -m gpu --snapshot-update`")
    records = []
    for clip in vqbench_state.clips_for(task):
        try:
            records.append(vqbench_state.run(Cell(plan, task, clip)))
        except Exception as exc:  # noqa: BLE001 - a broken clip is part of the golden, not a crash
            records.append({"video": clip.id, "predicted": f"error:{type(exc).__name__}",
                            "parsed": None, "candidate_logprobs": {}})
    name = request.node.callspec.id
    e = plan.engine
    payload = golden_payload(name, {"model": e.model, "backend": e.backend, "format": e.format,
                                    "task": task, "device_class": name.split("-")[-2],
                                    "recorded_with": recorded_with(e.backend, plan.fmt.tool)}, records)
    if not (golden == payload):  # syrupy records the assertion (and writes it under --snapshot-update)
        pytest.fail(_explain(name, payload, vqbench_state.settings.golden_tolerance), pytrace=False)
    path = GoldenJSON.golden_dir / f"{name}.json"
    if path.exists():
        for note in unjudged(json.loads(path.read_text(encoding="utf-8")), payload):
            print(f"golden {path.name}: {note}")


def _explain(name: str, payload: dict, tolerance: float) -> str:
    path = GoldenJSON.golden_dir / f"{name}.json"
    try:
        expected = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no golden {path} yet: record it with `pytest bench --snapshot-update -k '{name}'`"
    problems = compare(expected, payload, tolerance=tolerance)
    text = f"golden {path.name} does not match this run:\n  " + "\n  ".join(problems)
    changed = version_changes(expected, payload)
    if changed:
        text += ("\nlibraries changed since this golden was recorded: " + ", ".join(changed)
                 + ". A library upgrade can move answers by itself (transformers 5.18 changed Qwen2.5-VL's "
                 "video positions at fps > 2): check the change, then re-record with --snapshot-update.")
    return text
