"""Fixtures shared by the unit tests."""

import shutil

import pytest

XDIST_WORKER_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
"""What pytest-xdist itself exports in its worker processes. vqbench reads none of them (a worker knows
itself from ``config.workerinput``), but pytest-benchmark and syrupy read ``PYTEST_XDIST_WORKER`` from
the environment: a child session started by a test on an xdist worker (``pytest -n 2 bench/unit``)
would switch pytest-benchmark off (no --benchmark-json) and skip syrupy's report."""


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester whose child sessions (and any other child the test starts) do not inherit xdist's worker
    variables from this process."""
    for name in XDIST_WORKER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return pytester


@pytest.fixture
def fixture_clip_folder(tmp_path):
    """``make(name, n)``: a folder under the test's tmp_path holding copies of the first ``n`` fixture
    clips (no manifest: a plain folder of videos, as a user's would be)."""
    from core.inputs import dataset

    def make(name: str, n: int):
        d = tmp_path / name
        d.mkdir()
        for c in dataset.fixture_clips()[:n]:
            shutil.copy(c.path, d / c.path.name)
        return d

    return make
