"""Offline bundles: a backend's wheels for the air-gapped GPU machines, in parts under a size limit.

The GPU machines reach no package index and each device command carries at most 64 MiB, so a
backend's packages travel as a bundle: the wheels of a pinned requirements file (``--mode wheels``)
or the site directory they install to, pruned of files the suite never loads (``--mode site``),
as one deterministic tar stream, optionally xz-compressed, cut into numbered parts, with a
``manifest.json`` naming every part's size and sha256. ``plan`` groups the parts into device
commands; ``unpack`` (run there, stdlib only) gathers parts that arrive in separate commands in a
staging directory, verifies them, and unpacks once all are present.

Run as ``vqbench bundle ...`` or, where vqbench is not installed, ``python -m core.tools.bundle ...``.

The modules, by job: ``manifest`` (constants, errors, the requirements list and the manifest), ``wheels``
(pip: download, site install, the device's install), ``streams`` (parts writer and reader, xz, progress),
``packing`` (``build``), ``plan`` (parts per device command), ``unpacking`` (stage, verify, unpack) and
``cli``. Everything is importable from this package, as before the split.
"""

from __future__ import annotations

from core.tools.bundle.cli import build_parser, configure_parser, main, parse_size
from core.tools.bundle.manifest import (
    CARRY_LIMIT,
    DIRECTIVE,
    FORMAT,
    MANIFEST,
    MARKER,
    PART_SIZE,
    PLATFORMS,
    SITE_EXCLUDES,
    BundleError,
    BundleIncomplete,
    Manifest,
    MiB,
    Requirements,
    sha256_file,
)
from core.tools.bundle.packing import build, collect, write_tar
from core.tools.bundle.plan import Carry, default_target, plan_parts, unpack_command, unpack_instructions
from core.tools.bundle.streams import XZ_DICT, ConcatReader, PartWriter, Progress, compressor, decompressing_reader
from core.tools.bundle.unpacking import PartStatus, extract, stage_parts, unpack, verify
from core.tools.bundle.wheels import PipTarget, download, install_site, install_wheels

__all__ = [
    "CARRY_LIMIT", "DIRECTIVE", "FORMAT", "MANIFEST", "MARKER", "PART_SIZE", "PLATFORMS", "SITE_EXCLUDES", "XZ_DICT",
    "BundleError", "BundleIncomplete", "Carry", "ConcatReader", "Manifest", "MiB", "PartStatus", "PartWriter",
    "PipTarget", "Progress", "Requirements", "build", "build_parser", "collect", "compressor", "configure_parser",
    "decompressing_reader", "default_target", "download", "extract", "install_site", "install_wheels", "main",
    "parse_size", "plan_parts", "sha256_file", "stage_parts", "unpack", "unpack_command", "unpack_instructions",
    "verify", "write_tar",
]
