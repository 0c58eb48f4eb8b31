"""Load scenarios on a real ``vllm serve`` process, one per (vLLM engine, task, --load scenario).

Collected only with ``--load`` (offline, server, camera, sweep or all). Each engine's server starts
once, from the same engine arguments as its in-process cells; its clips are answered alone first (the
reference for batch drift, and checked against the engine's offline golden where one exists), then
each scenario runs and is written as a ``load`` record (``--results``) and into ``--benchmark-json``'s
extra_info. pytest-benchmark's own timing of these tests is the scenario's whole wall time, not a
request latency: the request figures are in extra_info (``ttft_s``, ``tpot_s``, ``e2e_s``, ...).
"""

from __future__ import annotations

import json
import warnings

import pytest

from core.plan.golden import GoldenJSON


def test_load(vqbench_load, vqbench_state, benchmark):
    plan, task, scenario = vqbench_load
    settings = vqbench_state.settings
    session = vqbench_state.load_session(plan, task)
    benchmark.group = f"load-{plan.engine.model}-{task.name}-{scenario}"
    try:
        rec = benchmark.pedantic(lambda: session.scenario(scenario), rounds=1, iterations=1, warmup_rounds=0)
    except BaseException as exc:  # an interrupt too: the points the scenario finished are kept
        vqbench_state.save_load(session.error_record(scenario, exc))
        raise
    vqbench_state.save_load(rec)
    benchmark.extra_info.update({"load": {k: rec[k] for k in ("scenario", "engine", "result", "capacity")},
                                 "batch_drift": {k: v for k, v in rec["batch_drift"].items() if k != "verdict"},
                                 "timed": "the whole scenario's wall time (pytest-benchmark's figure), not a "
                                          "request latency"})
    for clip, why in rec["excluded_clips"].items():
        print(f"load: clip {clip} could not be sent ({why}); the other clips' figures stand")
    # Through the server at concurrency 1, the answers are the offline engine's: same frames, same prompt.
    golden = GoldenJSON.golden_dir / f"{plan.golden_id(task.name)}.json"
    if golden.exists():
        diffs = session.alone_vs_golden(json.loads(golden.read_text(encoding="utf-8")),
                                        settings.golden_tolerance_for(plan.fmt.name))
        assert not diffs, "answers through the server differ from the offline golden:\n" + "\n".join(diffs)
    else:
        print(f"load: no offline golden {golden.name} here: the server's answers at concurrency 1 are not judged")
    result = rec["result"]
    points = (result.get("points") or [result]) + ([result["confirmation"]] if result.get("confirmation") else [])
    assert points and all(p["requests"] > 0 for p in points)
    if scenario == "sweep" and result.get("largest_rate_per_s") and settings.load_confirm:
        # the rate found, sent once more with fresh arrivals: its verdict is the sample's, not the estimate's
        assert result["confirmation"]["requests"] == settings.load_confirm
        assert result["confirmed"] is (result["confirmation"]["slo"]["confidence"]["verdict"] == "met")
    failed = [f"{p['scenario']} {p['offered']}: {p['errors']} errors, e.g. {p['error_examples']}" for p in points
              if p["errors"]]
    assert not failed, "requests failed under load:\n" + "\n".join(failed)
    if scenario == "offline":
        assert result["videos_per_s"] > 0 and result["output_tokens_per_s"] > 0
    if scenario == settings.load_scenarios()[-1]:
        # the engine's last scenario: its server stops here, and nothing of it may be left behind
        server = session.server
        vqbench_state.close_load()
        stopped = server.stopped
        assert stopped["pids"] and not stopped["left"] and stopped["port_free"], stopped
    # --history: throughput and goodput against earlier runs on this device class (as latency is)
    for verdict in rec.get("history") or []:
        if verdict["status"] == "fail":
            pytest.fail(f"throughput regression against the history: {verdict['message']}", pytrace=False)
        if verdict["status"] in ("warn", "clock change"):
            warnings.warn(f"{plan.engine.id} {scenario}: {verdict['status']}: {verdict['message']}", stacklevel=1)
    drift = rec["batch_drift"]
    if drift["status"] == "fail":
        pytest.fail("answers under load drifted from the same clips answered alone:\n" + "\n".join(drift["failures"]),
                    pytrace=False)
