"""The drift gate end to end, in a child pytest run: a format over its threshold fails its cell and
prints the offending videos side by side; the same format under the default limits passes, as
INCONCLUSIVE on 3 clips (too few to see its limits), and fails as such under
``--drift-inconclusive fail``."""

from __future__ import annotations

import pytest

from core.base import paths

pytestmark = [pytest.mark.cpu, pytest.mark.slow]

pytest_plugins = ["pytester"]


def _run(pytester, fmt, *extra):
    root = paths.PROJECT_ROOT
    return pytester.runpytest_subprocess(
        str(root / "bench" / "test_drift.py"), "-p", "no:cacheprovider", "--rootdir", str(root),
        "-c", str(root / "pyproject.toml"), "-m", "cpu", "--model", "tiny-trained", "--backend", "hf",
        "--format", "bf16", "--format", fmt, "--max-videos", "3", "-s", *extra)


def test_a_format_over_its_threshold_fails_and_names_the_videos(pytester):
    res = _run(pytester, "int4_awq", "--threshold", "int4_awq.max_mean_kl=0", "--threshold", "int4_awq.max_kl=0")
    res.assert_outcomes(passed=1, failed=1)  # bf16's run-to-run check passes, int4_awq fails
    res.stdout.fnmatch_lines([
        "*drift int4_awq vs bf16 (reference): FAIL*",
        "*mean_kl = * nats > limit max_mean_kl 0*",
        "*video*reference*candidate*KL*",
        "*_0[1-2]*",
    ])


def test_a_close_format_passes_under_default_limits(pytester):
    res = _run(pytester, "int8_weight_only")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines([
        "*drift int8_weight_only vs bf16 (reference): INCONCLUSIVE*passes*",
        "*flip_rate: 3 clips detect flip_rate >= 41.5%*above the limit 10.0%*16 clips would see it*",
        "*KL (nats)*mean*",
        "*vocab KL     answer position, 3 clips: mean * +- *",
        "*vision       3 clips*cosine min 1.000000*",  # an LM-only format leaves the vision tower exact
    ])


def test_an_inconclusive_verdict_fails_when_asked(pytester):
    res = _run(pytester, "int8_weight_only", "--drift-inconclusive", "fail")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*INCONCLUSIVE*fails: --drift-inconclusive fail*"])
