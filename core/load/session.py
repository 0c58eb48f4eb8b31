"""One engine under load: its server started from the plan's own engine arguments, its clips prepared as
the offline cells prepare them, the clips answered alone first (the reference and the warm-up), then
scenarios on demand, each returned as a ``load`` record. The pytest fixture and ``vqbench load`` both
drive this class; neither has its own way of running a scenario.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Literal

from core.base.records import LoadRecord
from core.load import scenarios as sc
from core.load.server import SERVED_NAME, VLLMServer


class LoadSession:
    def __init__(self, plan, task, settings, *, clips, frames_for, log_dir: Path) -> None:
        self.plan, self.task, self.settings = plan, task, settings
        self.clips, self.frames_for, self.log_dir = list(clips), frames_for, Path(log_dir)
        self.server: VLLMServer | None = None
        self.run: sc.LoadRun | None = None
        self.excluded: dict[str, str] = {}
        self.capacity: dict[str, Any] = {}
        self._offline: sc.ScenarioResult | None = None
        self.observation: dict[str, Any] = {}
        """What the server's log says it ran (``_observe``), set once it has started."""

    def _record(self, scenario: str, status: Literal["ok", "error"]) -> LoadRecord:
        """A load record's identity (the engine, its device class, the task) and status; the scenario's
        figures or its error are added by ``scenario`` / ``error_record``."""
        e = self.plan.engine
        return {"type": "load", "scenario": scenario, "engine": e.id, "model": e.model, "backend": e.backend,
                "format": e.format, "device": e.device, "gpu_class": self.plan.device_class, "task": self.task.name,
                "status": status, "time": time.time(), "machine": self.machine}

    @functools.cached_property
    def machine(self) -> dict[str, Any]:
        """Which machine serves: two leases of the same GPU model can differ by a fifth in videos/s (the
        host prepares every video), so ratios between formats are same-machine only where this matches."""
        import socket

        from core.plan import device as devices

        dev = devices.for_kind(self.plan.engine.device, self.settings.cpu_dtype)
        return {"host": socket.gethostname(), "cpu": devices.cpu_model(), "gpu_uuid": dev.uuid}

    def start(self) -> LoadSession:
        from core.backends.vllm import VLLMBackend
        from core.load.workload import prepare
        from core.plan import device as devices

        s, e = self.settings, self.plan.engine
        dev = devices.for_kind(e.device, s.cpu_dtype)
        backend = VLLMBackend(self.plan.spec, self.plan.fmt, dev, s.engine_options())
        kwargs, _ = backend.server_kwargs()
        self.engine_kwargs = kwargs
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.server = VLLMServer(kwargs, log=self.log_dir / f"{e.id}-{self.task.name}-{stamp}.log",
                                 start_timeout_s=s.server_start_timeout, device_memory_gib=dev.memory_gib)
        self.server.start()
        try:
            items, self.excluded = prepare(self.clips, self.task, frames_for=self.frames_for,
                                           tokenizer=backend.tokenizer,
                                           processor_kwargs=backend.family.processor_kwargs, model=SERVED_NAME,
                                           max_new_tokens=s.max_new_tokens, ignore_eos=s.ignore_eos)
            self.run = sc.LoadRun(self.server.url, items, slo_s=s.load_slo, timeout_s=s.load_timeout,
                                  seed=s.engine_options().seed, check_alive=self.server.check_alive)
            if items:
                # first-request set-up (the vision path's first call) stays out of every figure
                sc.run_schedule(self.server.url, [(0.0, items[0])], timeout_s=s.load_timeout, tag="warmup")
            self.alone = self.run.alone()
            facts = self.server.facts.to_dict() if self.server.facts else {}
            self.capacity = sc.capacity(facts, self.alone, s.max_new_tokens)
            self.observation = self._observe(dev, backend)
        except BaseException:
            self.close()
            raise
        return self

    def _observe(self, dev, backend) -> dict[str, Any]:
        """The linear kernels the server's engine logged choosing (``Selected X for SCHEME``), judged against
        the format's own as the in-process engine's are (``core.plan.kernels``). The server's model cannot be
        inspected from here, so kernels come without per-layer counts, and a format whose layers log no choice
        (unquantized bf16 on a GPU) stays inconclusive."""
        from core.plan import kernels

        lines = self.server.log.read_text(errors="replace").splitlines() if self.server else []
        observed = {"quantization": self.engine_kwargs.get("quantization"),
                    **kernels.vllm_kernels(None, kernels.parse_log(lines)), "source": "server log"}
        mode = kernels.observe_mode(observed, fmt=self.plan.fmt, backend=self.plan.engine.backend, device_kind=dev.kind)
        return {"device_name": dev.name, "kernels": observed, "versions": backend.versions(),
                "observed_mode": {**mode, "declared": self.plan.verdict.mode}}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def started(self) -> tuple[sc.LoadRun, VLLMServer]:
        """The load run and the server of a started session."""
        if self.run is None or self.server is None:
            raise RuntimeError("the load session has not been started (LoadSession.start)")
        return self.run, self.server

    def offline(self) -> sc.ScenarioResult:
        if self._offline is None:
            self._offline = self.started()[0].offline(self.settings.load_requests)
        return self._offline

    def scenario(self, name: str) -> LoadRecord:
        """Run scenario ``name`` and return its ``load`` record (figures, batch drift, capacity, server)."""
        s = self.settings
        run, server = self.started()
        self._first_point = len(run.finished)
        if name == "offline":
            points = [self.offline()]
            body = points[0].to_dict()
        elif name == "server":
            rate = s.load_rate or self._half_offline_rate()
            points = [run.server(rate, s.load_requests)]
            body = points[0].to_dict()
            body["rate_from"] = "--load-rate" if s.load_rate else "half the offline videos/s"
        elif name == "camera":
            # start near what the offline rate says one period can hold: half of it
            start = max(1, int(self._half_offline_rate() * s.camera_period))
            search = run.camera_search(period_s=s.camera_period, clips_per_stream=s.camera_clips, start_streams=start)
            points, body = search.pop("_results"), search
        elif name == "sweep":
            search = run.sweep(start_rate=self._half_offline_rate(), n=s.load_requests, confirm_n=s.load_confirm)
            points, body = search.pop("_results"), search
        else:
            raise ValueError(f"unknown load scenario {name!r}")
        drift = sc.batch_drift(self.alone, points, run.items, confidence=s.drift_confidence,
                               inconclusive=s.drift_inconclusive)
        rec = self._record(name, "ok")
        rec.update({"result": body, "batch_drift": drift, "capacity": self.capacity, "alone": self.alone.to_dict(),
                    "server": {"log": str(server.log), "url": server.url,
                               "facts": server.facts.to_dict() if server.facts else None,
                               "engine_kwargs": {k: v for k, v in self.engine_kwargs.items() if k != "model"},
                               "model_dir": str(self.engine_kwargs.get("model")),
                               **self.observation},
                    "excluded_clips": self.excluded})
        return rec

    def error_record(self, name: str, exc: BaseException) -> LoadRecord:
        """The record of a scenario that failed (the server died, a request could not be built...): the
        error, the server's log, and every point it finished before (their figures stand)."""
        done = self.run.finished[getattr(self, "_first_point", len(self.run.finished)):] if self.run else []
        rec = self._record(name, "error")
        why = (f"interrupted after {len(done)} finished point(s)" if isinstance(exc, KeyboardInterrupt)
               else str(exc) or type(exc).__name__)
        rec.update({"error_type": type(exc).__name__, "error": why,
                    "server_log": str(self.server.log) if self.server else None,
                    "finished_points": [p.to_dict() for p in done]})
        return rec

    def _half_offline_rate(self) -> float:
        vps = self.offline().figures().get("videos_per_s")
        if not vps:
            raise RuntimeError("the offline scenario completed no request, so no start rate can be derived from it; "
                               f"its errors: {self.offline().to_dict()['error_examples']}")
        return vps / 2

    def alone_vs_golden(self, golden: dict[str, Any], tolerance: float) -> list[str]:
        """Differences between the answers at concurrency 1 and an offline golden of this engine: the label,
        and each candidate log-prob within ``tolerance`` (a candidate outside the top log-probs is not judged)."""
        items = {it.clip: it for it in self.started()[0].items}
        out = []
        by_clip = {o.clip: o for o in self.alone.outcomes}
        for clip, want in sorted(golden.get("videos", {}).items()):
            o = by_clip.get(clip)
            if o is None or not o.ok:
                out.append(f"{clip}: no answer through the server ({o.error if o else 'not sent'})")
                continue
            rec = sc.as_record(o, items[clip], clip)
            if rec["predicted"] != want["label"]:
                out.append(f"{clip}: label {rec['predicted']} through the server, {want['label']} in the golden")
            for label, lp in want.get("logprobs", {}).items():
                if label in rec.get("candidates_outside_top", []):
                    continue
                got = rec["candidate_logprobs"].get(label)
                if got is None or abs(got - lp) > tolerance:
                    out.append(f"{clip}: log p({label}) {got} through the server, {lp} in the golden "
                               f"(tolerance {tolerance})")
        return out
