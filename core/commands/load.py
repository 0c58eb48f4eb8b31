"""``vqbench load``: the load scenarios of ``bench/test_load.py`` from the command line, over the same
plan (``core.plan.matrix``), the same capability verdicts and the same ``LoadSession``; it adds progress lines,
the results file and the table at the end."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from core.plan.settings import Settings


def load(s: Settings, *, results: Path, device: str = "auto") -> int:
    from core.base.results import ResultsWriter
    from core.cells.runner import FrameCache
    from core.inputs.sampling import anchor
    from core.inputs.tasks import get_task
    from core.load.report import markdown
    from core.load.session import LoadSession
    from core.plan.matrix import Matrix

    if not s.load:
        s = dataclasses.replace(s, load=["all"])
    if "vllm" not in s.backends:
        s = dataclasses.replace(s, backends=["vllm"])
    matrix = Matrix(s)
    plans = [p for p in matrix.plans if p.engine.backend == "vllm" and device in ("auto", p.engine.device)]
    if device == "auto" and any(p.engine.device == "cuda" and p.verdict.runnable for p in plans):
        plans = [p for p in plans if p.engine.device == "cuda"]
    for p in plans:
        if not p.verdict.runnable:
            print(f"skip {p.engine.id}: {p.verdict.reason}")
    plans = [p for p in plans if p.verdict.runnable]
    if not plans:
        print("vqbench load: no vLLM engine can run here (the reasons are above; `vqbench doctor` has the table)")
        return 2
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-load"
    writer = ResultsWriter(results, header={"settings": s.to_dict(), "command": "load"}, run_id=run_id)
    frames, records, failed = FrameCache(), [], 0
    try:
        for plan in plans:
            for task_name in s.tasks_for(plan.engine.model):
                task = get_task(task_name)
                session = LoadSession(plan, task, s, clips=matrix.clips_for(task_name),
                                      frames_for=lambda clip: frames.get(clip, anchor(s.sampling(), clip)),
                                      log_dir=results.resolve().parent / "server-logs")
                print(f"{plan.engine.id} {task_name}: starting a vLLM server (log under {session.log_dir})", flush=True)
                try:
                    session.start()
                except Exception as exc:  # noqa: BLE001 - this engine fails alone; the next one runs
                    failed += 1
                    print(f"  could not start: {exc}")
                    writer.write(session.error_record("start", exc))
                    continue
                run, server = session.started()
                up = f"{server.facts.start_s:.0f} s" if server.facts else "? s"
                print(f"  up in {up}; {len(run.items)} clips answered alone"
                      + (f"; left out: {session.excluded}" if session.excluded else ""), flush=True)
                try:
                    for name in s.load_scenarios():
                        print(f"  {name} ...", flush=True)
                        try:
                            rec = session.scenario(name)
                        except Exception as exc:  # noqa: BLE001 - recorded with the points it finished
                            failed += 1
                            rec = session.error_record(name, exc)
                            print(f"  {name} failed: {exc}")
                        if s.history and rec.get("status") == "ok":
                            from core.load import gate
                            from core.metrics.history import History

                            rec["history"] = gate.judge_record(History(s.history), rec, run_id=run_id)
                            for v in rec["history"]:
                                if v["status"] in ("fail", "warn", "faster", "clock change"):
                                    print(f"  history: {v['status']}: {v['message']}")
                            failed += sum(v["status"] == "fail" for v in rec["history"])
                        writer.write(rec)
                        records.append(rec)
                finally:
                    session.close()
    finally:
        writer.close()
        if s.history and records:
            from core.load import gate
            from core.metrics.history import History

            gate.add_records(History(s.history), records, run_id=run_id)
    print("\n".join(markdown(records, reference_format=s.reference_format)))
    print(f"results: {results}")
    return 1 if failed else 0
