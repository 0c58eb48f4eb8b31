"""The ``vqbench`` command line as a user meets it: doctor, run, quantize and their errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from core import cli
from core.commands import doctor
from core.inputs import dataset
from core.plan import device as devices

pytestmark = pytest.mark.cpu

pytest_plugins = ["pytester"]


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_parser_import_nothing_heavy():
    code = ("import sys, core.cli; core.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'vllm', 'modelopt', 'av', 'numpy', 'core.tools.bundle', "
            "'core.suite.plugin', 'pytest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "core.cli", "--help"], capture_output=True, text=True,
                               check=True).stdout
    for command in ("doctor", "run", "quantize", "report", "compare", "bundle"):
        assert command in help_text
    run_help = subprocess.run([sys.executable, "-m", "core.cli", "run", "--help"], capture_output=True, text=True,
                              check=True).stdout
    for flag in ("--resume", "--decoder", "--decode-workers", "--decode-memory"):
        assert flag in run_help


def test_doctor_json_has_every_format_and_a_reason_for_every_no(capsys):
    code, out, _ = _main(capsys, "doctor", "--json")
    assert code == 0
    r = json.loads(out)
    from core.plan.formats import all_formats

    assert [row["format"] for row in r["capability"]] == [f.id for f in all_formats()]
    cells = {row["format"]: row["cells"] for row in r["capability"]}
    cpu = f"hf/{devices.CPU.gpu_class}"  # cpu, or cpu_fp32 where bf16 is emulated (AVX2)
    assert cells["bf16"][cpu]["runnable"]
    assert not cells["nvfp4"][cpu]["runnable"] and "CUDA" in cells["nvfp4"][cpu]["reason"]
    for row in r["capability"]:
        for where, v in row["cells"].items():
            assert v["runnable"] or v["reason"], f"{row['format']} {where}: a 'no' without a reason"
    assert r["packages"]["transformers"] and isinstance(r["warnings"], list)


def test_doctor_says_an_engine_serves_a_format_whose_tool_env_is_missing(capsys, monkeypatch, tmp_path):
    """Seen on an H200: with no llm-compressor environment there, doctor said vLLM could not run ct_w8a8,
    while the suite ran it (shape-only model) and served real checkpoints made elsewhere."""
    from core.plan import capability
    from core.plan import device as devices
    from core.plan.formats import get_format

    monkeypatch.setenv("VQBENCH_LLMCOMPRESSOR_PYTHON", str(tmp_path / "no-such-env" / "bin" / "python"))
    monkeypatch.setattr(capability, "missing_reason", lambda packages, purpose: None)  # every package "installed"
    code, out, _ = _main(capsys, "doctor", "--json")
    r = json.loads(out)
    assert code == 0 and not r["tools"]["llmcompressor"]["ready"]
    cell = {row["format"]: row["cells"] for row in r["capability"]}["ct_w8a8"][f"vllm/{devices.CPU.gpu_class}"]
    assert cell["runnable"] and cell["mode"] == "native"
    assert "checkpoints made elsewhere" in cell["reason"] and "environment" in cell["reason"]
    direct = capability.check("vllm", get_format("ct_w8a8"), devices.CPU)
    assert not direct.runnable and "no-such-env" in direct.reason  # the suite's own check still refuses to quantize


def test_doctor_text_prints_the_table(capsys):
    code, out, _ = _main(capsys, "doctor")
    assert code == 0 and "Capability" in out and "nvfp4" in out and f"hf/{devices.CPU.gpu_class}" in out


@pytest.mark.parametrize("version, warned", [("5.17.0", True), ("5.3.0", True), ("5.2.0", False),
                                             ("5.18.0", False), ("5.23.0", False), ("not-a-version", False)])
def test_doctor_warns_about_transformers_with_the_mrope_bug(version, warned):
    warnings = doctor.known_issues({"transformers": version})
    assert bool(warnings) is warned
    if warned:
        assert "second_per_grid_ts" in warnings[0] and version in warnings[0]


@pytest.fixture
def video_dir(fixture_clip_folder):
    """Two fixture clips and one broken file, without a manifest (a plain folder, no labels)."""
    d = fixture_clip_folder("videos", 2)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 2000)
    (d / "notes.txt").write_text("which camera is which\n" * 20)
    return d


@pytest.mark.slow
def test_run_writes_json_jsonl_and_csv_and_survives_a_broken_video(capsys, video_dir, tmp_path):
    out, answers = tmp_path / "run.json", tmp_path / "answers.csv"
    code, _, err = _main(capsys, "run", "--model", "tiny", "--device", "cpu", "--videos", str(video_dir),
                         "--output", str(out), "--csv", str(answers))
    assert code == 1, "a broken video makes the exit status non-zero"
    assert "estimated memory" in err and "broken" in err
    assert "1 file in" in err and "| notes.txt |" in err, "a file that is no video is named, not dropped"
    doc = json.loads(out.read_text())
    by_id = {r["video"]: r for r in doc["results"]}
    good = sorted(c.id for c in dataset.fixture_clips()[:2])
    assert sorted(by_id) == sorted(["broken", *good])
    assert by_id["broken"]["status"] == "error" and "broken.mp4" in by_id["broken"]["error"]
    for vid in good:
        r = by_id[vid]
        assert r["status"] == "ok" and r["predicted"] in ("Normal", "Anomaly")
        assert set(r["candidate_logprobs"]) == {"Normal", "Anomaly"}
        assert r["timings"]["total_s"] > 0 and r["tokens"]["video"] > 0
    assert doc["summary"]["videos"] == 3 and doc["summary"]["ok"] == 2 and doc["summary"]["errors"] == 1
    assert doc["summary"]["skipped_files"] == 1 and doc["skipped"][0]["path"] == "notes.txt"
    assert doc["skipped"][0]["reason"]
    assert all(by_id[v]["timings"]["video_wait_s"] >= 0 and by_id[v]["frames"]["decoder"] == "pyav" for v in good)
    lines = [json.loads(x) for x in out.with_suffix(".jsonl").read_text().splitlines() if x.strip()]
    assert {x.get("video") for x in lines if "video" in x} == set(by_id)
    rows = list(csv.reader(answers.open()))
    assert rows[0] == ["id", "answer"]
    assert {r[0]: r[1] for r in rows[1:]} == {v: by_id[v]["parsed"] or by_id[v]["predicted"]
                                              for v in good}


@pytest.mark.parametrize("argv, message", [
    (["run", "--videos", "/no/such/folder"], "/no/such/folder: no such folder"),
    (["run", "--format", "nvfp4", "--device", "cpu"], "CUDA"),
    (["run", "--format", "fp4"], "Did you mean"),
    (["run", "--model", "qwen2.5-vl-7b", "--device", "cpu"], "shape-only"),
    (["quantize", "--format", "nvfp4", "--device", "cpu"], "CUDA"),
])
def test_bad_input_is_a_one_line_error(capsys, tmp_path, argv, message):
    code, _, err = _main(capsys, *argv, "--output" if argv[0] == "run" else "--model",
                         str(tmp_path / "o.json") if argv[0] == "run" else "tiny")
    assert code == 2
    assert err.startswith("vqbench: error:") and message in err, err


def test_output_path_that_is_a_directory_is_refused(capsys, tmp_path):
    code, _, err = _main(capsys, "run", "--output", str(tmp_path))
    assert code == 2 and "is a directory" in err


@pytest.mark.slow
def test_quantize_reports_layers_then_reuses_the_artifact(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    code, first, _ = _main(capsys, "quantize", "--model", "tiny", "--format", "int8_sq", "--device", "cpu")
    assert code == 0
    assert "calibrated in" in first and "quantizers enabled" in first and "artifact:" in first
    assert "language_model" in first, "the per-layer summary names the quantized layers"
    code, second, _ = _main(capsys, "quantize", "--model", "tiny", "--format", "int8_sq", "--device", "cpu")
    assert code == 0 and "reused from the artifact cache" in second


def test_quantize_of_bf16_makes_nothing(capsys):
    code, _, err = _main(capsys, "quantize", "--format", "bf16")
    assert code == 0 and "nothing to make" in err


@pytest.fixture(scope="module")
def pickle_checkpoint(tmp_path_factory):
    """The tiny model as a checkpoint whose only weights are a pickle file (``pytorch_model.bin``)."""
    torch = pytest.importorskip("torch", reason="needs torch: pip install 'vqbench[hf]'")
    from safetensors.torch import load_file

    from core.models import registry

    src = registry.materialize(registry.resolve("tiny"))
    d = tmp_path_factory.mktemp("pickle-only") / "tiny-pickle"
    d.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and not f.name.startswith("."):
            shutil.copy(f, d / f.name)
    state = {}
    for f in src.glob("*.safetensors"):
        state.update(load_file(str(f)))
    torch.save(state, d / "pytorch_model.bin")
    return d


@pytest.mark.slow
def test_allow_pickle_reaches_the_checkpoint_check_from_the_cli(capsys, pickle_checkpoint, tmp_path):
    """--allow-pickle used to stop at the option parser: a pickle-only checkpoint was refused even with it."""
    argv = ["run", "--model", str(pickle_checkpoint), "--device", "cpu", "--max-videos", "1",
            "--output", str(tmp_path / "o.json")]
    code, _, err = _main(capsys, *argv)
    assert code == 2 and "only pickle weights" in err and "--allow-pickle" in err
    code, _, err = _main(capsys, *argv, "--allow-pickle")
    assert code == 0, err
    (rec,) = json.loads((tmp_path / "o.json").read_text())["results"]
    assert rec["status"] == "ok" and rec["model"] == "tiny-pickle"


@pytest.mark.slow
def test_allow_pickle_reaches_the_checkpoint_check_from_pytest(pytester, pickle_checkpoint):
    from core.base import paths

    args = [str(paths.PROJECT_ROOT / "bench" / "test_cells.py"), "-m", "cpu", "-p", "no:cacheprovider", "-rs",
            "--rootdir", str(paths.PROJECT_ROOT), "-c", str(paths.PROJECT_ROOT / "pyproject.toml"),
            "--model", str(pickle_checkpoint), "--backend", "hf", "--format", "bf16", "--max-videos", "1",
            "--rounds", "1", "--warmup-rounds", "0"]
    refused = pytester.runpytest_subprocess(*args)
    refused.assert_outcomes(skipped=1)
    refused.stdout.fnmatch_lines(["*only pickle weights*--allow-pickle*"])
    allowed = pytester.runpytest_subprocess(*args, "--allow-pickle")
    allowed.assert_outcomes(passed=1)


@pytest.mark.slow
def test_perf_probes_run_on_cpu(tmp_path):
    """The GPU measurement's logic on the CPU with the tiny model (no timing asserted): decode-ahead vs
    the engine alone on the same clips, and the NVDEC probe saying why it cannot run here."""
    folder = tmp_path / "clips"
    base = [sys.executable, "-m", "core.tools.perf"]
    res = subprocess.run([*base, "decode-ahead", "--folder", str(folder), "--clips", "3", "--size", "128x96",
                          "--clip-fps", "12", "--seconds", "1", "--model", "tiny", "--backend", "hf", "--device", "cpu",
                          "--passes", "1", "--json", str(tmp_path / "da.json")],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((tmp_path / "da.json").read_text())
    modes = [r["mode"] for r in rows]
    assert modes == ["engine alone (pre-decoded)", "decode-ahead [pyav]", "serial (no workers) [pyav]"]
    assert all(r["videos"] == 3 and r["videos_per_s"] > 0 for r in rows)
    assert rows[1]["errors"] == 0 and rows[1]["workers"] == 1 and rows[1]["decode_s"] > 0
    res = subprocess.run([*base, "nvdec", "--folder", str(folder), "--clips", "3", "--json", str(tmp_path / "nv.json")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((tmp_path / "nv.json").read_text())
    assert rows[0]["decoder"] == "pyav" and rows[0]["clips"] == 3 and rows[0]["errors"] == 0
    assert rows[-1]["decoder"] in ("nvdec", "nvdec vs pyav")
    if rows[-1]["decoder"] == "nvdec":
        assert "unavailable" in rows[-1]["errors"]


@pytest.mark.slow
def test_run_in_batches_keeps_order_and_compares_with_one_at_a_time(capsys, video_dir, tmp_path):
    """--batch 2 over two clips and a broken file (HF answers a batch one after another: the mechanics,
    not the speed): every file keeps its place, the batched answers are untimed records with their batch,
    and the clips answered again one at a time give the same answers (no batch drift)."""
    out = tmp_path / "run.json"
    code, _, err = _main(capsys, "run", "--model", "tiny", "--device", "cpu", "--videos", str(video_dir),
                         "--output", str(out), "--batch", "2", "--decode-workers", "0")
    assert code == 1, "the broken video still fails"
    doc = json.loads(out.read_text())
    names = sorted(["broken", *(c.id for c in dataset.fixture_clips()[:2])])
    assert [r["video"] for r in doc["results"]] == names  # the folder's order, the broken file in its place
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert len(ok) == 2 and all(r["kind"] == "scoring" and r["batch"]["size"] == 2 for r in ok)
    assert next(r for r in doc["results"] if r["video"] == "broken")["error_type"] == "VideoError"
    b = doc["batching"]
    assert b["videos"] == 2 and b["batch_drift"]["flips"] == 0 and b["batch_drift"]["n"] == 2
    assert b["batch_drift"]["token_sequence_changes"] == 0
    assert "batches of 2:" in err


def test_an_engine_that_fails_to_load_in_batch_mode_leaves_every_queued_clip_its_record(capsys, video_dir,
                                                                                         tmp_path, monkeypatch):
    from core.cells import runner

    def refuse(self, plan):
        raise runner.EngineLoadError(f"loading {plan.engine.id} failed: no weights here")

    monkeypatch.setattr(runner.EnginePool, "get", refuse)
    out = tmp_path / "run.json"
    code, _, err = _main(capsys, "run", "--model", "tiny", "--device", "cpu", "--videos", str(video_dir),
                         "--output", str(out), "--batch", "2", "--decode-workers", "0")
    assert code != 0 and "no weights here" in err
    lines = [json.loads(x) for x in out.with_suffix(".jsonl").read_text().splitlines() if x.strip()]
    cells = {r["video"]: r for r in lines if r.get("type") == "cell"}
    good = {c.id for c in dataset.fixture_clips()[:2]}
    assert good <= set(cells) and all(cells[v]["error_type"] == "EngineLoadError" for v in good), cells
