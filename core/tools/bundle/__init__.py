"""Offline bundles: a backend's wheels for the air-gapped GPU machines, in parts under a size limit.

The GPU machines reach no package index and each device command carries at most 64 MiB, so a
backend's packages travel as a bundle: the wheels of a pinned requirements file (``--mode wheels``)
or the site directory they install to, pruned of files the suite never loads (``--mode site``),
as one deterministic tar stream, optionally xz-compressed, cut into numbered parts, with a
``manifest.json`` naming every part's size and sha256. ``plan`` groups the parts into device
commands; ``unpack`` (run there, stdlib only) gathers parts that arrive in separate commands in a
staging directory, verifies them, and unpacks once all are present.

Run as ``vqbench bundle ...`` or, where vqbench is not installed, ``python -m core.tools.bundle ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from core.errors import VqbenchError

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


# ------------------------------------------------------------------------------------------- io


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


class Progress:
    """Logs ``label: done/total MiB (rate MiB/s)`` at most every ``every`` seconds, and once at the end."""

    def __init__(self, label: str, total: int = 0, *, log=print, every: float = 5.0) -> None:
        self.label, self.total, self.log, self.every = label, total, log, every
        self.done, self.t0 = 0, time.monotonic()
        self.last = self.t0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.log(self.line(now))

    def line(self, now: float | None = None) -> str:
        secs = max((now or time.monotonic()) - self.t0, 1e-9)
        of = f"/{_mb(self.total)}" if self.total else ""
        return f"bundle: {self.label}: {_mb(self.done)}{of} MiB in {secs:.0f} s ({self.done / MiB / secs:.1f} MiB/s)"


class PartWriter:
    """A binary sink that cuts what it is given into ``NAME.partNNN`` files of ``part_size`` bytes,
    hashing each part and the whole."""

    def __init__(self, out_dir: Path, archive_name: str, part_size: int) -> None:
        self.out_dir, self.archive_name, self.part_size = out_dir, archive_name, part_size
        self.parts: list[dict] = []
        self.total = 0
        self._whole = hashlib.sha256()
        self._fh = None
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data) -> int:
        view = memoryview(data)
        while view:
            if self._fh is None or self._size == self.part_size:
                self._next()
            take = view[: self.part_size - self._size]
            self._fh.write(take)
            self._hash.update(take)
            self._whole.update(take)
            self._size += len(take)
            self.total += len(take)
            view = view[len(take):]
        return len(data)

    def _next(self) -> None:
        self._finish()
        name = f"{self.archive_name}.part{len(self.parts):03d}"
        self._fh = open(self.out_dir / name, "wb")  # noqa: SIM115 (closed by _finish)
        self._hash, self._size = hashlib.sha256(), 0
        self.parts.append({"name": name, "size": 0, "sha256": ""})

    def _finish(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self.parts[-1].update(size=self._size, sha256=self._hash.hexdigest())
            self._fh = None

    def close(self) -> None:
        if not self.parts:
            self._next()
        self._finish()

    def sha256(self) -> str:
        return self._whole.hexdigest()


class ConcatReader:
    """Reads several files as one stream, in order (the parts, joined without a temporary file)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._fh = None

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunks = []
        while n != 0:
            if self._fh is None:
                if not self._paths:
                    break
                self._fh = open(self._paths.pop(0), "rb")  # noqa: SIM115 (closed at its end)
            data = self._fh.read(n)
            if not data:
                self._fh.close()
                self._fh = None
                continue
            chunks.append(data)
            if n > 0:
                n -= len(data)
        return b"".join(chunks)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


XZ_DICT = {0: 256 << 10, 1: 1 << 20, 2: 2 << 20, 3: 4 << 20, 4: 4 << 20, 5: 8 << 20, 6: 8 << 20,
           7: 16 << 20, 8: 32 << 20, 9: 64 << 20}
"""xz's dictionary size per preset level (xz(1), "Presets")."""


