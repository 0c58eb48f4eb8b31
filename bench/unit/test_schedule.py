"""Cutting the matrix into work units for several GPUs: groups stay whole when they are judged,
dominant unjudged groups split only while the extra load pays, and every test has a unit."""

from __future__ import annotations

import pytest

from core.plan import capability
from core.plan import device as devices
from core.plan.schedule import lpt_makespan, plan_units

pytestmark = pytest.mark.cpu

H200 = devices.DeviceInfo(kind="cuda", name="NVIDIA H200", capability=(9, 0), memory_gib=141)


class _State:
    """What plan_units reads of a session: settings, plans, clips per task."""

    def __init__(self, settings, plans, clips):
        self.settings, self.plans, self._clips = settings, plans, clips

    def clips_for(self, task):
        return self._clips


@pytest.fixture
def gpu_state(tmp_path, monkeypatch):
    from core.inputs import dataset
    from core.plan.matrix import plan_engines
    from core.plan.settings import build

    monkeypatch.setattr(devices, "primary", lambda: H200)
    monkeypatch.setattr(capability, "installed", lambda p: True)
    s = build(tmp_path, {"models": [], "gpu_models": ["tiny", "qwen2.5-vl-3b", "qwen2.5-vl-7b"],
                         "backends": ["hf", "vllm"], "formats": ["bf16", "fp8", "nvfp4", "int4_weight_only"]}, env={})
    return _State(s, plan_engines(s), dataset.fixture_clips())


def test_every_test_has_a_unit_and_judged_groups_stay_whole(gpu_state):
    plan = plan_units(gpu_state, 2)
    for p in gpu_state.plans:
        assert plan.by_param[p.golden_id("anomaly")]
        for c in gpu_state.clips_for("anomaly"):
            assert plan.by_param[f"{p.engine.id}-anomaly-{c.id}"]
    # the tiny model is judged here (goldens): all its formats on a backend stay in one unit
    tiny_units = {plan.by_param[f"{p.engine.id}-anomaly-normal_01"] for p in gpu_state.plans
                  if p.engine.model == "tiny" and p.engine.backend == "hf"}
    assert tiny_units == {"group:cuda-tiny-hf"}


def test_a_balanced_matrix_is_not_split(gpu_state):
    plan = plan_units(gpu_state, 2)
    assert all(u.name.startswith("group:") for u in plan.units)
    assert plan.summary()["estimated_makespan_s"] <= 0.55 * plan.summary()["estimated_serial_s"]


def test_a_dominant_unjudged_group_is_split_and_the_estimate_beats_whole_groups(gpu_state):
    from core.plan.matrix import plan_engines
    from core.plan.settings import replace

    s = replace(gpu_state.settings, gpu_models=["tiny", "qwen2.5-vl-7b"], backends=["vllm"])
    gpu_state = _State(s, plan_engines(s), gpu_state.clips_for("anomaly"))
    plan = plan_units(gpu_state, 2)
    assert any(u.name.startswith("engine:qwen2.5-vl-7b") for u in plan.units), plan.summary()
    whole = plan_units(gpu_state, 1)  # one worker: nothing is split
    assert all(u.name.startswith("group:") for u in whole.units)
    serial = sum(u.cost_s for u in whole.units)
    assert lpt_makespan([u.cost_s for u in plan.units], 2) < lpt_makespan([u.cost_s for u in whole.units], 2)
    assert plan.summary()["estimated_makespan_s"] <= 0.6 * serial, plan.summary()
    # engine units cost no extra load: the split plan does the same total work
    assert sum(u.cost_s for u in plan.units) == pytest.approx(serial)


def test_splitting_stops_when_another_load_costs_more_than_it_saves():
    from types import SimpleNamespace

    from core.plan.schedule import Plan, Unit, _split

    engine = SimpleNamespace(engine=SimpleNamespace(id="m-vllm-bf16-cuda"), golden_id=lambda t: f"m-{t}")
    clips = [("anomaly", SimpleNamespace(id=f"v{i}")) for i in range(8)]
    out = Plan(workers=4, units=[Unit(name="group:g", group="g", cost_s=108.0, engines=("m-vllm-bf16-cuda",)),
                                 Unit(name="group:other", group="other", cost_s=1.0, engines=("x",))])
    _split(out, "g", [(engine, clips, 100.0, 8.0)], workers=4)  # loading costs 100 s, the cells only 8 s
    assert [u.name for u in out.units if u.group == "g"] == ["engine:m-vllm-bf16-cuda"]
