"""The ``vqbench`` command line: the front door to the suite (pytest is the engine).

Subcommands import what they need when they run, so ``vqbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import __version__


def _settings(args: argparse.Namespace):
    from core import settings

    overrides = {k: getattr(args, k, None) for k in
                 ("videos", "fps", "nframes", "min_frames", "max_frames", "resolution", "max_new_tokens",
                  "calibration", "calib_size", "allow_pickle", "trust_remote_code", "ignore_eos", "max_videos",
                  "attn_implementation")}
    if getattr(args, "fps", None) is None and getattr(args, "nframes", None):
        overrides["fps"] = None
    return settings.build(Path.cwd(), {k: v for k, v in overrides.items() if v not in (None, False)})


def _doctor(args: argparse.Namespace) -> int:
    from core.doctor import doctor

    return doctor(as_json=args.json)


def _run(args: argparse.Namespace) -> int:
    from core.commands.run import check_output_paths, run

    out = Path(args.output)
    csv_path = Path(args.csv) if args.csv else None
    jsonl = Path(args.results) if args.results else out.with_suffix(".jsonl")
    check_output_paths(out, csv_path, jsonl)
    return run(_settings(args), model=args.model, backend=args.backend, fmt_name=args.format,
               task_name=args.task, device=args.device, output=out, csv_path=csv_path, results_path=jsonl)


def _quantize(args: argparse.Namespace) -> int:
    from core.commands.quantize import quantize

    return quantize(model=args.model, fmt_name=args.format, device=args.device,
                    options=_settings(args).engine_options(), export=args.export)


def _report(args: argparse.Namespace) -> int:
    from core.report import write_report

    paths = write_report([Path(p) for p in args.inputs], Path(args.out),
                         baseline=Path(args.baseline) if args.baseline else None, title=args.title)
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from core.compare import main_compare

    return main_compare(Path(args.a), Path(args.b), threshold_pct=args.threshold, fail_on_flip=args.fail_on_flip)


def _sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video sampling (qwen-vl-utils semantics)")
    g.add_argument("--videos", help="folder, CSV manifest, RoadBuddy JSON, or a built-in set: fixtures, "
                                    "heldout, roadbuddy (default: the task's fixture set)")
    g.add_argument("--max-videos", type=int, help="only the first N videos")
    g.add_argument("--fps", type=float, help="frames per second to sample (default 4)")
    g.add_argument("--nframes", type=int, help="sample exactly N frames instead of --fps")
    g.add_argument("--min-frames", type=int, help="at least N frames (default 4)")
    g.add_argument("--max-frames", type=int, help="at most N frames (default 768)")
    g.add_argument("--resolution", help="frame size WIDTHxHEIGHT rounded to 28 px (default 250x250)")
    g.add_argument("--max-tokens", dest="max_new_tokens", type=int, help="new tokens per answer (default 7)")


def _model_args(p: argparse.ArgumentParser, *, backend: bool = True) -> None:
    p.add_argument("--model", default="tiny", help="model name (tiny, qwen2.5-vl-7b ...) or a local HF "
                                                   "model directory (default: tiny)")
    if backend:
        p.add_argument("--backend", default="hf", help="hf, vllm or trtllm (default: hf)")
    p.add_argument("--format", default="bf16", help="quantization format (default: bf16; see `vqbench doctor`)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: a GPU if present")
    p.add_argument("--calibration", choices=["captions", "clips"], help="ModelOpt calibration set")
    p.add_argument("--calib-size", type=int, help="calibration samples (default 32)")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle (.bin) checkpoints (unsafe)")
    p.add_argument("--trust-remote-code", action="store_true", help="run model code shipped with a checkpoint")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqbench",
        description="Benchmark quantized video VLMs: latency, memory and answer drift. The full matrix runs "
                    "under pytest (`pytest bench -m cpu` or `-m gpu`); these commands are the front door.",
    )
    parser.add_argument("--version", action="version", version=f"vqbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("doctor", help="environment, GPU and the backend x format capability table")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("run", help="classify a folder of videos with one model/backend/format")
    _model_args(p)
    p.add_argument("--task", default="anomaly", help="anomaly (Normal/Anomaly) or mcq (A-D) (default: anomaly)")
    _sampling_args(p)
    p.add_argument("--ignore-eos", action="store_true", help="always generate --max-tokens tokens")
    p.add_argument("--output", default="vqbench-run.json", help="JSON results (default: vqbench-run.json)")
    p.add_argument("--results", help="JSON-lines file written as each video finishes (default: OUTPUT.jsonl)")
    p.add_argument("--csv", help="also write a CSV 'id,answer' (the submission format of the seeds)")
    p.set_defaults(func=_run)

    p = sub.add_parser("quantize", help="make (or reuse from the cache) a quantized model; show what got quantized")
    _model_args(p, backend=False)
    p.add_argument("--export", action="store_true", help="write a ModelOpt HF checkpoint for vLLM/TensorRT-LLM")
    p.set_defaults(func=_quantize)

    p = sub.add_parser("report", help="Markdown and HTML report (with plots) of results files")
    p.add_argument("inputs", nargs="+", help="results JSON-lines (--results) or pytest-benchmark JSON files")
    p.add_argument("--baseline", help="a baseline results file: deltas with significance")
    p.add_argument("--out", default="reports", help="output folder (default: reports/)")
    p.add_argument("--title", help="report title")
    p.set_defaults(func=_report)

    p = sub.add_parser("compare", help="latency and answer deltas of B against A; non-zero exit on regression")
    p.add_argument("a", help="baseline results file")
    p.add_argument("b", help="new results file")
    p.add_argument("--threshold", type=float, default=5.0, help="regression threshold in percent (default 5)")
    p.add_argument("--fail-on-flip", action="store_true", help="also fail when any answer changed")
    p.set_defaults(func=_compare)

    p = sub.add_parser("bundle", help="offline package bundles (in parts) for air-gapped GPU machines")
    from core.bundle import configure_parser

    configure_parser(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from core.errors import VqbenchError
    from core.safety import enforce_offline

    enforce_offline()
    try:
        return int(args.func(args) or 0)
    except VqbenchError as exc:
        print(f"vqbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vqbench: interrupted; finished results are already on disk", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
