"""Reports and comparisons, on small synthetic result records (no model runs)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.browser import ImageCheckError, check_images, find_browser, png_size, screenshot, table_layout
from core import report
from core.base import results
from core.base.errors import VqbenchError
from core.base.results import ReportInputError, ResultsWriter
from core.report.compare import compare, main_compare

pytestmark = pytest.mark.cpu

GIB = 2**30


def cell(*, fmt: str = "bf16", video: str = "v1", predicted: str = "Normal", truth: str | None = "Normal",
         rounds: list[float] | None = None, backend: str = "hf", device: str = "cpu", model: str = "tiny",
         task: str = "anomaly", **extra: Any) -> dict[str, Any]:
    """A record shaped like core.cells.runner.record()."""
    rounds = [0.1, 0.1, 0.1] if rounds is None else rounds
    other = "Anomaly" if predicted == "Normal" else "Normal"
    rec = {
        "type": "cell", "cell": f"{model}-{backend}-{fmt}-{device}-{task}-{video}", "model": model,
        "backend": backend, "format": fmt, "device": device, "gpu_class": "cpu" if device == "cpu" else "sm90",
        "task": task, "video": video, "truth": truth, "predicted": predicted, "parsed": predicted,
        "correct": None if truth is None else predicted == truth, "answer": predicted,
        "candidate_logprobs": {predicted: -0.5, other: -1.5},
        "timings": {"video_decode_s": 0.02, "processor_s": 0.01, "prefill_s": 0.06, "decode_s": 0.03,
                    "decode_per_token_s": 0.01, "generate_s": 0.09, "total_s": rounds[-1] if rounds else 0.1,
                    "end_to_end_s": 0.12},
        "rounds_s": rounds, "tokens": {"prompt": 700, "video": 648, "new": 4},
        "load": {"load_s": 3.0, "quantize_s": 0.0, "quantize_cached": False, "weight_bytes": GIB, "load_count": 1},
        "memory": {"rss_peak_bytes": 2 * GIB}, "mode": "native", "mode_note": "", "status": "ok",
        "frames": {"frames": 16, "sampled_fps": 4.0, "width": 252, "height": 252},
    }
    rec.update(extra)
    return rec


def md_row(markdown: str, *first: str) -> list[str]:
    """The cells of the first Markdown table row that starts with ``first``."""
    prefix = "| " + " | ".join(first) + " |"
    rows = [line for line in markdown.splitlines() if line.startswith(prefix)]
    assert rows, (prefix, markdown)
    return [c.strip() for c in rows[0].strip("|").split(" | ")]


def md_headers(markdown: str, first: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def two_formats() -> list[dict[str, Any]]:
    """bf16 at ~1 s per video; int4_awq (quantized once, cached) at ~0.5 s and one flipped answer."""
    recs = [cell(video=v, predicted=p, truth=t, rounds=[1.0, 1.1, 0.9])
            for v, p, t in (("v1", "Normal", "Normal"), ("v2", "Anomaly", "Anomaly"), ("v3", "Normal", "Anomaly"))]
    load = {"load_s": 1.5, "quantize_s": 12.5, "quantize_cached": True, "weight_bytes": GIB // 2, "load_count": 1}
    recs += [cell(fmt="int4_awq", video=v, predicted=p, truth=t, rounds=[0.5, 0.55, 0.45], load=load)
             for v, p, t in (("v1", "Normal", "Normal"), ("v2", "Normal", "Anomaly"), ("v3", "Normal", "Anomaly"))]
    return recs


# --- Markdown --------------------------------------------------------------------------------------

def test_speed_table_numbers() -> None:
    md = report.render_markdown(two_formats())
    headers = md_headers(md, "model")
    ref = dict(zip(headers, md_row(md, "tiny", "hf", "bf16")))
    q = dict(zip(headers, md_row(md, "tiny", "hf", "int4_awq")))
    assert ref["latency s/video"] == "1.00" and ref["vs bf16"] == "reference" and ref["quantize s"] == "—"
    assert q["latency s/video"] == "0.500" and q["total s"] == "1.50" and q["vs bf16"] == "2.00x faster"
    assert q["quantize s"] == "12.50 (cached)" and q["load s"] == "1.50" and q["weights"] == "512.0 MiB"
    assert q["TTFT s"] == "0.060" and q["decode tok/s"] == "100.0" and q["video decode s"] == "0.020"
    assert q["memory held"] == "RSS 2.00 GiB" and q["errors"] == "0" and q["videos"] == "3"
    assert "roofline ratio" not in headers


def test_answer_table_marks_flips_and_rates() -> None:
    md = report.render_markdown(two_formats())
    assert md_row(md, "v1") == ["v1", "Normal", "Normal", "Normal", "yes"]
    assert md_row(md, "v2") == ["v2", "Anomaly", "Anomaly", f"**Normal** {report.FLIP_MARK}", "**no**"]
    assert md_row(md, "int4_awq")[1:] == ["66.7% (2/3)", "33.3% (1/3)"]
    assert md_row(md, "bf16")[1:] == ["reference", "66.7% (2/3)"]


def test_gpu_memory_roofline_and_errors_shown() -> None:
    mem = {"torch_peak_over_baseline_bytes": 3 * GIB, "nvml_peak_over_baseline_bytes": 4 * GIB, "rss_peak_bytes": GIB}
    recs = [cell(device="cuda", video=v, memory=mem, roofline={"prefill_floor_s": 0.01, "ratio": 2.5})
            for v in ("v1", "v2")]
    recs.append({"type": "cell", "model": "tiny", "backend": "hf", "format": "bf16", "device": "cuda",
                 "gpu_class": "sm90", "task": "anomaly", "video": "v3", "status": "error",
                 "error_type": "NumericsError", "error": "NaN logits\ntrace", "cell": "tiny-hf-bf16-cuda-anomaly-v3"})
    md = report.render_markdown(recs)
    row = dict(zip(md_headers(md, "model"), md_row(md, "tiny", "hf", "bf16")))
    assert row["memory held"] == "torch 3.00 GiB · NVML 4.00 GiB"
    assert row["roofline ratio"] == "2.50" and row["errors"] == "*1*" and row["videos"] == "2"
    assert "## Roofline" in md and "## Errors" in md and "NaN logits" in md and "trace" not in md
    assert md_row(md, "v3")[2] == "*error*"


def test_estimated_weights_print_as_estimates() -> None:
    """Dummy weights have no bytes to measure: their figure is labelled an estimate, in the table and a note."""
    recs = two_formats()
    estimate = {"weight_bytes": GIB // 2, "weights_source": "estimate", "weight_bytes_estimated": True}
    for r in recs:
        if r["format"] == "int4_awq":
            r["load"] = {**r["load"], **estimate}
    md = report.render_markdown(recs)
    headers = md_headers(md, "model")
    assert dict(zip(headers, md_row(md, "tiny", "hf", "int4_awq")))["weights"] == "~512.0 MiB (estimate)"
    assert dict(zip(headers, md_row(md, "tiny", "hf", "bf16")))["weights"] == "1.00 GiB"  # measured: no mark
    assert "Weights shown as '~X (estimate)' were not measured" in md


def test_device_level_nvml_memory_is_labelled() -> None:
    mem = {"nvml_source": "device", "nvml_peak_over_baseline_bytes": 4 * GIB, "torch_peak_over_baseline_bytes": 0}
    md = report.render_markdown([cell(device="cuda", video=v, memory=mem) for v in ("v1", "v2")])
    row = dict(zip(md_headers(md, "model"), md_row(md, "tiny", "hf", "bf16")))
    assert row["memory held"] == "torch 0.0 MiB · NVML device used 4.00 GiB"
    assert "'NVML device used': NVML attributed no memory to the engine's processes" in md


def test_fake_quant_is_explained() -> None:
    recs = [cell(fmt="nvfp4", mode="fake-quant", mode_note="real kernels need sm_100, found CPU")]
    md = report.render_markdown(recs)
    assert "fake-quant: real kernels need sm_100, found CPU" in md
    two_models = recs + [cell(fmt="nvfp4", mode="fake-quant", mode_note="real kernels need sm_100, found CPU",
                              model="tiny-trained")]
    assert report.render_markdown(two_models).count("real kernels need sm_100, found CPU") == 1


def test_baseline_section_marks_regression_and_flip() -> None:
    base = [cell(video="v1", rounds=[1.0, 1.01, 0.99]), cell(video="v2", predicted="Anomaly", rounds=[1.0, 1.0, 1.0])]
    new = [cell(video="v1", rounds=[2.0, 2.02, 1.98]), cell(video="v2", predicted="Normal", rounds=[1.0, 1.0, 1.0])]
    md = report.render_markdown(new, baseline=base)
    assert "## Against the baseline" in md
    assert md_row(md, "tiny/hf/bf16/cpu") == ["tiny/hf/bf16/cpu", "2", "+41.4%", "1", "0", "1"]  # geometric mean
    row = md_row(md, "tiny/hf/bf16/cpu anomaly:v1")
    assert row[3] == "+100.0%" and row[5] == "**regression**"
    assert md_row(md, "tiny/hf/bf16/cpu anomaly:v2")[6] == "**Anomaly -> Normal (now right)**"


def test_an_untimed_scoring_rerun_cannot_change_a_reported_latency(tmp_path: Path) -> None:
    """The drift test re-generates reference clips untimed; that record must not replace the timed one
    in summaries, reports, comparisons or the merged pytest-benchmark JSON."""
    from core.report.summary import summarize
    from core.suite.benchjson import to_document

    timed = cell(video="v1", rounds=[1.0, 1.1, 0.9], kind="timed")
    rerun = cell(video="v1", rounds=None, kind="scoring", timings={**timed["timings"], "total_s": 9.0})
    rerun["rounds_s"] = None
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (timed, rerun)))
    res = results.load(path)
    (s,) = summarize(res)
    assert s["latency_s"] == pytest.approx(1.0) and s["videos"] == 1
    md = report.render_markdown(res)
    assert dict(zip(md_headers(md, "model"), md_row(md, "tiny", "hf", "bf16")))["latency s/video"] == "1.00"
    (change,) = compare(res.speed(), res.speed()).changes
    assert change.a_s == change.b_s == pytest.approx(1.0)
    (bench,) = to_document(res.speed(), machine_info={})["benchmarks"]
    assert bench["stats"]["median"] == pytest.approx(1.0)
    # records written before kinds existed: rounds make a record timed, none make it a scoring run
    legacy = {k: v for k, v in rerun.items() if k != "kind"}
    assert results.from_records([timed, legacy]).speed()[0]["rounds_s"] == [1.0, 1.1, 0.9]


def _failed(rec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The error record core.cells.runner.error_record() writes for ``rec``'s cell."""
    keep = ("type", "cell", "model", "backend", "format", "device", "task", "video")
    return {**{k: rec[k] for k in keep}, "kind": "timed", "status": "error", "error_type": "RuntimeError",
            "error": "CUDA error: an illegal memory access", **extra}


