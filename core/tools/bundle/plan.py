"""Carrying a bundle: which parts each device command carries (each under the carry limit, the manifest in
every one), and the unpack line it runs there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.tools.bundle.manifest import CARRY_LIMIT, MANIFEST, BundleError, Manifest


@dataclass(frozen=True)
class Carry:
    """One device command's share of a bundle: the files it carries and their total size."""

    index: int
    files: tuple[Path, ...]
    size: int


def plan_parts(bundle_dir: Path, limit: int = CARRY_LIMIT) -> list[Carry]:
    """Group the parts, in order, into as few commands as fit ``limit`` bytes each (manifest in each)."""
    manifest = Manifest.load(bundle_dir)
    base = (bundle_dir / MANIFEST).stat().st_size
    groups: list[list[dict]] = [[]]
    for part in manifest.parts:
        if base + part["size"] > limit:
            raise BundleError(f"part {part['name']} ({part['size']} bytes) plus the manifest exceeds the "
                              f"carry limit {limit}; rebuild with a smaller --part-size")
        if base + sum(p["size"] for p in groups[-1]) + part["size"] > limit:
            groups.append([])
        groups[-1].append(part)
    return [Carry(i + 1, (bundle_dir / MANIFEST, *(bundle_dir / p["name"] for p in g)),
                  base + sum(p["size"] for p in g)) for i, g in enumerate(groups)]


def unpack_command(bundle_dir: Path, manifest: Manifest) -> str:
    stage = f"/tmp/vqbench-stage/{manifest.name}"
    return (f"python -m core.tools.bundle unpack {bundle_dir} --stage {stage} "
            f"--target {default_target(manifest)}")


def default_target(manifest: Manifest) -> str:
    return f"/tmp/vqbench-site/{manifest.name}"


def unpack_instructions(manifest: Manifest, bundle_dir: Path) -> str:
    """The manifest's ``unpack`` text: the vqbench way, and the same by hand."""
    name = manifest.archive["name"]
    return (f"Carry {MANIFEST} with the parts (`vqbench bundle plan {bundle_dir}` groups them per "
            f"device command) and in every command run, from the repository root: "
            f"`{unpack_command(bundle_dir, manifest)}`. It stages the parts it finds, unpacks once all "
            f"{len(manifest.parts)} are there, and prints the PYTHONPATH to export. Needs Python "
            f"{manifest.python_version}" + (" and pip." if manifest.mode == "wheels" else ".")
            + f" By hand: check `sha256sum`s against this manifest, then `cat {name}.part* | "
            + ("xz -d | " if manifest.compression["method"] == "xz" else "")
            + ("tar x -C DIR`." if manifest.mode == "site" else "tar x -C WHEELS` and `python -m pip "
               "install --no-index --no-deps --no-compile --target DIR WHEELS/*.whl`."))
