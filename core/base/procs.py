"""Process hygiene for engines that run in child processes (vLLM's engine core and workers): find
the processes an engine started (and the helpers that are not its own), tell live from dead, and wait
for them.

psutil does the work; this module only says which processes belong to an engine.
"""

from __future__ import annotations

import multiprocessing
import time
import weakref
from typing import Any

SHUTDOWN_TIMEOUT_S = 30.0


def children() -> set[int]:
    """PIDs of every descendant of this process."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def started_since(before: set[int]) -> list:
    """psutil handles of the descendants started after ``before`` was taken (not multiprocessing's
    resource tracker, which outlives any one engine)."""
    import psutil

    tracker = resource_tracker_pid()
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.pid != tracker]


_HELPERS: weakref.WeakSet[Any] = weakref.WeakSet()


def register_helpers(owner: Any) -> None:
    """Mark the processes of ``owner`` (its ``helper_pids()``, asked afresh each time) as vqbench's own
    helpers that belong to no engine, e.g. the decode-ahead workers: engine memory leaves them out."""
    _HELPERS.add(owner)


def helper_pids() -> set[int]:
    """Descendants of this process that belong to no engine: the registered helpers' processes and
    multiprocessing's resource tracker."""
    out: set[int] = set()
    for owner in list(_HELPERS):
        out.update(owner.helper_pids())
    tracker = resource_tracker_pid()
    if tracker is not None:
        out.add(tracker)
    return out


def resource_tracker_pid() -> int | None:
    try:
        from multiprocessing import resource_tracker

        return getattr(resource_tracker._resource_tracker, "_pid", None)
    except Exception:  # noqa: BLE001
        return None


def running(p) -> bool:
    """A live process (a zombie has exited: it only waits for its parent to collect it)."""
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def mp_children() -> list:
    """Processes started through multiprocessing that it has not joined yet (the engine core)."""
    return list(getattr(multiprocessing.process, "_children", ()))


def reap(procs: list, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Wait for ``procs`` to exit, kill stragglers, and collect every exit status.

    multiprocessing collects its own children (``active_children`` joins exited ones), so their
    exit codes stay readable; psutil collects anything else that is left as a zombie."""
    import psutil

    deadline = time.monotonic() + timeout
    while procs and time.monotonic() < deadline:
        multiprocessing.active_children()
        if not any(running(p) for p in procs):
            break
        psutil.wait_procs([p for p in procs if running(p)], timeout=0.2)
    for p in procs:
        if running(p):
            try:
                p.kill()
            except psutil.Error:
                pass
    multiprocessing.active_children()
    psutil.wait_procs([p for p in procs if p.is_running()], timeout=5)
