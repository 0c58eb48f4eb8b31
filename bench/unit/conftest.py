"""Unit tests run children (pytest sessions, `vqbench run`) that must see the environment a user
would, not the outer session's. Under `pytest -n N` the outer workers carry xdist's variables (a
child pytest would take itself for a worker and leave the merged --benchmark-json to a controller it
does not have) and VQBENCH_RESULTS, the results file the controller hands its workers
(core/suite/xdist.py; a child would write its records there instead of where its test looks)."""

import pytest

_OUTER = ("VQBENCH_RESULTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


@pytest.fixture(autouse=True)
def _children_see_a_plain_environment(monkeypatch):
    for name in _OUTER:
        monkeypatch.delenv(name, raising=False)
