"""Unpacking a bundle where it was carried (stdlib only): staging the parts that arrive in separate
commands, verifying each against the manifest, and, once all are there, joining, decompressing and
extracting them (refusing members that would land outside the target), then installing the wheels."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.tools.bundle import wheels
from core.tools.bundle.manifest import MANIFEST, MARKER, BundleError, BundleIncomplete, Manifest, sha256_file
from core.tools.bundle.streams import ConcatReader, Progress, decompressing_reader


@dataclass(frozen=True)
class PartStatus:
    """Whether one part listed in the manifest is present, and whether its bytes match."""

    name: str
    path: Path | None
    state: str  # "ok", "missing", "corrupt"
    detail: str = ""


def verify(sources: Sequence[Path], *, manifest: Manifest | None = None) -> tuple[Manifest, list[PartStatus]]:
    """Find each manifest part among ``sources`` (dirs or part files) and check its size and sha256."""
    manifest = manifest or Manifest.load(_manifest_path(sources))
    found = _index(sources)
    out = []
    for part in manifest.parts:
        path = found.get(part["name"])
        if path is None:
            out.append(PartStatus(part["name"], None, "missing"))
            continue
        size = path.stat().st_size
        if size != part["size"]:
            out.append(PartStatus(part["name"], path, "corrupt", f"{size} bytes, manifest says {part['size']}"))
        elif (digest := sha256_file(path)) != part["sha256"]:
            out.append(PartStatus(part["name"], path, "corrupt", f"sha256 {digest[:12]}..., manifest says "
                                                                 f"{part['sha256'][:12]}..."))
        else:
            out.append(PartStatus(part["name"], path, "ok"))
    return manifest, out


def _manifest_path(sources: Sequence[Path]) -> Path:
    for src in sources:
        cand = src if src.name == MANIFEST else src / MANIFEST
        if cand.is_file():
            return cand
    raise BundleError(f"no {MANIFEST} in {', '.join(map(str, sources))}: carry the bundle's manifest.json "
                      "with its parts")


def _index(sources: Sequence[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for src in sources:
        for path in (sorted(src.iterdir()) if src.is_dir() else [src]):
            if path.is_file() and path.name != MANIFEST:
                found.setdefault(path.name, path)
    return found


def stage_parts(sources: Sequence[Path], stage: Path, *, log=print) -> tuple[Manifest, list[PartStatus]]:
    """Copy the good parts found in ``sources`` (and the manifest) into ``stage``; status of all parts."""
    manifest, statuses = verify(sources)
    stage.mkdir(parents=True, exist_ok=True)
    staged = Manifest.load(stage) if (stage / MANIFEST).is_file() else None
    if staged is not None and staged.archive["sha256"] != manifest.archive["sha256"]:
        log(f"bundle: {stage} held parts of another build of {staged.name}; clearing it")
        for old in stage.iterdir():
            old.unlink()
    shutil.copyfile(_manifest_path(sources), stage / MANIFEST)
    for st in statuses:
        _raise_corrupt(st)
        if st.state == "ok" and st.path is not None and st.path.parent.resolve() != stage.resolve():
            shutil.copyfile(st.path, stage / st.name)
    return verify([stage], manifest=manifest)


def _raise_corrupt(st: PartStatus) -> None:
    if st.state == "corrupt":
        raise BundleError(f"part {st.name} at {st.path} is corrupt ({st.detail}); carry it again from "
                          "the build machine")


def unpack(sources: Path | Sequence[Path], target: Path, *, stage: Path | None = None,
           ignore_python: bool = False, log=print) -> Path:
    """Verify all parts, then join, decompress and extract them into ``target`` (pip-installing
    the wheels in wheels mode); ``target``, the directory to put on PYTHONPATH.

    With ``stage``, parts found in ``sources`` are first copied there, so parts carried by separate
    commands accumulate; raises ``BundleIncomplete`` naming the missing parts until all are there.
    """
    sources = [sources] if isinstance(sources, Path) else list(sources)
    if stage is not None:
        manifest, statuses = stage_parts(sources, stage, log=log)
    else:
        manifest, statuses = verify(sources)
    for st in statuses:
        _raise_corrupt(st)
    missing = [st.name for st in statuses if st.state == "missing"]
    if missing:
        where = stage or ", ".join(map(str, sources))
        raise BundleIncomplete(f"{len(statuses) - len(missing)} of {len(statuses)} parts of "
                               f"{manifest.name} present in {where}; missing: {', '.join(missing)}. "
                               "Carry them in a later command and run the same unpack line again")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != manifest.python_version and not ignore_python:
        raise BundleError(f"bundle {manifest.name} is for Python {manifest.python_version}, this is {here} "
                          f"({sys.executable}); run it with python{manifest.python_version}, or pass "
                          "--ignore-python")
    marker = target / MARKER
    if marker.is_file() and json.loads(marker.read_text())["sha256"] == manifest.archive["sha256"]:
        log(f"bundle: {manifest.name} already unpacked in {target}")
        return target
    if target.exists() and any(target.iterdir()):
        raise BundleError(f"target {target} is not empty and holds no unpacked copy of this build of "
                          f"{manifest.name}; remove it or choose another --target")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: a failed unpack leaves no half-filled target.
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial.", dir=target.parent))
    try:
        _unpack_into(manifest, [st.path for st in statuses if st.path is not None], work, log=log)
        (work / MARKER).write_text(json.dumps({"name": manifest.name,
                                               "sha256": manifest.archive["sha256"]}) + "\n")
        if target.exists():
            target.rmdir()
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"bundle: {manifest.name} ready; use it with:\n"
        f"export PYTHONPATH={target.resolve()}${{PYTHONPATH:+:$PYTHONPATH}}")
    return target


def _unpack_into(manifest: Manifest, parts: Sequence[Path], work: Path, *, log=print) -> None:
    dest = work if manifest.mode == "site" else work / ".wheels"
    dest.mkdir(exist_ok=True)
    t0 = time.monotonic()
    with (contextlib.closing(ConcatReader(parts)) as joined,
          decompressing_reader(joined, manifest.compression["method"]) as raw):
        n = extract(raw, dest, total=manifest.archive["tar_size"], log=log)
    log(f"bundle: extracted {n} files in {time.monotonic() - t0:.1f} s")
    if manifest.mode == "wheels":
        wheels.install_wheels(sorted(dest.glob("*.whl")), work, log=log)
        shutil.rmtree(dest)


def extract(stream, dest: Path, *, total: int = 0, log=print) -> int:
    """Extract a tar stream into ``dest`` member by member, refusing any that would land outside it."""
    root = dest.resolve()
    progress = Progress("extract", total, log=log)
    n = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            _check_member(member, root)
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, root, filter="data")
            else:  # Python < 3.11.4: the check above is the guard
                tar.extract(member, root)
            n += 1
            progress.update(member.size)
    return n


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = member.name
    path = (root / name).resolve()
    bad = ""
    if name.startswith("/") or ".." in PurePosixPath(name).parts or not path.is_relative_to(root):
        bad = "its path leaves the target directory"
    elif member.issym() or member.islnk():
        link = member.linkname
        base = path.parent if member.issym() else root
        if link.startswith("/") or not (base / link).resolve().is_relative_to(root):
            bad = f"it links to {link!r}, outside the target directory"
    elif not (member.isreg() or member.isdir()):
        bad = "it is not a regular file, directory or link"
    if bad:
        raise BundleError(f"refusing tar member {name!r}: {bad}; the archive was not made by "
                          "`vqbench bundle build` or has been tampered with")
