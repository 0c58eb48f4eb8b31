"""The ``vqbench bundle`` command line (also ``python -m core.tools.bundle``): build, plan, verify, unpack."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from core.tools.bundle.manifest import (
    CARRY_LIMIT,
    PART_SIZE,
    PLATFORMS,
    BundleError,
    BundleIncomplete,
    Manifest,
    mib_text,
)
from core.tools.bundle.packing import build
from core.tools.bundle.plan import default_target, plan_parts, unpack_command
from core.tools.bundle.unpacking import unpack, verify


def parse_size(text: str) -> int:
    """``58MiB``, ``60M``, ``1.5GiB`` or a plain byte count, as bytes (argparse ``type=``)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMG]?)(i?B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 58MiB, 60M, 1048576)")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def _cmd_build(args: argparse.Namespace) -> int:
    name = args.name or args.requirements.stem
    build(args.requirements, args.out or Path(".bundle") / name, mode=args.mode, name=name,
          python_version=args.python_version, platforms=args.platform or PLATFORMS,
          part_size=args.part_size, exclude_globs=args.exclude, compress=args.compress,
          level=args.level, threads=args.threads, dict_size=args.dict_size,
          find_links=args.find_links, no_index=args.no_index, wheel_cache=args.wheel_cache)
    return _cmd_plan(argparse.Namespace(bundle=args.out or Path(".bundle") / name,
                                        limit=CARRY_LIMIT, json=False))


def _cmd_plan(args: argparse.Namespace) -> int:
    manifest = Manifest.load(args.bundle)
    carries = plan_parts(args.bundle, args.limit)
    run = unpack_command(args.bundle, manifest)
    target = default_target(manifest)
    if args.json:
        print(json.dumps({"name": manifest.name, "run": run, "target": target, "commands": [
            {"carry": [str(f) for f in c.files], "bytes": c.size} for c in carries]}, indent=2))
        return 0
    print(f"bundle {manifest.name} ({manifest.mode}, {len(manifest.parts)} part(s), "
          f"{mib_text(manifest.total_size)} MiB): {len(carries)} device command(s) of at most "
          f"{mib_text(args.limit)} MiB")
    if args.bundle.is_absolute() or not args.bundle.resolve().is_relative_to(Path.cwd().resolve()):
        print(f"note: {args.bundle} is not a path inside this directory; a device command carries "
              "only paths inside the repository (build into .bundle/NAME, which git ignores)")
    for c in carries:
        print(f"command {c.index} of {len(carries)} ({mib_text(c.size)} MiB): carry")
        for f in c.files:
            print(f"    {f}")
    print(f"in each, from the repository root:\n    {run}\n"
          f"(exit 3 = parts staged, some still to come; 0 = unpacked)\nthen:\n"
          f"    export PYTHONPATH={target}${{PYTHONPATH:+:$PYTHONPATH}}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    manifest, statuses = verify(args.sources)
    for st in statuses:
        print(f"{st.state:8} {st.name}" + (f"  ({st.detail})" if st.detail else "")
              + (f"  {st.path}" if st.path else ""))
    states = {st.state for st in statuses}
    print(f"{manifest.name}: {sum(st.state == 'ok' for st in statuses)} of {len(statuses)} parts ok")
    return 2 if "corrupt" in states else 3 if "missing" in states else 0


def _cmd_unpack(args: argparse.Namespace) -> int:
    try:
        unpack(args.sources, args.target, stage=args.stage, ignore_python=args.ignore_python)
    except BundleIncomplete as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 3
    return 0


def build_parser(prog: str = "vqbench bundle") -> argparse.ArgumentParser:
    """The ``bundle`` command line: build, plan, verify, unpack."""
    from core.tools import bundle

    parser = argparse.ArgumentParser(prog=prog, description=bundle.__doc__.split("\n\n")[0])
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the build/plan/verify/unpack subcommands to ``parser`` (e.g. ``vqbench``'s ``bundle``);
    each sets ``func``, which takes the parsed args and returns the exit status."""
    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(func=usage)
    sub = parser.add_subparsers(dest="bundle_command", metavar="COMMAND")

    p = sub.add_parser("build", help="download a requirements file's wheels and write them as parts",
                       description=build.__doc__)
    p.add_argument("requirements", type=Path, help="pinned list, e.g. core/tools/bundles/gpu-tools-cp312.txt")
    p.add_argument("-o", "--out", type=Path, help="bundle directory (default .bundle/NAME)")
    p.add_argument("--name", help="bundle name (default: the requirements file's stem)")
    p.add_argument("--mode", choices=("wheels", "site"),
                   help="carry the .whl files (pip installs them there) or a pruned, pre-installed site "
                        "dir (default: the file's '# bundle-mode:' line, else wheels)")
    p.add_argument("--python-version", default="3.12", help="target interpreter (default 3.12)")
    p.add_argument("--platform", action="append", help="pip platform tag, repeatable (default: "
                   "manylinux_2_28_x86_64 and every older manylinux tag)")
    p.add_argument("--part-size", type=parse_size, default=PART_SIZE, help="largest part (default 58MiB)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="site mode: prune files or directories matching GLOB (relative to site-packages)")
    p.add_argument("--compress", choices=("xz", "none"),
                   help="default: none for wheels (already deflated), xz for a site dir")
    p.add_argument("--level", type=int, default=6, help="xz preset 0-9 (default 6)")
    p.add_argument("--dict-size", type=parse_size, help="xz dictionary (default: the preset's; 256MiB "
                   "saves ~10%% on a large site dir at ~2x the time and ~3 GiB of memory)")
    p.add_argument("--threads", type=int, help="xz threads (default: all cores; 1 = Python's lzma)")
    p.add_argument("--find-links", type=Path, action="append", default=[], help="extra wheel directory")
    p.add_argument("--no-index", action="store_true", help="use --find-links directories only")
    p.add_argument("--wheel-cache", type=Path, help="keep downloaded wheels here between builds")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("plan", help="which parts each device command carries, and what it runs",
                       description=plan_parts.__doc__)
    p.add_argument("bundle", type=Path, help="bundle directory (holds manifest.json)")
    p.add_argument("--limit", type=parse_size, default=CARRY_LIMIT,
                   help="bytes one command may carry (default 64MiB)")
    p.add_argument("--json", action="store_true", help="machine-readable: carry lists per command")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("verify", help="check the parts present against the manifest's sizes and sha256",
                       description="Exit 0: all parts good; 3: some missing; 2: one is corrupt.")
    p.add_argument("sources", type=Path, nargs="+", help="bundle/staging directories or part files")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("unpack", help="stage carried parts; once all are there, verify and unpack",
                       description=unpack.__doc__)
    p.add_argument("sources", type=Path, nargs="+", help="bundle directories or part files carried here")
    p.add_argument("--target", type=Path, required=True, help="directory to put on PYTHONPATH")
    p.add_argument("--stage", type=Path, help="directory where parts accumulate across commands "
                   "(exit 3 while some are missing)")
    p.add_argument("--ignore-python", action="store_true",
                   help="unpack even though this Python is not the bundle's")
    p.set_defaults(func=_cmd_unpack)


def main(argv: Sequence[str] | None = None, *, prog: str = "vqbench bundle") -> int:
    """Run ``vqbench bundle`` with ``argv``; 0 on success, 2 on an error, 3 when parts are missing."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BundleError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
