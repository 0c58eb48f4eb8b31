"""What a bundle is, on both sides: its constants, its errors, the pinned requirements list it is built
from (with the ``# bundle-...:`` directives), and ``manifest.json``, which names every part's size and sha256."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.base.errors import VqbenchError

FORMAT = "vqbench-bundle/1"
MANIFEST = "manifest.json"
MiB = 2**20
PART_SIZE = 58 * MiB
"""Default part size: one part plus the manifest fits a device command's 64 MiB."""
CARRY_LIMIT = 64 * MiB
"""What one device command may carry."""
PLATFORMS = tuple(f"manylinux_2_{v}_x86_64" for v in range(28, 4, -1)) + (
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64") + tuple(
    f"manylinux_2_{v}_x86_64" for v in range(29, 40))
"""Every manylinux tag up to glibc 2.39 (the GPU image is Ubuntu 24.04), preferring 2_28 and older;
pip does not expand tags itself (bitsandbytes and torchao ship manylinux_2_24 wheels only,
llguidance 1.7.6 manylinux_2_31 only). Narrow it with --platform for older hosts."""
SITE_EXCLUDES = ("bin", "**/__pycache__")
"""Always pruned in site mode: ``bin/`` scripts carry the build machine's interpreter in their shebang."""
DIRECTIVE = re.compile(r"^#\s*bundle-(exclude|mode|compress)\s*:\s*(\S.*?)\s*$")
MARKER = ".vqbench-bundle.json"


class BundleError(VqbenchError):
    """A bundle could not be built, verified or unpacked; the message names the file and the fix."""


class BundleIncomplete(BundleError):
    """Some parts of the bundle have not arrived yet."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503: runs of ``-_.`` as one ``-``, lower case)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def mib_text(n: int) -> str:
    """``n`` bytes in MiB, one decimal (log lines)."""
    return f"{n / MiB:.1f}"


@dataclass(frozen=True)
class Requirements:
    """A pinned requirements file, with the ``# bundle-...:`` directives its comments carry."""

    path: Path
    lines: tuple[str, ...]
    sha256: str
    excludes: tuple[str, ...] = ()
    mode: str | None = None
    compress: str | None = None

    @classmethod
    def read(cls, path: Path) -> Requirements:
        """Parse ``path``: one requirement a line; ``# bundle-exclude: GLOB`` etc. in comments."""
        if not path.is_file():
            raise BundleError(f"requirements file {path} does not exist; pass a pinned list such as "
                              "core/tools/bundles/gpu-tools-cp312.txt")
        text = path.read_text(encoding="utf-8")
        lines, excludes, opts = [], [], {}
        for raw in text.splitlines():
            m = DIRECTIVE.match(raw.strip())
            if m:
                key, value = m.groups()
                if key == "exclude":
                    excludes.append(value)
                else:
                    opts[key] = value
                continue
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                if line.startswith("-"):
                    raise BundleError(f"{path}: pip option {line!r} is not supported in a bundle list; "
                                      "list one pinned requirement per line")
                lines.append(line)
        if not lines:
            raise BundleError(f"{path} lists no requirement")
        return cls(path=path, lines=tuple(lines), sha256=hashlib.sha256(text.encode()).hexdigest(),
                   excludes=tuple(excludes), **opts)


@dataclass
class Manifest:
    """What ``manifest.json`` holds: enough to verify, join and unpack the parts anywhere."""

    name: str
    mode: str
    python_version: str
    implementation: str
    platforms: list[str]
    requirements: dict
    packages: list[dict]
    excludes: list[str]
    excluded_bytes: int
    compression: dict
    archive: dict
    parts: list[dict]
    part_size: int
    unpack: str = ""
    format: str = FORMAT
    created_by: str = field(default_factory=lambda: f"vqbench {_version()}")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read a manifest; a clear error when it is missing or not a bundle manifest."""
        if path.is_dir():
            path = path / MANIFEST
        if not path.is_file():
            raise BundleError(f"no {MANIFEST} at {path.parent}: carry the bundle's manifest.json with "
                              "its parts (every command of `vqbench bundle plan` does)")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise BundleError(f"{path} is not a {FORMAT} manifest (format={data.get('format')!r})")
        return cls(**data)

    def save(self, directory: Path) -> Path:
        path = directory / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @property
    def total_size(self) -> int:
        return sum(p["size"] for p in self.parts)


def _version() -> str:
    from core import __version__

    return __version__
