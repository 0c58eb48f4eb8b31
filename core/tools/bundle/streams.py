"""Byte streams a bundle passes through: the writer that cuts a stream into numbered parts (hashing each),
the reader that joins them again, xz compression and decompression, and progress lines."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from core.tools.bundle.manifest import BundleError, MiB, mib_text


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
        of = f"/{mib_text(self.total)}" if self.total else ""
        rate = self.done / MiB / secs
        return f"bundle: {self.label}: {mib_text(self.done)}{of} MiB in {secs:.0f} s ({rate:.1f} MiB/s)"


class PartWriter:
    """A binary sink that cuts what it is given into ``NAME.partNNN`` files of ``part_size`` bytes,
    hashing each part and the whole."""

    def __init__(self, out_dir: Path, archive_name: str, part_size: int) -> None:
        self.out_dir, self.archive_name, self.part_size = out_dir, archive_name, part_size
        self.parts: list[dict] = []
        self.total = 0
        self._whole = hashlib.sha256()
        self._fh: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data) -> int:
        view = memoryview(data)
        while view:
            if self._fh is None or self._size == self.part_size:
                self._next()
            take = view[: self.part_size - self._size]
            assert self._fh is not None  # _next opened it
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
        self._fh: BinaryIO | None = None

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
            assert proc.stdin is not None  # stdin=PIPE
            yield _Tee(proc.stdin, progress), info
        finally:
            if proc.stdin is not None:
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