def test_a_later_failure_replaces_an_earlier_success_everywhere(tmp_path: Path) -> None:
    """--results appends across sessions: a cell that succeeded in one session and failed in the
    next used to keep the old latency and answer, and the summary showed 0 errors."""
    from core.report.summary import summarize
    from core.suite.benchjson import to_document

    ok = cell(video="v1", rounds=[1.0, 1.0, 1.0], kind="timed", time=100.0)
    other = cell(video="v2", rounds=[2.0, 2.0, 2.0], kind="timed", time=100.5)
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (ok, other, _failed(ok, time=200.0))))
    res = results.load(path)
    (s,) = summarize(res)
    assert (s["errors"], s["answered"], s["videos"]) == (1, 1, 1)
    assert s["latency_s"] == pytest.approx(2.0)  # v2 only: v1's old latency is gone
    assert [r["video"] for r in res.speed()] == ["v2"]
    assert {r["video"]: r["status"] for r in res.answers()} == {"v1": "error", "v2": "ok"}
    assert [b["extra_info"]["video"] for b in to_document(res.speed(), machine_info={})["benchmarks"]] == ["v2"]
    # an untimed scoring error (goldens, drift) is the cell's newest outcome too
    scoring_err = _failed(ok, kind="scoring", time=200.0)
    assert list(results.from_records([ok, scoring_err]).errors.values()) == [scoring_err]
    assert not results.from_records([ok, scoring_err]).speed()


