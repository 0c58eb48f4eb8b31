"""The ``vqbench`` command line: the front door to the suite (pytest is the engine).

Subcommands import what they need when they run, so ``vqbench --help`` stays fast. Their options
come from the one options table (``core.plan.settings``), so ``vqbench run --fps 2`` and
``pytest --fps 2`` are the same option, parsed the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core import __version__
from core.base.errors import ConfigError
from core.plan import catalog, settings


def _settings(args: argparse.Namespace, front: settings.Front) -> settings.Settings:
    return settings.build(Path.cwd(), settings.given(args, front))


def _doctor(args: argparse.Namespace) -> int:
    from core.commands.doctor import doctor

    return doctor(as_json=args.json)


def _run(args: argparse.Namespace) -> int:
    from core.commands.run import run

    s = _settings(args, "run")
    out = Path(args.output)
    csv_path = Path(args.csv) if args.csv else None
    jsonl = Path(s.results) if s.results else out.with_suffix(".jsonl")
    for p in (out, csv_path, jsonl):
        if p is not None and p.is_dir():
            raise ConfigError(f"{p} is a directory; give a file path")
    return run(s, model=args.model, backend=args.backend, fmt_name=args.format, task_name=args.task,
               device=args.device, output=out, csv_path=csv_path, results_path=jsonl)


def _load(args: argparse.Namespace) -> int:
    from core.commands.load import load

    s = _settings(args, "pytest")
    return load(s, results=Path(s.results or args.output), device=args.device)


def _quantize(args: argparse.Namespace) -> int:
    from core.commands.quantize import quantize

    return quantize(model=args.model, fmt_name=args.format or "bf16", device=args.device,
                    options=_settings(args, "quantize").engine_options(), export=args.export)


def _report(args: argparse.Namespace) -> int:
    from core.report.write import write_report

    paths = write_report([Path(p) for p in args.inputs], Path(args.out),
                         baseline=Path(args.baseline) if args.baseline else None, title=args.title)
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from core.report.compare import main_compare

    return main_compare(Path(args.a), Path(args.b), threshold_pct=args.threshold, fail_on_flip=args.fail_on_flip)


def _engine_args(p: argparse.ArgumentParser, *, backend: bool = True) -> None:
    """The one engine a command runs (the suite's matrix options select many instead)."""
    p.add_argument("--model", default="tiny", help="model name (tiny, qwen2.5-vl-7b ...) or a local HF "
                                                   "model directory (default: tiny)")
    if backend:
        p.add_argument("--backend", default="hf", help=f"{catalog.backend_names()} (default: hf)")
    p.add_argument("--format", default=None, help="quantization format (default: bf16, or the format a "
                                                  "pre-quantized checkpoint was quantized in; see `vqbench doctor`)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: a GPU if present")


def _table_args(p: argparse.ArgumentParser, front: settings.Front) -> None:
    settings.add_arguments(p.add_argument_group("options (the same as the pytest suite's)").add_argument, front)


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
    _engine_args(p)
    p.add_argument("--task", default="anomaly", help="anomaly (Normal/Anomaly) or mcq (A-D) (default: anomaly)")
    p.add_argument("--output", default="vqbench-run.json", help="JSON results (default: vqbench-run.json)")
    p.add_argument("--csv", help="also write a CSV 'id,answer' (the submission format of the seeds)")
    _table_args(p, "run")
    p.set_defaults(func=_run)

    p = sub.add_parser("load", help="serve vLLM engines from a real `vllm serve` process under load: offline, "
                                    "Poisson arrivals, camera streams, the largest rate at an SLO")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="engines of this device kind (default: the GPU's where one can run, else the CPU's)")
    p.add_argument("--output", default="vqbench-load.jsonl",
                   help="load records, JSON lines (default: vqbench-load.jsonl; --results names it too)")
    _table_args(p, "pytest")
    p.set_defaults(func=_load)

    p = sub.add_parser("quantize", help="make (or reuse from the cache) a quantized model; show what got quantized")
    _engine_args(p, backend=False)
    p.add_argument("--export", action="store_true", help="write the quantized checkpoint other engines load")
    _table_args(p, "quantize")
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

    # Commands with their own parsers, loaded only when they run.
    sub.add_parser("cluster", help="run the matrix on a Ray cluster: one task per work unit, one results file "
                                   "(`vqbench cluster --help`)", add_help=False)
    sub.add_parser("bundle", help="offline package bundles (in parts) for air-gapped GPU machines "
                                  "(`vqbench bundle --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bundle"]:
        from core.tools.bundle import main as bundle_main

        return bundle_main(argv[1:], prog="vqbench bundle")
    if argv[:1] == ["cluster"]:
        from core.commands.cluster import main as cluster_main

        return cluster_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from core.base.errors import VqbenchError
    from core.base.safety import enforce_offline

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