@contextlib.contextmanager
def compressor(method: str, sink, *, level: int = 6, threads: int | None = None,
               dict_size: int | None = None, total: int = 0, log=print) -> Iterator[tuple[object, dict]]:
    """A binary stream that compresses into ``sink``, and a dict describing how (for the manifest).

    xz uses the ``xz`` program in multi-threaded mode (blocks of 3x the dictionary: the same bytes
    for any thread count) when it is installed, else Python's lzma (single-threaded).
    """
    progress = Progress("compress" if method != "none" else "write", total, log=log)
    if method == "none":
        yield _Tee(sink, progress), {"method": "none"}
        log(progress.line())
        return
    if method != "xz":
        raise BundleError(f"unknown compression {method!r}: use 'xz' or 'none'")
    if level not in XZ_DICT:
        raise BundleError(f"xz level must be 0-9, got {level}")
    dict_size = dict_size or XZ_DICT[level]
    xz = shutil.which("xz")
    if xz and threads != 1:
        threads = max(2, threads or os.cpu_count() or 2)
        block = 3 * dict_size
        cmd = [xz, "-c", "-z", "-T", str(threads), f"--block-size={block}",
               f"--lzma2=preset={level},dict={dict_size}"]
        version = subprocess.run([xz, "--version"], check=False, capture_output=True, text=True).stdout.split("\n")[0]
        info = {"method": "xz", "tool": version, "level": level, "dict_size": dict_size,
                "block_size": block, "encoder": "multi-threaded (same bytes for any thread count)"}
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        pump = threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, sink, MiB), daemon=True)
        pump.start()
        try:
            yield _Tee(proc.stdin, progress), info
        finally:
            proc.stdin.close()
            pump.join()
            if proc.wait() != 0:
                raise BundleError(f"{' '.join(cmd)} failed with exit {proc.returncode}")
    else:
        import lzma

        filters = [{"id": lzma.FILTER_LZMA2, "preset": level, "dict_size": dict_size}]
        comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)
        info = {"method": "xz", "tool": f"python lzma {sys.version.split()[0]}", "level": level,
                "dict_size": dict_size, "encoder": "single-threaded (same bytes as xz -T1)"}

        class _Sink:
            def write(self, data) -> int:
                sink.write(comp.compress(data))
                return len(data)

        yield _Tee(_Sink(), progress), info
        sink.write(comp.flush())
    log(progress.line())


class _Tee:
    """Passes writes on to ``sink`` and counts them into ``progress``."""

    def __init__(self, sink, progress: Progress) -> None:
        self.sink, self.progress = sink, progress

    def write(self, data) -> int:
        self.sink.write(data)
        self.progress.update(len(data))
        return len(data)


@contextlib.contextmanager
def decompressing_reader(stream, method: str) -> Iterator[object]:
    """``stream`` decompressed as ``method`` (from the manifest) says."""
    if method == "none":
        yield stream
    elif method == "xz":
        import lzma

        with lzma.LZMAFile(stream) as fh:
            yield fh
    else:
        raise BundleError(f"the manifest names compression {method!r}, which this vqbench cannot read")


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


# ---------------------------------------------------------------------------------------- build


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
    target = _PipTarget(python_version, implementation, tuple(platforms), tuple(find_links), no_index)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob(f"{name}.*.part*"), out_dir / MANIFEST]:
        stale.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out_dir.parent) as tmp:
        wheel_dir = wheel_cache or Path(tmp) / "wheels"
        wheels = download(req, wheel_dir, target=target, log=log)
        packages = [_wheel_entry(w) for w in wheels]
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
        log(f"bundle: writing {len(files)} files ({_mb(sum(p.stat().st_size for _, p in files))} MiB) "
            f"as {archive_name}, {compress}, parts of {_mb(part_size)} MiB")
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
    log(f"bundle: {archive_name}: {_mb(writer.total)} MiB in {len(writer.parts)} part(s) "
        f"(tar {_mb(raw_size)} MiB, {seconds:.1f} s) -> {out_dir}")
    return manifest


@dataclass(frozen=True)
class _PipTarget:
    """The interpreter and platform the wheels are for, as pip options."""

    python_version: str
    implementation: str
    platforms: tuple[str, ...]
    find_links: tuple[Path, ...]
    no_index: bool

    def options(self) -> list[str]:
        opts = ["--only-binary=:all:", "--python-version", self.python_version,
                "--implementation", self.implementation]
        for p in self.platforms:
            opts += ["--platform", p]
        for d in self.find_links:
            opts += ["--find-links", str(d)]
        if self.no_index:
            opts.append("--no-index")
        return opts


