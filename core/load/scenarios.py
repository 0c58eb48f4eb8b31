"""Load scenarios against a running server, their figures, and the answers under load compared with the
same clips answered alone.

- ``alone``: every clip once, one request at a time (concurrency 1): the reference answers and the
  per-clip latency a lone user sees.
- ``offline``: N requests submitted at once: videos/s and output tokens/s at full occupancy.
- ``server``: Poisson arrivals at a rate (seeded): TTFT, time per output token and end-to-end latency at
  p50/p90/p99, and goodput (requests within the SLO per second).
- ``camera``: K streams, each sending its next clip every T seconds (stream k starts at k*T/K, so the
  streams are spread over the period, as unsynchronised cameras are); the largest K whose p99 end-to-end
  latency stays within T.
- ``sweep``: the largest Poisson rate whose p99 end-to-end latency meets the SLO: doubling from a start
  rate until a point fails, then bisection until the bracket is within the stated resolution.

Latency is measured from the time a request was due, not when the client got round to sending it, so a
late client counts against the server (no coordinated omission). A quantile is reported only when the
sample has at least one request beyond it (p99 needs >= 100 requests); otherwise it is None and the
verdict is judged on the maximum, which is said (``judged_on``).

Each point also says whether its sample can tell (``slo_confidence``): "p99 <= SLO" means at most 1% of
requests over the SLO, and with k of n over (errors count as over) an exact one-sided 95% bound decides
"met", "missed", or "within noise". With 100 requests no point can confirm "met" (that needs >= 299
requests and none over); a point far over can confirm "missed". The bound treats requests as
independent; under queueing, neighbours' latencies are correlated, so it is if anything optimistic.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from core.load.client import Outcome, aiohttp_session, send, with_uuid

QUANTILES = (50, 90, 99)


@dataclass(frozen=True)
class WorkItem:
    """One clip ready to send: its request body and what its answer is judged by."""

    clip: str
    body: dict[str, Any]
    truth: str | None
    candidates: dict[str, int]
    """Candidate label -> its first token id."""


def quantiles(values: list[float]) -> dict[str, Any]:
    """p50/p90/p99 (an observed value: inverted CDF) where the sample reaches past them, the max and n."""
    import numpy as np

    out: dict[str, Any] = {"n": len(values), "max": max(values) if values else None,
                           "mean": float(np.mean(values)) if values else None}
    for q in QUANTILES:
        enough = len(values) * (1 - q / 100) >= 1 - 1e-9
        out[f"p{q}"] = float(np.quantile(values, q / 100, method="inverted_cdf")) if values and enough else None
    return out


def slo_value(stats: dict[str, Any], q: int = 99) -> tuple[float | None, str]:
    """The figure an SLO on p``q`` is judged on: the quantile, or the max when the sample is too small."""
    if stats.get(f"p{q}") is not None:
        return stats[f"p{q}"], f"p{q}"
    need = math.ceil(1 / (1 - q / 100))
    return stats.get("max"), f"max (n={stats.get('n', 0)} < {need}: p{q} not estimable)"


def slo_confidence(over: int, n: int, *, q: int = 99, confidence: float = 0.95) -> dict[str, Any]:
    """Whether ``over`` of ``n`` requests beyond the SLO shows the p``q`` requirement (at most 1 - q/100 of
    requests over) met, missed, or neither, at ``confidence``: exact one-sided binomial bounds (scipy)."""
    from core.base.errors import MissingDependency
    from core.metrics import stats

    allowed = 1 - q / 100
    need = math.ceil(math.log(1 - confidence) / math.log(1 - allowed))  # n with 0 over whose bound is <= allowed
    out: dict[str, Any] = {"over": over, "n": n, "allowed": allowed, "confidence": confidence,
                           "requests_to_confirm_met": need}
    if n == 0:
        return {**out, "verdict": "no requests"}
    try:
        low = stats.lower_bound(over, n, confidence=confidence)
        high = stats.upper_bound(over, n, confidence=confidence)
    except MissingDependency as exc:
        return {**out, "verdict": None, "why": str(exc)}
    verdict = "met" if high <= allowed else "missed" if low > allowed else "within noise"
    return {**out, "over_share_bounds": [low, high], "verdict": verdict}


@dataclass
class ScenarioResult:
    """One scenario point: what was offered, what came back, its figures and its verdict against the SLO."""

    scenario: str
    offered: dict[str, Any]
    outcomes: list[Outcome]
    wall_s: float
    slo_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def figures(self) -> dict[str, Any]:
        ok = self.ok
        ends = [o.end for o in ok if o.end is not None]  # all of them: an outcome is ok once it has an end
        e2e_values = [e for o in ok if (e := o.e2e_s) is not None]  # likewise
        span = (max(ends) - min(o.scheduled for o in self.outcomes)) if ends else None
        tokens = sum(len(o.token_ids) for o in ok)
        e2e = quantiles(e2e_values)
        fig: dict[str, Any] = {
            "requests": len(self.outcomes), "completed": len(ok), "errors": len(self.errors),
            "span_s": span, "videos_per_s": len(ok) / span if span else None,
            "output_tokens_per_s": tokens / span if span else None,
            "ttft_s": quantiles([o.ttft_s for o in ok if o.ttft_s is not None]),
            "tpot_s": quantiles([o.tpot_s for o in ok if o.tpot_s is not None]),
            "e2e_s": e2e,
        }
        if self.slo_s is not None:
            value, judged_on = slo_value(e2e)
            within = sum(1 for e in e2e_values if e <= self.slo_s)
            fig["slo"] = {"e2e_s": self.slo_s, "judged_on": judged_on, "value_s": value,
                          "met": bool(ok) and not self.errors and value is not None and value <= self.slo_s,
                          "within": within, "goodput_per_s": within / span if span else None,
                          "confidence": slo_confidence(len(self.outcomes) - within, len(self.outcomes))}
        return fig

    @property
    def met(self) -> bool:
        return bool(self.figures().get("slo", {}).get("met"))

    def to_dict(self, *, answers: bool = False) -> dict[str, Any]:
        d = {"scenario": self.scenario, "offered": self.offered, "wall_s": self.wall_s, **self.figures(),
             "error_examples": sorted({f"{o.clip}: {o.error}" for o in self.errors})[:5], **self.extra}
        if answers:
            d["outcomes"] = [o.to_dict() for o in self.outcomes]
        return d


async def _run(url: str, schedule: list[tuple[float, WorkItem]], *, timeout_s: float, tag: str) -> list[Outcome]:
    """Send each item at its due time (seconds after the start); return outcomes in schedule order."""
    async with aiohttp_session(limit=0) as session:
        t0 = time.perf_counter()

        async def one(i: int, at: float, item: WorkItem) -> Outcome:
            delay = at - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)  # the load's arrival schedule (not a wait for an event)
            outcome = Outcome(index=i, clip=item.clip, scheduled=at)
            return await send(session, url, with_uuid(item.body, f"{tag}{i}"), outcome, t0=t0, timeout_s=timeout_s)

        return list(await asyncio.gather(*(one(i, at, it) for i, (at, it) in enumerate(schedule))))


def run_schedule(url: str, schedule: list[tuple[float, WorkItem]], *, timeout_s: float,
                 tag: str) -> tuple[list[Outcome], float]:
    t0 = time.perf_counter()
    outcomes = asyncio.run(_run(url, schedule, timeout_s=timeout_s, tag=tag))
    return outcomes, time.perf_counter() - t0


def _connection_lost(outcomes: list[Outcome]) -> bool:
    """Whether a request failed below HTTP (a refused or dropped connection), not with a status or a timeout."""
    return any(o.error and not o.error.startswith(("HTTP ", "timed out")) for o in outcomes)


def cycle(items: list[WorkItem], n: int) -> list[WorkItem]:
    """``n`` items, going round the clips in order."""
    if not items:
        raise ValueError("no clip could be prepared for the load: nothing to send")
    return [items[i % len(items)] for i in range(n)]


def poisson_times(rate: float, n: int, seed: int) -> list[float]:
    """Arrival times of ``n`` requests of a Poisson process at ``rate``/s, starting at 0 (seeded)."""
    import numpy as np

    if rate <= 0:
        raise ValueError(f"a request rate must be positive, got {rate}")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, n)
    gaps[0] = 0.0
    return [float(t) for t in np.cumsum(gaps)]


class LoadRun:
    """The scenarios of one engine behind one server URL, on one prepared clip set."""

    def __init__(self, url: str, items: list[WorkItem], *, slo_s: float, timeout_s: float = 300.0, seed: int = 0,
                 check_alive=None) -> None:
        self.url, self.items, self.slo_s, self.timeout_s, self.seed = url, items, slo_s, timeout_s, seed
        self.check_alive = check_alive or (lambda where, suspect=False: None)
        self.alone_result: ScenarioResult | None = None
        self.finished: list[ScenarioResult] = []
        """Every point run so far, kept before the server's health is checked (a dying server loses none)."""

    def _point(self, scenario: str, offered: dict[str, Any], schedule: list[tuple[float, WorkItem]],
               slo_s: float | None) -> ScenarioResult:
        outcomes, wall = run_schedule(self.url, schedule, timeout_s=self.timeout_s, tag=scenario)
        result = ScenarioResult(scenario, offered, outcomes, wall, slo_s=slo_s)
        self.finished.append(result)
        self.check_alive(f"during the {scenario} scenario", suspect=_connection_lost(outcomes))
        return result

    def alone(self) -> ScenarioResult:
        """Every clip once, each sent after the previous answer (concurrency 1)."""
        outcomes: list[Outcome] = []
        t0 = time.perf_counter()
        for i, item in enumerate(self.items):
            got, _ = run_schedule(self.url, [(0.0, item)], timeout_s=self.timeout_s, tag="alone")
            got[0].index = i
            outcomes.append(got[0])
        self.alone_result = ScenarioResult("alone", {"concurrency": 1, "requests": len(self.items)}, outcomes,
                                           time.perf_counter() - t0, slo_s=self.slo_s)
        self.check_alive("answering the clips alone", suspect=_connection_lost(outcomes))
        return self.alone_result

    def offline(self, n: int) -> ScenarioResult:
        return self._point("offline", {"requests": n, "submitted": "all at once"},
                           [(0.0, it) for it in cycle(self.items, n)], None)

    def server(self, rate: float, n: int, *, seed: int | None = None) -> ScenarioResult:
        seed = self.seed if seed is None else seed
        times = poisson_times(rate, n, seed)
        return self._point("server", {"rate_per_s": rate, "requests": n, "arrivals": f"Poisson, seed {seed}"},
                           list(zip(times, cycle(self.items, n))), self.slo_s)

    def camera(self, streams: int, period_s: float, clips_per_stream: int) -> ScenarioResult:
        schedule = []
        items = cycle(self.items, streams * clips_per_stream)
        for k in range(streams):
            for j in range(clips_per_stream):
                schedule.append((k * period_s / streams + j * period_s, items[k * clips_per_stream + j]))
        schedule.sort(key=lambda p: p[0])
        return self._point("camera", {"streams": streams, "period_s": period_s, "clips_per_stream": clips_per_stream},
                           schedule, period_s)

    def sweep(self, *, start_rate: float, n: int, resolution: float = 0.1, max_points: int = 8,
              confirm_n: int = 0) -> dict[str, Any]:
        """The largest Poisson rate meeting the SLO (p99 e2e <= slo_s, judged on the max where n < 100).
        ``confirm_n``: then that rate once more with ``confirm_n`` requests of fresh arrivals (the next seed),
        whose ``slo_confidence`` verdict says whether the rate is confirmed at 95% (>= 299 requests can be)."""
        points: list[ScenarioResult] = []
        good, bad = None, None
        rate = start_rate
        while len(points) < max_points:
            res = self.server(rate, n)
            res.scenario = "sweep"
            points.append(res)
            if res.met:
                good = rate
            else:
                bad = rate if bad is None else min(bad, rate)
            if good is not None and bad is not None and (bad - good) / good <= resolution:
                break
            rate = (good + bad) / 2 if good is not None and bad is not None else rate * 2 if bad is None else rate / 2
        confirmation, confirmation_record = None, None
        if confirm_n and good is not None:
            confirmation = self.server(good, confirm_n, seed=self.seed + 1)
            confirmation.scenario = "sweep confirmation"
            confirmation_record = confirmation.to_dict()
        return {"scenario": "sweep", "slo_e2e_s": self.slo_s, "largest_rate_per_s": good,
                "confirmation": confirmation_record,
                "confirmed": (confirmation_record["slo"]["confidence"]["verdict"] == "met"
                              if confirmation_record else None),
                "first_failing_rate_per_s": bad,
                "resolution": resolution, "requests_per_point": n, "converged": good is not None and bad is not None
                and (bad - good) / good <= resolution,
                "note": None if good is not None else
                f"no rate tried met the SLO (lowest tried {min(p.offered['rate_per_s'] for p in points):.3g}/s)",
                "points": [p.to_dict() for p in points],
                "_results": points + ([confirmation] if confirmation else [])}

    def camera_search(self, *, period_s: float, clips_per_stream: int, start_streams: int = 1, max_streams: int = 1024,
                      max_points: int = 10) -> dict[str, Any]:
        """The largest number of streams whose p99 (or max, when too few) end-to-end latency stays within the
        period: doubling from ``start_streams`` until a point fails (halving while the first ones fail),
        then bisection to one stream. With the start the offline rate gives (~24 on an H100), ten points find
        any count up to 4x the start exactly; eight left 83 streams untried between 82 met and 84 missed."""
        points: list[ScenarioResult] = []
        good, bad, k = 0, None, max(1, start_streams)
        while len(points) < max_points and k <= max_streams:
            res = self.camera(k, period_s, clips_per_stream)
            points.append(res)
            if res.met:
                good = max(good, k)
            else:
                bad = k if bad is None else min(bad, k)
            if bad is not None and bad - good <= 1:
                break
            k = k * 2 if bad is None else (good + bad) // 2 if good else max(1, bad // 2)
        return {"scenario": "camera", "period_s": period_s, "clips_per_stream": clips_per_stream,
                "start_streams": max(1, start_streams),
                "largest_streams": good, "first_failing_streams": bad, "max_streams_tried": max_streams,
                "exact": bad is not None and bad - good <= 1,
                "points": [p.to_dict() for p in points], "_results": points}


