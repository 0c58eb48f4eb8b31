"""The reference model (tiny-trained) sees: its bf16 accuracy on the held-out split, reported by the
suite itself. The split is generated from seeds the training never used (core.inputs.dataset.HELDOUT_SEED)."""

from __future__ import annotations

import pytest

from core.cells.runner import EnginePool, FrameCache, run_cell
from core.inputs import dataset
from core.inputs.tasks import get_task
from core.models import registry
from core.plan.capability import CapabilityVerdict, installed
from core.plan.formats import get_format
from core.plan.matrix import Cell, Engine, EnginePlan
from core.plan.settings import Settings

pytestmark = [pytest.mark.cpu, pytest.mark.slow,
              pytest.mark.skipif(not installed("transformers"),
                                 reason="needs 'transformers': pip install 'vqbench[hf]'")]

MIN_ACCURACY = 0.9


def test_reference_model_accuracy_on_the_held_out_split(record_property):
    spec = registry.resolve("tiny-trained")
    plan = EnginePlan(Engine("tiny-trained", "hf", "bf16", "cpu"), spec, get_format("bf16"), CapabilityVerdict(True))
    settings = Settings()
    pool, frames = EnginePool(settings), FrameCache()
    clips = dataset.load("heldout")
    try:
        records = [run_cell(Cell(plan, get_task("anomaly"), c), pool, frames, settings) for c in clips]
    finally:
        pool.release()
    correct = [r for r in records if r["correct"]]
    accuracy = len(correct) / len(records)
    by_kind: dict[str, list[bool]] = {}
    for c, r in zip(clips, records):
        by_kind.setdefault(c.meta["kind"], []).append(bool(r["correct"]))
    summary = {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_kind.items())}
    record_property("heldout_accuracy", accuracy)
    record_property("heldout_by_kind", summary)
    print(f"tiny-trained bf16 on the held-out split: {accuracy:.1%} ({len(correct)}/{len(records)}); {summary}")
    wrong = [f"{r['video']} (truth {r['truth']}, predicted {r['predicted']}, {r['candidate_logprobs']})"
             for r in records if not r["correct"]]
    assert accuracy >= MIN_ACCURACY, f"accuracy {accuracy:.1%} < {MIN_ACCURACY:.0%}; wrong: {wrong}"