def test_a_later_success_replaces_an_earlier_failure() -> None:
    ok = cell(video="v1", rounds=[1.0, 1.0, 1.0], kind="timed", time=300.0)
    res = results.from_records([_failed(ok, time=200.0), ok])
    assert not res.errors and res.speed() == [ok] and res.answers() == [ok]


def test_the_newest_outcome_wins_whatever_order_the_files_are_read_in(tmp_path: Path) -> None:
    """`vqbench report old.jsonl new.jsonl` and `new old` agree: records are ordered by their time."""
    old_ok = cell(video="v1", kind="timed", time=100.0)
    new_err = _failed(old_ok, time=200.0)
    for first, second in ((old_ok, new_err), (new_err, old_ok)):
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        a.write_text(json.dumps(first) + "\n")
        b.write_text(json.dumps(second) + "\n")
        merged = results.load_many([a, b])
        assert list(merged.errors.values()) == [new_err] and not merged.speed() and not merged.scoring
    # error, then success, then error again: the last one stands
    again = _failed(old_ok, time=300.0, error="again")
    assert list(results.from_records([again, new_err, cell(video="v1", kind="timed", time=250.0)])
                .errors.values()) == [again]


def test_fake_quant_latency_is_shown_apart_and_never_ranked() -> None:
    recs = two_formats()
    recs += [cell(fmt="fp8", video=v, rounds=[3.0, 3.1, 2.9], mode="fake-quant", mode_note="ModelOpt fake-quant")
             for v in ("v1", "v2", "v3")]
    md = report.render_markdown(recs)
    speed = md.split("## Speed and memory")[1].split("## ")[0]
    native_table, emulation = speed.split("These engines do not run the format's own kernels")
    assert "| tiny | hf | fp8 |" not in native_table and "| tiny | hf | int4_awq |" in native_table
    row = dict(zip(md_headers(emulation, "model"), md_row(emulation, "tiny", "hf", "fp8")))
    assert row["mode"] == "fake-quant" and row["emulated latency s/video"] == "3.00" and "vs bf16" not in row
    assert md_row(md, "fp8")[1:] == ["66.7% (2/3)", "100.0% (3/3)"]  # its answers are still judged