def download(req: Requirements, wheel_dir: Path, *, target: _PipTarget, log=print) -> list[Path]:
    """``pip download --no-deps`` every line of ``req`` into ``wheel_dir``; the wheels, one each."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
           "--disable-pip-version-check", *target.options(), "-d", str(wheel_dir), *req.lines]
    total = len(req.lines)
    got: list[Path] = []

    def on_line(line: str) -> None:
        m = re.match(r"\s*(?:Saved|File was already downloaded)\s+(\S+)", line)
        if m:
            got.append(wheel_dir / Path(m.group(1)).name)
            log(f"bundle: download [{len(got)}/{total}] {got[-1].name}")

    _run(cmd, on_line, what=f"downloading the {total} requirements of {req.path}",
         hint="check the pins exist as binary wheels for cp"
              f"{target.python_version.replace('.', '')} on these platforms (`pip index versions NAME "
              f"--python-version {target.python_version} --only-binary=:all:`)")
    by_name = {_canon(whl.name.split("-")[0]): whl for whl in got}
    wheels, missing = [], []
    for line in req.lines:
        key = _canon(re.split(r"[\s<>=!~;\[@(]", line, maxsplit=1)[0])
        (wheels.append(by_name[key]) if key in by_name else missing.append(line))
    if missing:
        raise BundleError(f"pip reported success but left no wheel for {missing} in {wheel_dir}")
    return sorted(set(wheels), key=lambda p: p.name)


def install_site(wheels: Sequence[Path], stage: Path, *, target: _PipTarget, log=print) -> None:
    """Install ``wheels`` (no deps, no .pyc) into ``stage`` for the target interpreter."""
    log(f"bundle: installing {len(wheels)} wheels into a site dir for Python {target.python_version}")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--no-index",
           "--disable-pip-version-check", "--progress-bar", "off", "--target", str(stage),
           *target.options(), *map(str, wheels)]
    _run(cmd, lambda line: None, what="installing the downloaded wheels into the site dir",
         hint="a wheel may not match the target python/platform")
    # PEP 610 records the build machine's temporary wheel path: untrue there, and it breaks determinism.
    for direct in stage.glob("*.dist-info/direct_url.json"):
        direct.unlink()
        record = direct.parent / "RECORD"
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        record.write_text("".join(x for x in lines if not x.startswith(f"{direct.parent.name}/direct_url.json,")),
                          encoding="utf-8")


def _run(cmd: list[str], on_line, *, what: str, hint: str) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line)
        if "is ignored: it is neither a file nor a directory" not in line:
            tail = (tail + [line.rstrip()])[-15:]
    if proc.wait() != 0:
        raise BundleError(f"pip failed {what} (exit {proc.returncode}); {hint}. pip said:\n"
                          + "\n".join(tail))


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
    log(f"bundle: pruned {_mb(excluded)} MiB by {len(used)} exclude glob(s)")
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
    with tarfile.open(fileobj=counted, mode="w|", format=tarfile.GNU_FORMAT) as tar:
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


def _wheel_entry(whl: Path) -> dict:
    name, version = whl.name.split("-")[:2]
    return {"name": _canon(name), "version": version, "wheel": whl.name,
            "size": whl.stat().st_size, "sha256": sha256_file(whl)}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _mb(n: int) -> str:
    return f"{n / MiB:.1f}"


# ----------------------------------------------------------------------------------------- plan


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


# --------------------------------------------------------------------------------------- unpack


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


class BundleIncomplete(BundleError):
    """Some parts of the bundle have not arrived yet."""


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
        install_wheels(sorted(dest.glob("*.whl")), work, log=log)
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


def install_wheels(wheels: Sequence[Path], target: Path, *, log=print) -> None:
    """``pip install --no-index --no-deps --no-compile --target`` of the extracted wheels."""
    log(f"bundle: pip-installing {len(wheels)} wheels into {target}")
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--progress-bar", "off", "--target", str(target),
           *map(str, wheels)]
    # No index exists there; a config's find-links or constraints must not steer this install.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull}
    res = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if res.returncode != 0:
        raise BundleError(f"pip install of the bundle's wheels failed (exit {res.returncode}):\n"
                          + "\n".join(res.stdout.splitlines()[-15:]))


# ------------------------------------------------------------------------------------------ CLI


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
          f"{_mb(manifest.total_size)} MiB): {len(carries)} device command(s) of at most "
          f"{_mb(args.limit)} MiB")
    if args.bundle.is_absolute() or not args.bundle.resolve().is_relative_to(Path.cwd().resolve()):
        print(f"note: {args.bundle} is not a path inside this directory; a device command carries "
              "only paths inside the repository (build into .bundle/NAME, which git ignores)")
    for c in carries:
        print(f"command {c.index} of {len(carries)} ({_mb(c.size)} MiB): carry")
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
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the build/plan/verify/unpack subcommands to ``parser`` (e.g. ``vqbench``'s ``bundle``);
    each sets ``func``, which takes the parsed args and returns the exit status."""
    parser.set_defaults(func=lambda _args: parser.print_help() or 0)
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

