"""Unit tests run children (pytest sessions, `vqbench run`) that must see the environment a user
would, not the outer session's. Under `pytest -n N` the outer workers carry xdist's variables (a
child pytest would take itself for a worker and leave the merged --benchmark-json to a controller it
does not have), VQBENCH_RESULTS, the results file the controller hands its workers
(core/suite/xdist.py; a child would write its records there instead of where its test looks), and
VQBENCH_RUN_ID, the outer session's run id (every child session would stamp its records with it,
and two children sharing a results file could not be told apart)."""

import shutil

import pytest

_OUTER = ("VQBENCH_RESULTS", "VQBENCH_RUN_ID", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
          "PYTEST_XDIST_TESTRUNUID")


@pytest.fixture(autouse=True)
def _children_see_a_plain_environment(monkeypatch):
    for name in _OUTER:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fixture_clip_folder(tmp_path):
    """``make(name, n)``: a folder under the test's tmp_path holding copies of the first ``n`` fixture
    clips (no manifest: a plain folder of videos, as a user's would be)."""
    from core import dataset

    def make(name: str, n: int):
        d = tmp_path / name
        d.mkdir()
        for c in dataset.fixture_clips()[:n]:
            shutil.copy(c.path, d / c.path.name)
        return d

    return make