def test_a_record_that_names_no_mode_is_not_ranked_as_native() -> None:
    """Older results carry no mode: nothing says their kernels were the format's own (audit #16)."""
    recs = two_formats()
    for v in ("v1", "v2", "v3"):
        rec = cell(fmt="fp8", video=v, rounds=[3.0, 3.1, 2.9])
        del rec["mode"], rec["mode_note"]
        recs.append(rec)
    md = report.render_markdown(recs)
    speed = md.split("## Speed and memory")[1].split("## ")[0]
    native_table, apart = speed.split("These engines do not run the format's own kernels")
    assert "| tiny | hf | fp8 |" not in native_table and "| tiny | hf | int4_awq |" in native_table
    assert dict(zip(md_headers(apart, "model"), md_row(apart, "tiny", "hf", "fp8")))["mode"] == "—"
    assert "hf/fp8 on cpu: its records name no mode (older results)." in speed


# --- loading ---------------------------------------------------------------------------------------

def test_truncated_results_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    writer = ResultsWriter(path, header={"settings": {}, "machine": {}})
    writer.write(cell(video="v1"))
    writer.write(cell(video="v2"))
    writer.close()
    with open(path, "a") as fh:
        fh.write(json.dumps(cell(video="v3"))[:57])  # a run killed mid-write
    assert [r["video"] for r in results.load(path).answers()] == ["v1", "v2"]


@pytest.mark.parametrize("content", ["", '{"type": "header", "settings": {}}\n', '{"benchmarks": [\n  {"na'],
                         ids=["empty", "header-only", "torn-benchmark-json"])
def test_no_cells_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    with pytest.raises(VqbenchError, match="results.jsonl: no benchmark cells or load records found"):
        results.load(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="nope.jsonl: cannot read results"):
        results.load(tmp_path / "nope.jsonl")


def test_pytest_benchmark_json_loads(tmp_path: Path) -> None:
    rec = cell(video="v1", rounds=[0.2, 0.3, 0.25])
    extra = {k: rec[k] for k in ("model", "backend", "format", "device", "task", "video", "predicted", "truth",
                                 "timings", "load", "memory", "rounds_s")}
    doc = {"machine_info": {"vqbench": {"gpu_class": "sm90"}},
           "benchmarks": [{"name": "test_cell[x]", "param": "x", "extra_info": extra,
                           "stats": {"min": 0.2, "max": 0.3, "mean": 0.25, "median": 0.25, "stddev": 0.05,
                                     "rounds": 3, "data": [0.2, 0.3, 0.25]}},
                          {"name": "test_other", "extra_info": {}, "stats": {}}]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc, indent=2))
    (got,) = results.load(path).speed()
    assert got["cell"] == "x" and got["gpu_class"] == "sm90" and got["stats"]["median"] == 0.25
    assert got["status"] == "ok" and got["rounds_s"] == [0.2, 0.3, 0.25]


def test_merge_keeps_later_record() -> None:
    merged = results.Results()
    for run in ([cell(video="v1", predicted="Normal")], [cell(video="v1", predicted="Anomaly")]):
        merged.extend(results.from_records(run))
    assert [r["predicted"] for r in merged.answers()] == ["Anomaly"]


