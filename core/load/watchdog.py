"""Stops a vLLM server's process group when the process that started it is killed outright.

``python -m core.load.watchdog PGID GRACE_S OWNER_PID``, started by ``VLLMServer.start`` in a session of its
own, with its stdin the read end of a pipe whose write end only the owner holds. The owner writes
``stopped`` before it closes the pipe when it stopped the server itself; end of input without it means
the owner is gone without stopping it (SIGKILL, the OOM killer, a crash in native code: no ``atexit``
hook runs), and the watchdog sends the group SIGTERM, then SIGKILL after ``GRACE_S``.

Why a process and not ``prctl(PR_SET_PDEATHSIG)``: that signal fires when the *thread* that started the
server exits, not the process, so a server started from any other thread than the main one would be
stopped early; and Python's ``subprocess`` offers it only through ``preexec_fn``, which is unsafe in a
process with threads. A pipe's end of input is the kernel's own word that every holder of its write end
is gone.

Standard library only: it starts beside a process that may be about to die, and must start fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

STOPPED = b"stopped"
POLL_S = 0.2


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    pgid, grace_s, owner = int(argv[0]), float(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner's Ctrl-C is the owner's to handle
    said = sys.stdin.buffer.read()  # returns at end of input: the owner closed the pipe, or died
    if said.startswith(STOPPED) or not group_alive(pgid):
        return 0
    print(f"vqbench watchdog: the process that started this server (pid {owner}) ended without stopping it; "
          f"SIGTERM to its process group {pgid}", flush=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    # Polling: a process group has no handle to wait on from outside it (the server is not our child).
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if group_alive(pgid):
        print(f"vqbench watchdog: process group {pgid} outlived {grace_s:.0f} s after SIGTERM; SIGKILL", flush=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
