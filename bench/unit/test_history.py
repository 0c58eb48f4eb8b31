"""Latency history per GPU class: the SQLite store, the gate (warn 5%, fail 10% beyond the noise),
clock changes shown as such, and NVML clocks read field by field."""

from __future__ import annotations

import sys
import types

import pytest

from core.metrics import history as h

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]

CLOCKS = {"sm_max_mhz": 1980, "mem_max_mhz": 2619, "sm_app_mhz": 1980, "power_limit_w": 700.0, "sm_mhz": 1980}


def rec(video: str, rounds: list[float], *, gpu_class: str = "sm90", clocks=CLOCKS) -> dict:
    return {"type": "cell", "kind": "timed", "model": "m", "backend": "vllm", "format": "fp8", "device": "cuda",
            "task": "anomaly", "video": video, "status": "ok", "rounds_s": rounds, "gpu_class": gpu_class,
            "gpu_name": "H200", "gpu_clocks": dict(clocks)}


@pytest.fixture
def db(tmp_path):
    store = h.History(tmp_path / "history.sqlite")
    for i, median in enumerate([0.100, 0.101, 0.099, 0.100, 0.1005]):
        store.add(f"run{i}", {"m/vllm/fp8/cuda/anomaly/a": [median] * 3}, gpu_class="sm90", clocks=CLOCKS, when=i)
    store.add("other-gpu", {"m/vllm/fp8/cuda/anomaly/a": [0.5] * 3}, gpu_class="sm100", clocks=CLOCKS, when=9)
    return store


# The fixture's five sm90 medians, by hand: median 0.100 s; absolute deviations 0, 0.001, 0.001, 0, 0.0005
# -> MAD 0.0005 s; noise = 2 x 1.4826 x 0.0005 s = 0.0014826 s = 1.4826% of 0.100 s. Warn beyond
# 1.4826 + 5 = 6.4826%, fail beyond 1.4826 + 10 = 11.4826%.
NOISE_PCT = 1.4826


@pytest.mark.parametrize("median,status", [(0.100, "ok"), (0.1060, "ok"), (0.1065, "warn"), (0.1110, "warn"),
                                           (0.1115, "fail"), (0.113, "fail"), (0.092, "faster")])
def test_gate_against_the_rolling_history(db, median, status):
    verdict = h.judge_record(db, rec("a", [median] * 3), run_id="now")
    assert verdict.status == status, verdict.message
    assert verdict.runs == 5 and verdict.baseline_s == pytest.approx(0.100)  # the sm100 run is another class
    assert verdict.noise_pct == pytest.approx(NOISE_PCT)


def test_a_noisy_candidate_does_not_widen_its_own_band(db):
    # Median 0.113 s (+13%) with rounds spread +-15%: the band is still the history's 1.48%, so +13% fails.
    verdict = h.judge_record(db, rec("a", [0.096, 0.113, 0.130]), run_id="now")
    assert verdict.noise_pct == pytest.approx(NOISE_PCT) and verdict.status == "fail", verdict.message


def test_fewer_than_five_earlier_runs_give_no_verdict(tmp_path):
    store = h.History(tmp_path / "h.sqlite")
    for i in range(4):
        store.add(f"run{i}", {"m/vllm/fp8/cuda/anomaly/a": [0.100] * 3}, gpu_class="sm90", clocks=CLOCKS, when=i)
    for median in (0.100, 0.150, 0.050):  # neither a 50% slowdown nor a 50% speed-up gets a verdict
        verdict = h.judge_record(store, rec("a", [median] * 3), run_id="now")
        assert verdict.status == "insufficient history" and verdict.runs == 4 and verdict.min_runs == 5
        assert "4 earlier runs" in verdict.message and "at least 5" in verdict.message
        assert verdict.baseline_s is None and verdict.noise_pct is None
    store.add("run4", {"m/vllm/fp8/cuda/anomaly/a": [0.100] * 3}, gpu_class="sm90", clocks=CLOCKS, when=4)
    assert h.judge_record(store, rec("a", [0.150] * 3), run_id="now").status == "fail"


def test_clocks_are_compared_with_every_run_of_the_window(db):
    slow = {**CLOCKS, "sm_app_mhz": 1500, "sm_mhz": 1500}
    for i in range(3):  # older runs at lower application clocks, 30% slower; the newest run matches the candidate
        db.add(f"slow{i}", {"m/vllm/fp8/cuda/anomaly/a": [0.130] * 3}, gpu_class="sm90", clocks=slow, when=-3 + i)
    verdict = h.judge_record(db, rec("a", [0.100] * 3), run_id="now")
    # The baseline is the five runs at the candidate's clocks (0.100 s), not the median of all eight (0.10075 s).
    assert verdict.status == "ok" and verdict.baseline_s == pytest.approx(0.100) and verdict.runs == 5
    assert verdict.excluded_runs == 3 and verdict.clock_changes == ("sm_app_mhz 1500 -> 1980",)
    assert verdict.noise_pct == pytest.approx(NOISE_PCT) and "3 of the 8 earlier runs" in verdict.message