def test_merging_runs_of_two_gpu_classes_keeps_their_cells_and_engines_apart() -> None:
    """An H100 run and a B200 run of the same cell (``vqbench report a b``, a mixed Ray cluster): both
    records stay, each engine's latency is its own hardware's, and the tables say which is which."""
    from core.report.summary import summarize

    merged = results.Results()
    for gpu_class, rounds in (("sm90", [0.4, 0.4, 0.4]), ("sm100", [0.2, 0.2, 0.2])):
        merged.extend(results.from_records([cell(device="cuda", gpu_class=gpu_class, rounds=rounds)]))
    assert sorted(r["gpu_class"] for r in merged.speed()) == ["sm100", "sm90"]
    by_class = {s["gpu_class"]: s for s in summarize(merged)}
    assert set(by_class) == {"sm90", "sm100"}
    assert by_class["sm90"]["latency_s"] == pytest.approx(0.4) and by_class["sm100"]["latency_s"] == pytest.approx(0.2)
    assert by_class["sm90"]["videos"] == by_class["sm100"]["videos"] == 1
    md = report.render_markdown(merged)
    headers = md_headers(md, "model")
    for row, latency in (("cuda sm90", "0.400"), ("cuda sm100", "0.200")):
        got = dict(zip(headers, md_row(md, "tiny", "hf", "bf16", row)))
        assert got["latency s/video"] == latency and got["vs bf16"] == "reference"
    # an error is that class's cell only
    merged.extend(results.from_records([cell(device="cuda", gpu_class="sm100", status="error", error_type="X")]))
    assert [key[4] for key in merged.errors] == ["sm100"]


def test_a_gpu_record_that_does_not_name_its_class_takes_its_files_machine(tmp_path: Path) -> None:
    """Error records written before they carried a GPU class join their run's engine (the class of the
    machine in the file's header), not an engine of their own."""
    path = tmp_path / "old.jsonl"
    old_error = {k: v for k, v in cell(device="cuda", video="v2", status="error", error_type="X").items()
                 if k != "gpu_class"}
    path.write_text("\n".join(json.dumps(r) for r in (
        {"type": "header", "machine": {"gpu_class": "sm90"}}, cell(device="cuda"), old_error)) + "\n")
    from core.report.summary import summarize

    (s,) = summarize(results.load(path))
    assert s["gpu_class"] == "sm90" and s["errors"] == 1 and s["videos"] == 1


def test_importing_report_stays_light() -> None:
    code = "import sys, core.report, core.report.compare; print(sorted({'matplotlib', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# --- compare ---------------------------------------------------------------------------------------

def test_clear_slowdown_with_tight_rounds_is_a_regression() -> None:
    result = compare([cell(rounds=[1.0, 1.01, 0.99])], [cell(rounds=[2.0, 2.02, 1.98])])
    (change,) = result.changes
    assert change.verdict == "regression" and change.delta_pct == pytest.approx(100.0)
    assert change.ci_pct[0] > 90
    assert result.exit_code == 1 and "**regression**" in result.render()


def test_noisy_equal_runs_are_not_significant() -> None:
    result = compare([cell(rounds=[1.0, 1.4, 0.7, 1.2, 0.9])], [cell(rounds=[1.1, 0.8, 1.3, 1.0, 1.25])])
    (change,) = result.changes
    assert change.verdict == "not significant" and change.ci_pct[0] < 0 < change.ci_pct[1]
    assert result.exit_code == 0


def test_small_significant_change_is_below_threshold() -> None:
    result = compare([cell(rounds=[1.0, 1.001, 0.999])], [cell(rounds=[1.02, 1.021, 1.019])], threshold_pct=5)
    assert result.changes[0].verdict == "slower" and result.exit_code == 0
    faster = compare([cell(rounds=[1.0, 1.001, 0.999])], [cell(rounds=[0.5, 0.501, 0.499])])
    assert faster.changes[0].verdict == "improvement" and faster.exit_code == 0


def test_too_few_rounds_never_fails() -> None:
    result = compare([cell(rounds=[1.0])], [cell(rounds=[3.0])])
    assert result.changes[0].verdict.startswith("too few rounds") and result.exit_code == 0


def test_label_flip_fails_only_when_asked() -> None:
    a, b = [cell(predicted="Normal")], [cell(predicted="Anomaly")]
    assert compare(a, b).exit_code == 0
    flipped = compare(a, b, fail_on_flip=True)
    assert flipped.exit_code == 1 and len(flipped.flips) == 1


