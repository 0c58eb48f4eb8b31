"""The load layer without vLLM: the server lifecycle (start, health, stop of the whole process group, the
faults a user meets), the client's streaming and timeouts, and the scenario arithmetic. The server here is
a stand-in HTTP process (``_standin_server.py``); the real ``vllm serve`` runs in the vLLM tier
(``bench/test_load.py --load``)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from core.load import scenarios as sc
from core.load.client import Outcome, frames_url, with_uuid
from core.load.server import ServerError, VLLMServer, port_in_use, serve_args

pytestmark = pytest.mark.cpu
STANDIN = str(Path(__file__).with_name("_standin_server.py"))


def standin(tmp_path, mode: str, **kw) -> VLLMServer:
    return VLLMServer({}, log=tmp_path / f"{mode}.log", command=[sys.executable, STANDIN, "{port}", mode], **kw)


def test_serve_args_are_the_engine_arguments_as_flags():
    args = serve_args({"model": "/m", "dtype": "bfloat16", "enforce_eager": False, "disable_log_stats": False,
                       "limit_mm_per_prompt": {"video": 1}, "trust_remote_code": True, "quantization": None})
    assert args == ["--model", "/m", "--dtype", "bfloat16", "--limit-mm-per-prompt", '{"video": 1}',
                    "--trust-remote-code"]


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = standin(tmp_path, "ok", port=port)
        with pytest.raises(ServerError, match=f"port {port} .* is in use"):
            server.start()
        assert server.proc is None


def test_a_server_exiting_at_start_up_names_its_code_and_log(tmp_path):
    with pytest.raises(ServerError, match=r"exited with code 7 while starting; "
                                          r"its log .*exit.log ends:\n(.*\n)*.*failing at start-up"):
        standin(tmp_path, "exit").start()


def test_a_server_that_never_becomes_healthy_fails_and_is_stopped(tmp_path):
    server = standin(tmp_path, "mute", start_timeout_s=1.0)
    with pytest.raises(ServerError, match="did not become healthy within 1 s"):
        server.start()
    assert server.stopped is not None and server.stopped["pids"] and not server.stopped["left"]


def test_stop_ends_the_whole_process_group_and_frees_the_port(tmp_path):
    server = standin(tmp_path, "ok").start()
    members = server.group_pids()
    assert len(members) >= 2, members  # the server and its child
    port = server.port
    assert port_in_use(port)
    server.stop()
    assert server.stopped["pids"] == members and server.stopped["left"] == [] and server.stopped["port_free"]
    assert not port_in_use(port)
    server.stop()  # twice is harmless


def _item(clip="c1", candidates=None):
    body = {"model": "vqbench", "messages": [{"role": "user",
                                              "content": [{"type": "video_url", "video_url": {"url": "x"}},
                                                          {"type": "text", "text": "q"}]}],
            "max_tokens": 2, "stream": True}
    return sc.WorkItem(clip=clip, body=body, truth="Normal", candidates=candidates or {"Normal": 42, "Anomaly": 7})


def test_answers_stream_back_with_their_tokens_and_timings(tmp_path):
    with standin(tmp_path, "ok") as server:
        run = sc.LoadRun(server.url, [_item("a"), _item("b")], slo_s=60.0, check_alive=server.check_alive)
        alone = run.alone()
        offline = run.offline(4)
    for o in alone.outcomes + offline.outcomes:
        assert o.ok and o.text == "Normal" and o.token_ids == [42, 43] and o.prompt_tokens == 11
        assert 0 <= o.ttft_s <= o.e2e_s and o.tpot_s is not None
    fig = offline.figures()
    assert fig["completed"] == 4 and fig["videos_per_s"] > 0
    assert fig["output_tokens_per_s"] == pytest.approx(2 * fig["videos_per_s"])
    drift = sc.batch_drift(alone, [offline], run.items)
    assert drift["n"] == 4 and drift["flips"] == 0 and drift["token_sequence_changes"] == 0
    assert drift["status"] == "inconclusive"  # 4 answers cannot show a 10% flip limit is kept


def test_a_request_that_never_answers_times_out_with_a_clear_error(tmp_path):
    with standin(tmp_path, "hang") as server:
        run = sc.LoadRun(server.url, [_item()], slo_s=1.0, timeout_s=1.0)
        res = run.offline(1)
    assert res.outcomes[0].error.startswith("timed out after 1 s") and "--load-timeout" in res.outcomes[0].error


def test_a_server_dying_mid_run_names_its_log_and_keeps_finished_results(tmp_path):
    with standin(tmp_path, "die") as server:
        run = sc.LoadRun(server.url, [_item()], slo_s=1.0, check_alive=server.check_alive)
        with pytest.raises(ServerError, match=r"died during the offline scenario \(exit code 3\); its log .*die.log"):
            run.offline(2)
    assert len(run.finished) == 1 and run.finished[0].figures()["errors"] == 2


def test_quantiles_are_reported_only_where_the_sample_reaches():
    small = sc.quantiles([float(i) for i in range(1, 100)])  # 99 values: nothing beyond a p99
    assert small["p50"] == 50.0 and small["p90"] == 90.0 and small["p99"] is None and small["max"] == 99.0
    value, judged_on = sc.slo_value(small)
    assert value == 99.0 and judged_on.startswith("max (n=99 < 100")
    full = sc.quantiles([float(i) for i in range(1, 101)])
    assert full["p99"] == 99.0 and sc.slo_value(full) == (99.0, "p99")


def test_poisson_arrivals_are_seeded_and_at_the_rate():
    a, b = sc.poisson_times(10.0, 2000, seed=0), sc.poisson_times(10.0, 2000, seed=0)
    assert a == b and a[0] == 0.0 and all(x <= y for x, y in zip(a, a[1:]))
    assert 1999 / a[-1] == pytest.approx(10.0, rel=0.1)
    with pytest.raises(ValueError, match="must be positive"):
        sc.poisson_times(0, 3, seed=0)


def test_a_flip_under_load_is_counted_against_the_clip_alone():
    alone = sc.ScenarioResult(
        "alone", {}, [Outcome(0, "c1", 0.0, 0.0, 0.1, 0.2, "Normal", [42], [[(42, -0.1), (7, -2.5)]])], 0.2)
    flipped = Outcome(0, "c1", 0.0, 0.0, 0.1, 0.2, "Anomaly", [7], [[(7, -0.2), (42, -1.9)]])
    same = Outcome(1, "c1", 0.0, 0.0, 0.1, 0.2, "Normal", [42], [[(42, -0.1), (7, -2.5)]])
    drift = sc.batch_drift(alone, [sc.ScenarioResult("offline", {}, [flipped, same], 0.2)], [_item("c1")])
    assert drift["n"] == 2 and drift["flips"] == 1 and drift["token_sequence_changes"] == 1
    assert drift["status"] == "fail" and any("flip_rate" in f for f in drift["failures"])


def test_a_candidate_outside_the_top_log_probs_is_bounded_and_named():
    o = Outcome(0, "c1", 0.0, top=[[(42, -0.1), (9, -3.0)]])
    lps, missing = sc.candidate_logprobs(o, {"Normal": 42, "Anomaly": 7})
    assert lps == {"Normal": -0.1, "Anomaly": -3.0} and missing == ["Anomaly"]


def test_frames_travel_losslessly_and_every_request_gets_its_own_uuid():
    import base64
    import io

    from PIL import Image

    from bench.conftest import make_frames

    frames = make_frames(t=3, h=28, w=56)
    url = frames_url(frames)
    assert url.startswith("data:video/jpeg;base64,")
    parts = url.split(",", 1)[1].split(",")
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(p))).convert("RGB")) for p in parts])
    assert np.array_equal(decoded, frames.array)  # what vLLM's loader (PIL) gets back is the same pixels
    body = _item().body
    a, b = with_uuid(body, "t0"), with_uuid(body, "t0")
    ua, ub = a["messages"][0]["content"][0]["uuid"], b["messages"][0]["content"][0]["uuid"]
    assert ua != ub and "uuid" not in body["messages"][0]["content"][0]


def test_a_broken_clip_is_left_out_with_its_reason(built_model, tmp_path):
    transformers = pytest.importorskip("transformers")
    from core.cells.runner import FrameCache
    from core.inputs import dataset
    from core.inputs.sampling import SamplingSpec
    from core.inputs.tasks import get_task
    from core.load.workload import prepare

    good = dataset.load("fixtures")[:2]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    clips = [good[0], dataset.VideoClip(path=broken, id="broken"), good[1]]
    tok = transformers.AutoTokenizer.from_pretrained(built_model("tiny"))
    cache, spec = FrameCache(), SamplingSpec(fps=2.0, max_frames=4, resolution=(56, 56))
    items, errors = prepare(clips, get_task("anomaly"), frames_for=lambda c: cache.get(c, spec), tokenizer=tok,
                            processor_kwargs={}, model="vqbench", max_new_tokens=2)
    assert [it.clip for it in items] == [good[0].id, good[1].id]
    assert list(errors) == ["broken"] and errors["broken"]


def test_a_throughput_drop_beyond_the_history_noise_fails(tmp_path):
    from core.load import gate
    from core.metrics.history import History

    db = History(tmp_path / "h.sqlite")

    def rec(vps: float) -> dict:
        return {"type": "load", "status": "ok", "scenario": "offline", "engine": "e", "task": "anomaly",
                "gpu_class": "sm90", "result": {"videos_per_s": vps, "output_tokens_per_s": 7 * vps}}

    for i, vps in enumerate([10.0, 10.1, 9.9, 10.0, 10.05]):
        assert gate.add_records(db, [rec(vps)], run_id=f"r{i}") == 2
    same = gate.judge_record(db, rec(10.0), run_id="new")
    assert [v["status"] for v in same] == ["ok", "ok"]
    slow = gate.judge_record(db, rec(8.0), run_id="new")
    assert {v["figure"]: v["status"] for v in slow} == {"videos_per_s": "fail", "output_tokens_per_s": "fail"}
    assert "videos_per_s 8 against 10" in slow[0]["message"]
    first = gate.judge_record(History(tmp_path / "empty.sqlite"), rec(8.0), run_id="new")
    assert first[0]["status"] == "insufficient history"


def test_without_load_the_load_tests_are_deselected_not_broken():
    import subprocess

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "pytest", "bench/test_load.py", "-m", "cpu", "-p", "no:cacheprovider",
                          "--collect-only", "-q", "--model", "tiny", "--backend", "vllm", "--format", "bf16"],
                         cwd=root, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert "INTERNALERROR" not in text, text[-2000:]
    assert out.returncode == 5 and "deselected" in text, text[-2000:]  # 5: nothing selected to run


def test_the_report_draws_each_formats_sweep_and_tables_its_capacity():
    pytest.importorskip("matplotlib")
    from core.base.results import from_records
    from core.report.html import render_html
    from core.report.markdown import render_markdown

    def point(rate, vps, p99, mx, met, n):
        return {"offered": {"rate_per_s": rate}, "videos_per_s": vps, "e2e_s": {"p99": p99, "max": mx},
                "slo": {"met": met}, "requests": n}

    def rec(fmt, capacity, rate):
        return {"type": "load", "status": "ok", "scenario": "sweep", "engine": f"m-vllm-{fmt}-cuda", "model": "m",
                "backend": "vllm", "format": fmt, "gpu_class": "sm90", "task": "anomaly", "time": 1.0,
                "device": "cuda", "machine": {"host": "h", "cpu": "c", "gpu_uuid": "GPU-1"},
                "capacity": {"concurrent_videos": capacity, "kv_cache_tokens": capacity * 750, "weights_gib": 15.0},
                "batch_drift": {"status": "pass"}, "alone": {"e2e_s": {"p50": 0.1}},
                "result": {"slo_e2e_s": 1.0, "largest_rate_per_s": rate, "converged": True,
                           "points": [point(rate, rate, 0.8, 0.9, True, 100),
                                      point(2 * rate, 1.5 * rate, None, 2.0, False, 50)]}}

    results = from_records([rec("bf16", 1000, 10.0), rec("ct_w4a16", 1100, 13.0)])
    md = render_markdown(results, title="t")
    assert "Under load (a real vLLM server)" in md
    row = next(line for line in md.splitlines() if line.startswith("| m | sm90 | ct_w4a16 |"))
    assert "1.30x / - / 1.10x" in row  # rate and capacity against bf16 on the same model and device class
    html = render_html(results, title="t")
    assert "Throughput against latency, m on sm90" in html and html.count("data:image/png;base64,") >= 1


def test_an_interrupted_sweep_keeps_its_finished_points_in_the_report():
    from core.load import report

    point = {"offered": {"rate_per_s": 9.5}, "videos_per_s": 8.0, "e2e_s": {"p99": 0.7, "max": 0.8},
             "slo": {"met": True}, "requests": 100}
    rec = {"type": "load", "status": "error", "scenario": "sweep", "engine": "m-vllm-fp8-cuda", "model": "m",
           "backend": "vllm", "format": "fp8", "gpu_class": "sm90", "task": "anomaly", "time": 1.0,
           "error_type": "KeyboardInterrupt", "error": "interrupted after 1 finished point(s)",
           "finished_points": [point]}
    lines = report.markdown([rec])
    assert "| m | fp8 | 9.5 | 0.7 | 0.8 | 8 | yes | 100 | - | - |" in lines
    assert any("fp8 error | sweep: interrupted after 1 finished point(s)" in line for line in lines)


@pytest.mark.parametrize("bf16_machine, flagged", [
    ({"host": "h", "cpu": "c", "gpu_uuid": "GPU-1"}, False),  # one card, one host: a ratio of formats
    ({"host": "h2", "cpu": "c", "gpu_uuid": "GPU-2"}, True),  # another lease: machines differ too
    (None, True),  # written before records named their machine: cannot be shown to be the same
])
def test_a_ratio_to_a_reference_from_another_machine_is_marked(bf16_machine, flagged):
    from core.load import report

    def rec(fmt, streams, machine):
        r = {"type": "load", "status": "ok", "scenario": "camera", "engine": f"m-vllm-{fmt}-cuda", "model": "m",
             "backend": "vllm", "format": fmt, "gpu_class": "sm90", "task": "anomaly", "time": 1.0, "device": "cuda",
             "capacity": {"concurrent_videos": 100}, "batch_drift": {"status": "pass"},
             "result": {"largest_streams": streams, "period_s": 2.0, "exact": True, "points": []}}
        return {**r, "machine": machine} if machine else r

    here = {"host": "h", "cpu": "c", "gpu_uuid": "GPU-1"}
    lines = report.markdown([rec("bf16", 50, bf16_machine), rec("fp8", 60, here)])
    row = next(line for line in lines if line.startswith("| m | sm90 | fp8 |"))
    assert ("1.20x† / 1.00x†" in row) is flagged and ("1.20x / 1.00x" in row) is not flagged
    assert (report.ELSEWHERE_NOTE in lines) is flagged


@pytest.mark.parametrize("over, n, verdict", [
    (0, 100, "within noise"),  # a p99 from 100 requests cannot show that at most 1% are over
    (0, 298, "within noise"),
    (0, 299, "met"),  # 0.99 ** 299 <= 0.05: the smallest sample whose 95% upper bound is <= 1%
    (1, 100, "within noise"),
    (3, 100, "within noise"),
    (4, 100, "missed"),  # 95% lower bound 1.4% > 1%
    (17, 100, "missed"),
    (0, 0, "no requests"),
])
def test_a_point_says_whether_its_sample_can_tell_the_slo_met_or_missed(over, n, verdict):
    conf = sc.slo_confidence(over, n)
    assert conf["verdict"] == verdict
    assert conf["requests_to_confirm_met"] == 299
    if n:
        low, high = conf["over_share_bounds"]
        assert 0.0 <= low <= over / n <= high <= 1.0


def test_the_report_counts_each_sweep_points_requests_over_the_slo_and_brackets_the_rate():
    from core.load import report

    def point(rate, p99, within):  # a record written before the verdict was kept: counts only
        return {"offered": {"rate_per_s": rate}, "videos_per_s": rate * 0.8, "e2e_s": {"p99": p99, "max": p99},
                "slo": {"met": p99 <= 1.0, "within": within}, "requests": 100}

    rec = {"type": "load", "status": "ok", "scenario": "sweep", "engine": "m-vllm-bf16-cuda", "model": "m",
           "backend": "vllm", "format": "bf16", "gpu_class": "sm90", "task": "anomaly", "time": 1.0,
           "capacity": {}, "batch_drift": {"status": "pass"},
           "result": {"slo_e2e_s": 1.0, "largest_rate_per_s": 22.2, "converged": True,
                      "points": [point(22.2, 0.87, 100), point(23.4, 1.13, 83), point(29.6, 1.13, 80),
                                 point(24.0, 1.01, 98)]}}
    lines = report.markdown([rec])
    row = next(line for line in lines if line.startswith("| m | sm90 | bf16 |"))
    assert "22.2 (p99 e2e <= 1 s; missed at 95% from 23.4)" in row
    assert "| m | bf16 | 22.2 | 0.87 | 0.87 | 17.8 | yes | 100 | 0 | within noise |" in lines
    assert "| m | bf16 | 24 | 1.01 | 1.01 | 19.2 | no | 100 | 2 | within noise |" in lines
    assert "| m | bf16 | 23.4 | 1.13 | 1.13 | 18.7 | no | 100 | 17 | missed |" in lines


def test_a_sweeps_rate_is_confirmed_with_fresh_arrivals_and_the_report_says_so(tmp_path):
    from core.load import report

    with standin(tmp_path, "ok") as server:
        run = sc.LoadRun(server.url, [_item("a"), _item("b")], slo_s=60.0, check_alive=server.check_alive)
        search = run.sweep(start_rate=25.0, n=4, max_points=2, confirm_n=299)
    # the stand-in answers every request well within 60 s: no point fails, so the search ends at max_points
    assert [p["offered"]["rate_per_s"] for p in search["points"]] == [25.0, 50.0]
    assert search["largest_rate_per_s"] == 50.0 and search["first_failing_rate_per_s"] is None
    conf = search["confirmation"]
    assert conf["offered"] == {"rate_per_s": 50.0, "requests": 299, "arrivals": "Poisson, seed 1"}
    assert conf["slo"]["confidence"]["verdict"] == "met" and search["confirmed"] is True, conf["error_examples"]
    assert len(search["_results"]) == 3  # the confirmation's answers are judged for batch drift too
    search.pop("_results")
    rec = {"type": "load", "status": "ok", "scenario": "sweep", "engine": "m-vllm-bf16-cuda", "model": "m",
           "backend": "vllm", "format": "bf16", "gpu_class": "sm90", "task": "anomaly", "time": 1.0,
           "capacity": {}, "batch_drift": {"status": "pass"}, "result": {**search, "slo_e2e_s": 60.0}}
    row = next(line for line in report.markdown([rec]) if line.startswith("| m | sm90 | bf16 |"))
    assert "50 (p99 e2e <= 60 s, not converged; confirmed at 95%: 0 of 299 over)" in row
    # a confirmation with too few requests cannot confirm, and says so
    search_small = {**search, "confirmation": {**conf, "requests": 100,
                                                "slo": {**conf["slo"], "confidence": sc.slo_confidence(0, 100)}}}
    row = next(line for line in report.markdown([{**rec, "result": {**search_small, "slo_e2e_s": 60.0}}])
               if line.startswith("| m | sm90 | bf16 |"))
    assert "not confirmed at 95%: 0 of 100 over (within noise)" in row


class _Threshold(sc.LoadRun):
    """A camera scenario that meets its period up to ``limit`` streams, without a server."""

    def __init__(self, limit: int) -> None:
        super().__init__("http://unused", [], slo_s=2.0)
        self.limit = limit

    def camera(self, streams, period_s, clips_per_stream):
        ok = streams <= self.limit
        outcome = Outcome(index=0, clip="c", scheduled=0.0, first_token=0.5, end=1.0 if ok else 3.0,
                          token_ids=[1], text="x")
        return sc.ScenarioResult("camera", {"streams": streams}, [outcome], 1.0, slo_s=period_s)


@pytest.mark.parametrize("limit, start", [(83, 24), (95, 24), (70, 24), (25, 24), (1, 1), (5, 1), (3, 8)])
def test_a_camera_search_finds_the_exact_stream_count(limit, start):
    search = _Threshold(limit).camera_search(period_s=2.0, clips_per_stream=3, start_streams=start)
    tried = [p["offered"]["streams"] for p in search["points"]]
    found = (search["largest_streams"], search["first_failing_streams"], search["exact"])
    assert found == (limit, limit + 1, True), tried


def test_the_reports_batch_drift_cell_gives_the_counts_behind_its_verdict():
    from core.load.report import drift_cell

    def drift(status, n, flips, changed, needed=None):
        sens = [{"metric": "flip_rate", "conclusive": True, "clips_needed": 16, "n": n}]
        if needed:
            sens.append({"metric": "accuracy_drop", "conclusive": False, "clips_needed": needed, "n": 12})
        return {"status": status, "n": n, "flips": flips, "token_sequence_changes": changed,
                "verdict": {"sensitivity": sens}}

    cell = drift_cell({"offline": drift("inconclusive", 100, 0, 19, 78), "sweep": drift("inconclusive", 800, 0, 2, 78)})
    assert cell == ("inconclusive: 0 label flips in 900 answers, 21 with later tokens changed; "
                    "cannot tell: accuracy_drop needs 78 clips, has 12")
    assert drift_cell({"camera": drift("fail", 300, 40, 90), "offline": drift("pass", 1000, 0, 0)}) == \
        "camera: fail, offline: pass: 40 label flips in 1,300 answers, 90 with later tokens changed"
    assert drift_cell({"offline": {"status": "pass"}}) == "pass"  # an older record kept no counts
    assert drift_cell({}) == "-"