def candidate_logprobs(outcome: Outcome, candidates: dict[str, int]) -> tuple[dict[str, float], list[str]]:
    """The candidates' log-probs at the first answer position, from the top log-probs; a candidate outside
    them gets the smallest one returned (an upper bound), and is named."""
    first = dict(outcome.top[0]) if outcome.top else {}
    if not first:
        return {}, list(candidates)
    floor = min(first.values())
    out, missing = {}, []
    for label, tid in candidates.items():
        if tid in first:
            out[label] = first[tid]
        else:
            out[label] = floor
            missing.append(label)
    return out, missing


def as_record(outcome: Outcome, item: WorkItem, key: str) -> dict[str, Any]:
    """A drift record (the shape ``core.metrics.drift`` pairs) of one answer."""
    lps, missing = candidate_logprobs(outcome, item.candidates)
    ok = outcome.ok and bool(lps)
    rec: dict[str, Any] = {"video": key, "video_path": item.clip, "truth": item.truth,
                           "status": "ok" if ok else "error",
                           "token_ids": outcome.token_ids, "candidate_logprobs": lps,
                           "predicted": max(lps, key=lambda c: lps[c]) if lps else None}
    if missing:
        rec["candidates_outside_top"] = missing
    return rec


def batch_drift(alone: ScenarioResult, loaded: list[ScenarioResult], items: list[WorkItem], *,
                confidence: float = 0.95, inconclusive: str = "pass") -> dict[str, Any]:
    """Every answer given under load against the same clip answered alone: label flips, KL over the
    candidates and token changes, judged with the drift statistics and the 8-bit tier's limits (batching
    changes kernels and reduction order, so exact equality is not the bar; a real regression is)."""
    from core.metrics.judge import judge_batch_drift

    by_clip = {it.clip: it for it in items}
    ref_by_clip = {o.clip: o for o in alone.outcomes}
    refs, cands = [], []
    for point, res in enumerate(loaded):
        for o in res.outcomes:
            ref = ref_by_clip.get(o.clip)
            if ref is None:
                continue
            key = f"{res.scenario}{point}:{o.clip}#{o.index}"
            refs.append(as_record(ref, by_clip[o.clip], key))
            cands.append(as_record(o, by_clip[o.clip], key))
    if not refs:
        return {"status": "none", "n": 0, "note": "no answer under load to compare"}
    return judge_batch_drift(refs, cands, confidence=confidence, inconclusive=inconclusive)


def capacity(facts: dict[str, Any], alone: ScenarioResult, max_new_tokens: int) -> dict[str, Any]:
    """Concurrent videos of this clip shape the KV cache holds (vLLM's own token count over the tokens one
    request needs: its prompt and all its new tokens)."""
    prompts = [o.prompt_tokens for o in alone.ok if o.prompt_tokens]
    tokens = facts.get("kv_cache_tokens")
    per = max(prompts) + max_new_tokens if prompts else None
    return {"kv_cache_tokens": tokens, "tokens_per_video": per,
            "concurrent_videos": (tokens // per) if tokens and per else None,
            "weights_gib": facts.get("weights_gib"), "activation_peak_gib": facts.get("activation_peak_gib"),
            "kv_cache_gib": facts.get("kv_cache_gib"), "reservation_gib": facts.get("reservation_gib"),
            "labels": {"weights_gib": "as the engine loaded them (its 'Model loading took' figure)",
                       "activation_peak_gib": "profiled forward-pass peak (vLLM's memory profile)",
                       "kv_cache_gib": "memory given to the KV cache",
                       "reservation_gib": "gpu_memory_utilization x device memory: reserved up front, not a peak"}}