def test_unmatched_cells_are_listed() -> None:
    result = compare([cell(video="v1"), cell(video="old")], [cell(video="v1"), cell(video="new")])
    verdicts = {c.key[-1]: c.verdict for c in result.changes}
    assert verdicts["old"] == "only in A" and verdicts["new"] == "only in B"
    assert "1 only in A; 1 only in B" in result.summary()


def test_main_compare_prints_and_returns_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, rounds in (("a.jsonl", [1.0, 1.01, 0.99]), ("b.jsonl", [2.0, 2.02, 1.98])):
        (tmp_path / name).write_text(json.dumps(cell(rounds=rounds)) + "\n")
    assert main_compare(tmp_path / "a.jsonl", tmp_path / "b.jsonl", threshold_pct=5, fail_on_flip=False) == 1
    assert "1 regressions" in capsys.readouterr().out


# --- HTML ------------------------------------------------------------------------------------------

def test_html_embeds_plots_that_decode() -> None:
    pytest.importorskip("matplotlib", reason="matplotlib not installed: pip install 'vqbench[report]'")
    image = pytest.importorskip("PIL.Image", reason="Pillow not installed: pip install pillow")
    from core.report.html import render_html

    html = render_html(two_formats(), title="t")
    sizes = check_images(html)
    # Latency, memory and time split for (tiny, cpu); one drift heatmap for (tiny, anomaly).
    assert len(sizes) == 4
    for src in re_sources(html):
        img = image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.format == "PNG" and img.size in sizes
    assert "<td class=flip>Normal ≠</td>" in html and "<table>" in html and "http" not in html


def re_sources(html: str) -> list[str]:
    from bench.browser import embedded_images

    return embedded_images(html)


def test_html_without_matplotlib_has_tables_and_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.report.html import render_html

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    html = render_html(two_formats())
    assert check_images(html) == [] and "not installed: pip install 'vqbench[report]'" in html
    assert "2.00x faster" in html


def test_check_images_rejects_broken_png() -> None:
    good = _tiny_png()
    assert png_size(good) == (2, 1)
    broken = good[:-20] + bytes(20)
    src = base64.b64encode(broken).decode()
    with pytest.raises(ImageCheckError, match="#1 does not decode as PNG"):
        check_images(f'<p><img src="data:image/png;base64,{src}"></p>')
    with pytest.raises(ImageCheckError, match="not an embedded PNG"):
        check_images('<img src="plot.png">')


def _tiny_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes([255, 0, 0, 0, 0, 255]))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_write_report_writes_markdown_and_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.report.html.make_plots", lambda records, reference: [])  # plots: tested above
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in two_formats()))
    from core.report.write import write_report

    paths = write_report([src], tmp_path / "out", baseline=src)
    assert paths["markdown"].read_text().startswith("# vqbench report: r.jsonl")
    assert "Against the baseline" in paths["html"].read_text()


@pytest.mark.skipif(find_browser() is None, reason="chromium not installed: apt-get install chromium")
def test_screenshot_of_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib not installed: pip install 'vqbench[report]'")
    image = pytest.importorskip("PIL.Image", reason="Pillow not installed: pip install pillow")
    from core.report.html import render_html

    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(two_formats()))
    png = screenshot(html_path, tmp_path / "shot.png", width=1000, height=1200)
    img = image.open(png)
    assert img.size == (1000, 1200)
    # Not a blank page: text, table borders and plot colours give many distinct colours.
    assert len(img.convert("RGB").getcolors(maxcolors=1_000_000)) > 50


@pytest.mark.skipif(find_browser() is None, reason="chromium not installed: apt-get install chromium")
def test_widest_table_fits_or_scrolls_never_cut_off(tmp_path: Path) -> None:
    from core.report.html import render_html

    recs = [cell(device="cuda", video=v, roofline={"prefill_floor_s": 0.01, "decode_ratio": 2.0, "ratio": 2.5},
                 memory={"torch_peak_over_baseline_bytes": GIB, "nvml_peak_over_baseline_bytes": GIB})
            for v in ("a_long_video_name_01", "a_long_video_name_02")]
    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(recs + two_formats()))
    layout = table_layout(html_path, width=900)
    states = {state for _, _, state in layout["tables"]}
    widest = max(w for _, w, _ in layout["tables"])
    assert widest > layout["viewport"], "the speed table is wider than a 900 px window: the check must matter"
    assert "cut" not in states and "scrolls" in states, layout
