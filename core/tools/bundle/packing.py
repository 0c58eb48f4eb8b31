"""Building a bundle: the wheels (or the site dir they install to, pruned of files the suite never loads)
as one deterministic tar stream, optionally xz-compressed, cut into parts, and the manifest."""

from __future__ import annotations

import fnmatch
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from core.tools.bundle.manifest import (
    MANIFEST,
    PART_SIZE,
    PLATFORMS,
    SITE_EXCLUDES,
    BundleError,
    Manifest,
    Requirements,
    mib_text,
)
from core.tools.bundle.plan import unpack_instructions
from core.tools.bundle.streams import PartWriter, compressor
from core.tools.bundle.wheels import PipTarget, download, install_site, wheel_entry


def build(requirements: Path, out_dir: Path, *, mode: str | None = None, name: str | None = None,
          python_version: str = "3.12", implementation: str = "cp",
          platforms: Sequence[str] = PLATFORMS, part_size: int = PART_SIZE,
          exclude_globs: Sequence[str] = (), compress: str | None = None, level: int = 6,
          threads: int | None = None, dict_size: int | None = None,
          find_links: Sequence[Path] = (), no_index: bool = False, wheel_cache: Path | None = None,
          log=print) -> Manifest:
    """Download ``requirements`` as wheels and write them (or their installed site dir) as parts.

    ``mode``/``compress`` default to the file's ``# bundle-mode:``/``# bundle-compress:`` lines,
    else ``wheels`` and, for wheels, ``none`` (wheels are already deflated; xz saves little),
    for site dirs ``xz``. ``out_dir`` gets the parts and ``manifest.json``, nothing else.
    """
    req = Requirements.read(requirements)
    mode = mode or req.mode or "wheels"
    if mode not in ("wheels", "site"):
        raise BundleError(f"unknown bundle mode {mode!r}: use 'wheels' or 'site'")
    compress = compress or req.compress or ("none" if mode == "wheels" else "xz")
    suffix = {"xz": ".tar.xz", "none": ".tar"}.get(compress)
    if suffix is None:
        raise BundleError(f"unknown compression {compress!r}: use 'xz' or 'none'")
    name = name or requirements.stem
    if part_size < 1:
        raise BundleError(f"part size must be positive, got {part_size}")
    target = PipTarget(python_version, implementation, tuple(platforms), tuple(find_links), no_index)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob(f"{name}.*.part*"), out_dir / MANIFEST]:
        stale.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out_dir.parent) as tmp:
        wheel_dir = wheel_cache or Path(tmp) / "wheels"
        wheels = download(req, wheel_dir, target=target, log=log)
        packages = [wheel_entry(w) for w in wheels]
        excludes: list[str] = []
        if mode == "wheels":
            if exclude_globs or req.excludes:
                log("bundle: note: excludes apply to --mode site only (a wheel is carried whole)")
            files = [(w.name, w) for w in wheels]
            excluded_bytes = 0
        else:
            stage = Path(tmp) / "site"
            install_site(wheels, stage, target=target, log=log)
            excludes = [*SITE_EXCLUDES, *req.excludes, *exclude_globs]
            files, excluded_bytes = collect(stage, excludes, log=log)
        archive_name = f"{name}.{mode}{suffix}"
        log(f"bundle: writing {len(files)} files ({mib_text(sum(p.stat().st_size for _, p in files))} MiB) "
            f"as {archive_name}, {compress}, parts of {mib_text(part_size)} MiB")
        writer = PartWriter(out_dir, archive_name, part_size)
        t0 = time.monotonic()
        with compressor(compress, writer, level=level, threads=threads, dict_size=dict_size,
                        total=sum(p.lstat().st_size for _, p in files), log=log) as (sink, info):
            raw_size = write_tar(files, sink, log=log)
        writer.close()
        seconds = time.monotonic() - t0
    manifest = Manifest(
        name=name, mode=mode, python_version=python_version, implementation=implementation,
        platforms=list(platforms),
        requirements={"file": requirements.name, "sha256": req.sha256, "lines": list(req.lines)},
        packages=packages, excludes=excludes, excluded_bytes=excluded_bytes, compression=info,
        archive={"name": archive_name, "size": writer.total, "sha256": writer.sha256(),
                 "tar_size": raw_size, "files": len(files)},
        parts=writer.parts, part_size=part_size)
    manifest.unpack = unpack_instructions(manifest, out_dir)
    manifest.save(out_dir)
    log(f"bundle: {archive_name}: {mib_text(writer.total)} MiB in {len(writer.parts)} part(s) "
        f"(tar {mib_text(raw_size)} MiB, {seconds:.1f} s) -> {out_dir}")
    return manifest


def collect(root: Path, excludes: Sequence[str], *, log=print) -> tuple[list[tuple[str, Path]], int]:
    """Files under ``root`` as sorted (archive name, path) pairs, minus those an exclude glob matches.

    A glob matches a file's relative path or any of its parent directories' (``vllm/vllm-rs``,
    ``bin``); ``**/`` also matches at the top level.
    """
    files, excluded, used = [], 0, set()
    for path in sorted(root.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(root).as_posix()
        glob = _excluded(rel, excludes)
        if glob:
            used.add(glob)
            excluded += path.lstat().st_size
            continue
        files.append((rel, path))
    for glob in excludes:
        if glob not in used and glob not in SITE_EXCLUDES:
            log(f"bundle: warning: exclude {glob!r} matched nothing (stale after a version bump?)")
    log(f"bundle: pruned {mib_text(excluded)} MiB by {len(used)} exclude glob(s)")
    return files, excluded


def _excluded(rel: str, excludes: Sequence[str]) -> str | None:
    parts = PurePosixPath(rel).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for glob in excludes:
        pats = [glob, glob[3:]] if glob.startswith("**/") else [glob]
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes for pat in pats):
            return glob
    return None


def write_tar(files: Iterable[tuple[str, Path]], sink, *, log=print) -> int:
    """A deterministic tar of ``files`` into the binary stream ``sink``; the tar's size.

    Names in the given (sorted) order, mtime from SOURCE_DATE_EPOCH or 2020-01-01, owner 0/0 with no
    names, modes 0644/0755: the same files give the same bytes on any machine.
    """
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "1577836800"))
    counted = _Counting(sink)
    # typeshed wants a whole file object for fileobj; a stream tar only ever calls write()
    with tarfile.open(fileobj=counted, mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
        for arcname, path in files:
            info = tar.gettarinfo(str(path), arcname=arcname)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            if info.isreg():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            elif info.issym():
                tar.addfile(info)
            else:
                raise BundleError(f"{path}: only regular files and symlinks can be bundled")
    return counted.n


class _Counting:
    def __init__(self, sink) -> None:
        self.sink, self.n = sink, 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        self.sink.write(data)
        return len(data)
