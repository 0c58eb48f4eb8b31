"""The plugin reads marks and fixtures, never the suite's own test names: what an engine test judges
(``@pytest.mark.vqbench(judge=...)``), which timeline phase a test counts in, and every marker it emits
registered (``--strict-markers``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from core.base.errors import ConfigError
from core.suite import params

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]


@dataclass
class _Node:
    """What ``judge_of`` and ``phase_of`` read of a pytest item or function definition."""

    marks: dict[str, pytest.Mark] = field(default_factory=dict)
    fixturenames: tuple[str, ...] = ()
    nodeid: str = "test_x.py::test_x"

    def get_closest_marker(self, name: str):
        return self.marks.get(name)


def _marked(**kwargs) -> dict[str, pytest.Mark]:
    return {params.MARK: getattr(pytest.mark, params.MARK)(**kwargs).mark}


def test_judge_and_phase_come_from_the_mark_and_the_fixtures():
    assert params.judge_of(_Node(_marked(judge="golden"))) == "golden"
    assert params.judge_of(_Node(_marked(judge="drift"))) == "drift"
    assert params.judge_of(_Node()) == "drift"  # an engine test without the marker: judged as before, on drift
    with pytest.raises(ConfigError, match="judge is one of 'golden', 'drift'"):
        params.judge_of(_Node(_marked(judge="goldens")))
    assert params.phase_of(_Node(_marked(judge="golden"), ("vqbench_engine",))) == "goldens"
    assert params.phase_of(_Node(_marked(judge="drift"), ("vqbench_engine",))) == "drift"
    assert params.phase_of(_Node(_marked(judge="drift", phase="mine"), ("vqbench_engine",))) == "mine"
    assert params.phase_of(_Node({}, ("vqbench_cell", "benchmark"))) == params.CELL_PHASE
    assert params.phase_of(_Node({}, ("vqbench_engine",))) == params.OTHER_PHASE
    assert params.phase_of(_Node()) == params.OTHER_PHASE


ENGINE_TESTS = '''
import pytest

@pytest.mark.vqbench(judge="golden")
def test_answers_as_recorded(vqbench_engine):
    pass

@pytest.mark.vqbench(judge="drift")
def test_close_to_bf16(vqbench_engine):
    pass

def test_golden(vqbench_engine):  # the suite's own name, without the marker: judged on drift
    pass
'''


def test_an_engine_test_is_judged_by_its_mark_whatever_its_name(pytester):
    """tiny has random weights: its goldens are judged, its drift against bf16 never is (deselected as
    structural), so only the golden-judged test of a quantized format is left."""
    pytester.makepyfile(test_engines=ENGINE_TESTS)
    res = pytester.runpytest_subprocess("test_engines.py", "-p", "no:cacheprovider", "-p", "vqbench", "-m", "cpu",
                                        "--collect-only", "-q", "--model", "tiny", "--backend", "hf",
                                        "--format", "int8_weight_only")
    assert res.ret == 0, res.outlines
    collected = [line for line in res.outlines if "::" in line]
    assert collected == ["test_engines.py::test_answers_as_recorded[tiny-hf-int8_weight_only-cpu-anomaly]"], \
        res.outlines
    res.stdout.fnmatch_lines(["*deselected 2 matrix tests that can never run*", "*2  tiny has random weights*"])


def test_an_unknown_judge_stops_the_collection(pytester):
    pytester.makepyfile(test_engines='''
import pytest

@pytest.mark.vqbench(judge="goldens")
def test_x(vqbench_engine):
    pass
''')
    res = pytester.runpytest_subprocess("test_engines.py", "-p", "no:cacheprovider", "-p", "vqbench",
                                        "--collect-only", "-q", "--model", "tiny", "--backend", "hf",
                                        "--format", "bf16")
    assert res.ret != 0
    res.stdout.fnmatch_lines(["*UsageError: vqbench: test_engines.py::test_x: @pytest.mark.vqbench(judge='goldens'): "
                              "judge is one of 'golden', 'drift'*"])


def test_every_marker_the_matrix_emits_is_registered():
    """The plan marks each test with its device kind and backend; --strict-markers refuses any the plugin
    did not register, so the backends' markers come from the catalog."""
    from core.plan.catalog import BACKENDS
    from core.suite.plugin import markers

    registered = markers()
    assert {"cpu", "gpu", *BACKENDS, params.MARK, params.STRUCTURAL, "xdist_group"} <= set(registered)
    assert all(BACKENDS[b].description in registered[b] for b in BACKENDS)
