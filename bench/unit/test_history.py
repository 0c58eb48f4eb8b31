"""Latency history per GPU class: the SQLite store, the gate (warn 5%, fail 10% beyond the noise),
clock changes shown as such, and NVML clocks read field by field."""

from __future__ import annotations

import sys
import types

import pytest

from core.metrics import history as h

pytestmark = pytest.mark.cpu

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


@pytest.mark.parametrize("median,status", [(0.100, "ok"), (0.1065, "warn"), (0.113, "fail"), (0.092, "faster")])
def test_gate_against_the_rolling_history(db, median, status):
    verdict = h.judge_record(db, rec("a", [median] * 3), run_id="now")
    assert verdict.status == status, verdict.message
    assert verdict.runs == 5 and verdict.baseline_s == pytest.approx(0.100)  # the sm100 run is another class
    # noise: 2 x 1.4826 x MAD(0.100, 0.101, 0.099, 0.100, 0.1005) = 2 x 1.4826 x 0.0005 -> 1.48%
    assert verdict.noise_pct == pytest.approx(100 * 2 * 1.4826 * 0.0005 / 0.100)


def test_noisy_rounds_widen_the_band(db):
    verdict = h.judge_record(db, rec("a", [0.096, 0.113, 0.130]), run_id="now")
    assert verdict.noise_pct == pytest.approx(100 * (0.130 - 0.096) / 2 / 0.113) and verdict.status == "ok"


def test_a_clock_change_is_reported_as_such(db):
    slow = {**CLOCKS, "sm_app_mhz": 1500, "sm_mhz": 1500}
    verdict = h.judge_record(db, rec("a", [0.13] * 3, clocks=slow), run_id="now")
    assert verdict.status == "clock change" and verdict.clock_changes == ("sm_app_mhz 1980 -> 1500",)
    assert h.clock_changes(CLOCKS, {**CLOCKS, "sm_mhz": 1400}) == []  # the current clock moves with load


def test_too_little_history_and_adding_runs(tmp_path):
    store = h.History(tmp_path / "h.sqlite")
    assert h.judge_record(store, rec("a", [0.1] * 3), run_id="r1").status == "no history"
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