def test_a_clock_change_is_reported_as_such(db):
    slow = {**CLOCKS, "sm_app_mhz": 1500, "sm_mhz": 1500}
    for median in (0.13, 0.100):  # no earlier run at these settings: no verdict, slower or not
        verdict = h.judge_record(db, rec("a", [median] * 3, clocks=slow), run_id="now")
        assert verdict.status == "clock change" and verdict.clock_changes == ("sm_app_mhz 1980 -> 1500",)
        assert verdict.runs == 0 and verdict.excluded_runs == 5 and verdict.baseline_s is None
    assert h.clock_changes(CLOCKS, {**CLOCKS, "sm_mhz": 1400}) == []  # the current clock moves with load


def test_too_little_history_and_adding_runs(tmp_path):
    store = h.History(tmp_path / "h.sqlite")
    assert h.judge_record(store, rec("a", [0.1] * 3), run_id="r1").status == "insufficient history"
    for i in range(3):
        assert h.add_records(store, [rec("a", [0.1] * 3), {"status": "error"}], run_id=f"r{i}") == 1
    assert h.judge_record(store, rec("a", [0.1] * 3), run_id="r9").runs == 3
    assert h.judge_record(store, rec("a", [0.1] * 3), run_id="r2").runs == 2  # a run never judges itself
    assert h.judge_record(store, {"rounds_s": []}, run_id="x") is None


def test_gpu_clocks_reads_what_nvml_answers(monkeypatch):
    class NotSupported(Exception):
        pass

    def unsupported(*_):
        raise NotSupported

    fake = types.SimpleNamespace(
        NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1, NVML_TEMPERATURE_GPU=0, nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: "h", nvmlDeviceGetClockInfo=lambda hd, c: [1755, 2619][c],
        nvmlDeviceGetMaxClockInfo=lambda hd, c: [1980, 2619][c], nvmlDeviceGetApplicationsClock=unsupported,
        nvmlDeviceGetEnforcedPowerLimit=lambda hd: 700000, nvmlDeviceGetPowerUsage=lambda hd: 312500,
        nvmlDeviceGetPerformanceState=lambda hd: 0, nvmlDeviceGetTemperature=lambda hd, s: 41,
        nvmlDeviceGetCurrentClocksEventReasons=lambda hd: 4)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    clocks = h.gpu_clocks(0)
    assert clocks == {"sm_mhz": 1755, "mem_mhz": 2619, "sm_max_mhz": 1980, "mem_max_mhz": 2619,
                      "power_limit_w": 700.0, "power_w": 312.5, "pstate": 0, "temperature_c": 41,
                      "clock_event_reasons": 4}
    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=unsupported))
    assert h.gpu_clocks(0) == {}


# --- --history end to end: child pytest sessions of the suite on the tiny model ---------------------

FAST = 1e-6
"""A median no real generate call reaches (1 us): earlier runs this fast make any real run a slowdown."""


def _suite_run(pytester, db, out):
    from core.base import paths

    return pytester.runpytest_subprocess(
        str(paths.PROJECT_ROOT / "bench" / "test_cells.py"), "-m", "cpu", "-p", "no:cacheprovider",
        "--rootdir", str(paths.PROJECT_ROOT), "-c", str(paths.PROJECT_ROOT / "pyproject.toml"),
        "--model", "tiny", "--backend", "hf", "--format", "bf16", "--max-videos", "1",
        "--rounds", "1", "--warmup-rounds", "0",
        "--history", str(db), "--results", str(out))


@pytest.mark.slow
def test_history_gate_end_to_end_in_pytest_sessions(pytester, tmp_path):
    from core.base import results

    db = tmp_path / "history.sqlite"
    first = _suite_run(pytester, db, tmp_path / "r1.jsonl")
    first.assert_outcomes(passed=1)
    (rec,) = results.load(tmp_path / "r1.jsonl").speed()
    assert rec["history"]["status"] == "insufficient history" and rec["history"]["runs"] == 0, rec["history"]
    cell = h.cell_name(rec)
    store = h.History(db)
    # the first run is in the history: one run of this cell, at its median
    assert ([m for m, _ in store.earlier(cell, rec["gpu_class"], before_run="-")]
            == [pytest.approx(rec["history"]["median_s"])])
    # Four earlier runs far faster than this machine can be: with the first run, five in all.
    for i in range(4):
        store.add(f"preloaded{i}", {cell: [FAST] * 2}, gpu_class=rec["gpu_class"], when=i)
    second = _suite_run(pytester, db, tmp_path / "r2.jsonl")
    second.assert_outcomes(failed=1)
    second.stdout.fnmatch_lines(["*latency regression against the history*"])
    (rec2,) = results.load(tmp_path / "r2.jsonl").speed()
    verdict = rec2["history"]
    assert verdict["status"] == "fail" and verdict["runs"] == 5 and verdict["baseline_s"] == FAST, verdict
    assert len(store.earlier(cell, rec["gpu_class"], before_run="-")) == 6  # the failing run joined the history too
