"""Decode ahead: upcoming clips are decoded in worker processes while the engine answers the current one.

``DecodeAhead`` hands out decoded clips in the order they were asked for, one outcome per clip
(frames, or that clip's own error), with at most ``ahead`` clips submitted and not yet handed out,
so memory stays bounded (``plan`` derives ``ahead`` from a byte budget and the largest clip). The
per-clip decode time is the worker's own (``Frames.decode_s``); the time the consumer waited is
reported beside it. Built on ``concurrent.futures.ProcessPoolExecutor`` with the spawn start
method (safe beside CUDA and vLLM's own processes; workers import only numpy and PyAV).

A worker that dies (FFmpeg crashing on a hostile file) breaks the whole pool; then the pool is
started again and the clips that were in flight are decoded one at a time, so the one that kills
its worker again fails alone and every other clip still gets its frames.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from core.base import procs
from core.base.errors import VideoError
from core.inputs.sampling import SamplingSpec

DECODERS = ("pyav", "nvdec")
DEFAULT_BUDGET_BYTES = 2 * 2**30
WORKER_NICE = 5
"""Decode workers run at a lower priority than the engine's process: the engine's CPU work
(processor, scheduling, kernel launches) sits on the timed path, decoding ahead does not."""
NVDEC_WORKERS = 4
"""NVDEC does the decoding on the GPU; each worker holds a CUDA context and one decoder session. On
the H200 (PyNvVideoCodec 2.2.4, 1080p60 H.264) 2, 4 and 7 workers gave 1.5, 1.8 and 1.7 clips/s."""


@dataclass(frozen=True)
class Job:
    """One clip to decode: what the worker needs, and nothing that does not pickle cheaply."""

    path: str
    spec: SamplingSpec
    decoder: str = "pyav"
    threads: int = 0
    """FFmpeg threads for a CPU decode (0 = FFmpeg's choice)."""


@dataclass
class Outcome:
    """A decoded clip, in job order: its frames or its error, and how long the consumer waited."""

    index: int
    frames: Any = None
    error: BaseException | None = None
    wait_s: float = 0.0


def decode(job: Job):
    """Decode one job (runs in a worker process; also the serial path)."""
    if job.decoder == "nvdec":
        from core.inputs import nvdec

        return nvdec.load_frames(job.path, job.spec, threads=job.threads)
    from core.inputs.video import load_frames

    return load_frames(job.path, job.spec, threads=job.threads)


def cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Plan:
    workers: int
    """Worker processes (0: decode in the calling process, one clip at a time, as before)."""
    ahead: int
    """Clips submitted and not yet handed out, at most."""
    threads: int
    """FFmpeg threads per worker."""
    clip_bytes: int
    budget_bytes: int

    def describe(self) -> str:
        if self.workers == 0:
            return "decoding in the main process, one clip at a time"
        return (f"decoding ahead in {self.workers} worker process{'es' if self.workers > 1 else ''} "
                f"({self.threads} FFmpeg thread{'s' if self.threads > 1 else ''} each), at most {self.ahead} "
                f"clip{'s' if self.ahead > 1 else ''} in flight ({self.budget_bytes / 2**20:.0f} MiB budget / "
                f"{self.clip_bytes / 2**20:.1f} MiB for the largest clip)")


def plan(*, clips: int, clip_bytes: int, workers: int | None = None, budget_bytes: int = DEFAULT_BUDGET_BYTES,
         decoder: str = "pyav", device: str = "cuda", ncores: int | None = None) -> Plan:
    """Worker count and in-flight bound.

    ``workers`` None sizes the pool to the machine: for a GPU engine, every core but two (the
    engine's own process and vLLM's engine core keep one each); for a CPU engine one worker (the
    engine itself uses every core: more decoders would only take cores from it); for NVDEC
    ``NVDEC_WORKERS``. ``ahead`` = the byte budget over the largest clip's decoded bytes, at least 1
    and at most two per worker (more would only hold memory earlier); FFmpeg threads = the cores
    shared out over the workers."""
    ncores = ncores or cores()
    if workers is None:
        workers = (NVDEC_WORKERS if decoder == "nvdec" else 1 if device == "cpu" else max(1, ncores - 2))
    clip_bytes = max(1, int(clip_bytes))
    by_budget = max(1, int(budget_bytes // clip_bytes))
    if workers == 0:
        return Plan(0, 1, 0, clip_bytes, budget_bytes)
    ahead = max(1, min(by_budget, 2 * workers, clips))
    workers = max(1, min(workers, ahead))
    threads = max(1, ncores // workers) if decoder == "pyav" else 1
    return Plan(workers, ahead, threads, clip_bytes, budget_bytes)


def _ok(future: Future) -> bool:
    """Finished with a result (not failed, not cancelled, not lost with a broken pool)."""
    return future.done() and not future.cancelled() and future.exception() is None


def _worker_init(nice: int) -> None:
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass


class DecodeAhead:
    """Decode ``jobs`` in a process pool, ``ahead`` at most in flight; iterate for ``Outcome``s in
    job order. ``workers`` 0 decodes lazily in the calling process (no pool)."""

    def __init__(self, jobs: Sequence[Job], *, workers: int, ahead: int,
                 fn: Callable[[Job], Any] = decode, nice: int = WORKER_NICE) -> None:
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self.jobs = list(jobs)
        self.workers, self.ahead, self.fn, self.nice = workers, ahead, fn, nice
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[int, Future] = {}
        self._isolate: set[int] = set()
        self.max_in_flight = 0
        """The most clips ever submitted and not yet handed out (a bound the tests check)."""
        self.restarts = 0
        """Times the pool was started again after a worker died."""

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    def helper_pids(self) -> set[int]:
        """The pool's worker processes now (they belong to no engine: ``core.base.procs.register_helpers``)."""
        workers = getattr(self._pool, "_processes", None) if self._pool is not None else None
        return set(workers.copy()) if workers else set()  # copy(): the pool adds workers as clips are submitted

    def _new_pool(self) -> ProcessPoolExecutor:
        procs.register_helpers(self)
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(self.nice,))

    def _fill(self, current: int) -> None:
        """Submit clips ``current`` .. ``current + ahead - 1`` not yet submitted (only ``current``
        while the clips that were in flight when a worker died are being retried)."""
        limit = min(current + (1 if self._isolate else self.ahead), len(self.jobs))
        for k in range(current, limit):
            if k not in self._futures:
                if self._pool is None:
                    raise RuntimeError("decode pool submitted to before start()")
                self._futures[k] = self._pool.submit(self.fn, self.jobs[k])
        self.max_in_flight = max(self.max_in_flight, len(self._futures))

    def _restart(self) -> None:
        """A worker died and took the pool with it: keep the clips already decoded, retry the rest
        one at a time in a new pool."""
        lost = {k for k, f in self._futures.items() if not _ok(f)}
        for k in lost:
            self._futures.pop(k)
        self._isolate |= lost
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._new_pool()
        self.restarts += 1

    def start(self) -> None:
        """Start the workers and submit the first clips now (``vqbench run`` does this before loading
        the engine, so the first clips decode while the model loads); iterating starts it anyway."""
        if self.workers and self._pool is None:
            self._pool = self._new_pool()
            if self.jobs:
                self._fill(0)

    def __iter__(self) -> Iterator[Outcome]:
        if self.workers == 0:
            for i, job in enumerate(self.jobs):
                self.max_in_flight = 1
                t0 = time.perf_counter()
                try:
                    out = Outcome(i, frames=self.fn(job))
                except Exception as exc:  # noqa: BLE001 - one clip's error is that clip's outcome
                    out = Outcome(i, error=exc)
                out.wait_s = time.perf_counter() - t0
                yield out
            return
        self.start()
        try:
            for i in range(len(self.jobs)):
                yield self._one(i)
        finally:
            self.close()

    def _one(self, i: int) -> Outcome:
        t0 = time.perf_counter()
        while True:
            try:
                self._fill(i)
                out = Outcome(i, frames=self._futures[i].result())
            except BrokenProcessPool:
                alone = (i in self._isolate and i in self._futures
                         and all(_ok(f) for k, f in self._futures.items() if k != i))
                self._restart()
                if self.restarts > len(self.jobs) + 2:
                    raise RuntimeError("decode workers keep dying before decoding anything; run with "
                                       "--decode-workers 0 to decode in the main process") from None
                if not alone:
                    continue  # retry it (and those that were in flight with it) one at a time
                # It ran alone in a fresh pool and its worker died again: this clip kills the decoder.
                out = Outcome(i, error=VideoError(self.jobs[i].path, "the decoder process died while decoding "
                                                  "this file (a crash inside FFmpeg)"))
            except Exception as exc:  # noqa: BLE001 - the worker's exception is this clip's error
                out = Outcome(i, error=exc)
            break
        self._futures.pop(i, None)
        self._isolate.discard(i)
        out.wait_s = time.perf_counter() - t0
        return out

    def close(self) -> None:
        if self._pool is not None:
            for f in self._futures.values():
                f.cancel()
            self._futures.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> DecodeAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- which decoder --------------------------------------------------------------------------------

def nvdec_check_job() -> str:
    """Runs in a fresh process: '' when NVDEC decodes here, else why not (see ``core.inputs.nvdec.check``)."""
    from core.inputs import nvdec

    return nvdec.check()


def resolve_decoder(name: str) -> tuple[str, str]:
    """(decoder to use, why it differs from ``name``): NVDEC is checked by decoding a tiny clip in a
    separate process (the main process never creates a CUDA context for it); any failure falls back
    to PyAV with the reason."""
    if name not in DECODERS:
        from core.base.errors import unknown_name

        raise unknown_name("decoder", name, DECODERS)
    if name == "pyav":
        return "pyav", ""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        try:
            reason = ex.submit(nvdec_check_job).result()
        except Exception as exc:  # noqa: BLE001 - a crashed check is a reason too
            reason = f"the NVDEC check failed: {type(exc).__name__}: {exc}"
    return ("pyav", reason) if reason else ("nvdec", "")
