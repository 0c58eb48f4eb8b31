"""Golden answers per engine: labels exact, label log-probs within a tolerance (``golden/``).

After a deliberate re-quantization or model change: ``pytest bench --snapshot-update``. Engines
whose goldens cannot be judged here (shape-only models, a GPU class with no goldens yet) are
skipped by the plan, with the reason.
"""

from __future__ import annotations

import json

from core.golden import GoldenJSON, engine_payload, golden_extension, unjudged
from core.matrix import Cell


def test_golden(vqbench_engine, vqbench_state, snapshot):
    plan, task = vqbench_engine
    golden = snapshot.use_extension(golden_extension(vqbench_state.settings.golden_tolerance_for(plan.fmt.name)))
    records = [vqbench_state.answer(Cell(plan, task, clip)) for clip in vqbench_state.clips_for(task.name)]
    payload = engine_payload(plan, task.name, records)
    assert golden == payload  # on failure the extension says which videos moved and which libraries changed
    path = GoldenJSON.golden_dir / f"{payload['engine']}.json"
    if path.exists():
        for note in unjudged(json.loads(path.read_text(encoding="utf-8")), payload):
            print(f"golden {path.name}: {note}")
