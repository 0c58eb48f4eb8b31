"""Golden answers per engine: labels exact, label log-probs within a tolerance (``golden/``).

After a deliberate re-quantization or model change: ``pytest bench --snapshot-update``. Engines
whose goldens cannot be judged here (a GPU class with no goldens yet) are skipped by the plan, with
the reason; those never judged anywhere (shape-only models) are deselected, counted in the summary.
"""

from __future__ import annotations

import json

import pytest

from core.plan.golden import GoldenJSON, engine_payload, golden_extension, unanswered, unjudged
from core.plan.matrix import Cell


@pytest.mark.vqbench(judge="golden")
def test_golden(vqbench_engine, vqbench_state, snapshot):
    plan, task = vqbench_engine
    settings = vqbench_state.settings
    golden = snapshot.use_extension(golden_extension(settings.golden_tolerance_for(plan.fmt.name),
                                                     max_videos=settings.max_videos))
    records = [vqbench_state.answer(Cell(plan, task, clip)) for clip in vqbench_state.clips_for(task.name)]
    why = unanswered(records)
    if why:  # before the snapshot assert: --snapshot-update must not record a crashed engine as its golden
        pytest.fail(why, pytrace=False)
    payload = engine_payload(plan, task.name, records)
    # on failure the extension says which videos moved or are missing, and which libraries changed
    assert golden == payload
    path = GoldenJSON.golden_dir / f"{payload['engine']}.json"
    if path.exists():
        for note in unjudged(json.loads(path.read_text(encoding="utf-8")), payload, max_videos=settings.max_videos):
            print(f"golden {path.name}: {note}")
