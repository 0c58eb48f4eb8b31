"""The ``vqbench`` command line: the front door to the suite (pytest is the engine).

Subcommands import what they need when they run, so ``vqbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from core import __version__


def _doctor(args: argparse.Namespace) -> int:
    from core.doctor import doctor

    return doctor(as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqbench",
        description="Benchmark quantized video VLMs: latency, memory and answer drift.",
    )
    parser.add_argument("--version", action="version", version=f"vqbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("doctor", help="environment, GPU and the backend x format capability table")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from core.errors import VqbenchError

    try:
        return int(args.func(args) or 0)
    except VqbenchError as exc:
        print(f"vqbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vqbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
