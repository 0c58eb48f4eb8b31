"""Drift of a quantized format against a reference, from cell records: label flips, KL divergence
over the candidate labels, top-2 margins and accuracy, each with the statistics needed to tell a
real change from the noise of a small video set (in the spirit of llama.cpp's KL-divergence report),
judged by the per-format limits in ``core.metrics.verdict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.metrics.stats import (
    PairedTest,
    clustered_mcnemar,
    mcnemar_exact,
    mean_and_se,
    min_detectable_drop,
    percentile,
    wilson_interval,
)
from core.metrics.vocab import VocabDrift, compare_clips

KL_FLOOR = 1e-12
"""Smallest probability used for the candidate side of KL, so a zero never gives inf."""


def candidate_distribution(logprobs: Mapping[str, float]) -> dict[str, float]:
    """Softmax restricted to the candidate labels: p(label | answer is one of the candidates)."""
    if not logprobs:
        raise ValueError("no candidate log-probs to normalize; the record needs 'candidate_logprobs'")
    if any(math.isnan(v) for v in logprobs.values()):
        raise ValueError(f"NaN among candidate log-probs {dict(logprobs)}; the run's numerics are broken")
    top = max(logprobs.values())
    if top == -math.inf:
        raise ValueError(f"every candidate has log-prob -inf: {dict(logprobs)}")
    weights = {k: math.exp(v - top) for k, v in logprobs.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def kl_divergence(p_ref: Mapping[str, float], p_test: Mapping[str, float], *,
                  floor: float = KL_FLOOR) -> float:
    """KL(p_ref || p_test) in nats over the same labels; ``p_test`` is floored at ``floor``."""
    if set(p_ref) != set(p_test):
        raise ValueError(f"KL needs the same candidate labels on both sides, got {sorted(p_ref)} "
                         f"and {sorted(p_test)}; compare records of the same task")
    kl = sum(p * math.log(p / max(p_test[k], floor)) for k, p in p_ref.items() if p > 0.0)
    return max(0.0, kl)  # sums of floats a few ulps off 1 can give -1e-17 for equal distributions


def ranked(logprobs: Mapping[str, float]) -> list[tuple[str, float]]:
    """Labels by descending log-prob, ties broken by label so the order never depends on dicts."""
    return sorted(logprobs.items(), key=lambda kv: (-kv[1], kv[0]))


def margin(logprobs: Mapping[str, float]) -> float:
    """Top-1 minus top-2 log-prob (the same in raw and candidate-normalized log-probs)."""
    if len(logprobs) < 2:
        raise ValueError(f"a margin needs at least two candidates, got {dict(logprobs)}")
    (_, a), (_, b) = ranked(logprobs)[:2]
    return a - b


@dataclass(frozen=True, kw_only=True)
class VideoDrift:
    """One paired video: both sides' labels and log-probs, and what changed."""

    video: str
    clip: str
    """The video file: several questions (videos) may share one clip, and their answers correlate."""
    truth: str | None
    reference_label: str
    candidate_label: str
    reference_logprobs: dict[str, float]
    candidate_logprobs: dict[str, float]
    kl: float
    margin_change: float
    """Candidate minus reference top-2 margin (negative: the candidate is less sure)."""
    delta_p: float
    """p_ref(reference label) - p_cand(reference label), both normalized over the candidates."""
    same_top_token: bool | None
    """First generated token id equal on both sides; None when a side has no ``token_ids``."""

    @property
    def flipped(self) -> bool:
        """The candidate's label differs from the reference's."""
        return self.reference_label != self.candidate_label

    @property
    def direction(self) -> str:
        """``"reference->candidate"``, e.g. ``"Anomaly->Normal"``."""
        return f"{self.reference_label}->{self.candidate_label}"


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """Accuracy of both sides on the paired videos with ground truth, and McNemar's exact test."""

    n: int
    reference_correct: int
    candidate_correct: int
    reference_interval: tuple[float, float]
    candidate_interval: tuple[float, float]
    b: int
    """Reference right, candidate wrong."""
    c: int
    """Reference wrong, candidate right."""
    mcnemar_p: float
    """Exact McNemar p-value over the paired items (as if each were its own clip)."""
    test: PairedTest | None = None
    """The paired gate's test: exact McNemar, or clustered by clip when clips hold several questions."""

    @property
    def drop(self) -> float:
        """Reference accuracy minus candidate accuracy (positive: the candidate is worse)."""
        return (self.reference_correct - self.candidate_correct) / self.n


@dataclass(frozen=True, kw_only=True)
class DriftReport:
    """Everything ``compare_formats`` measured; rates and stats are None when no video paired."""

    reference_format: str
    candidate_format: str
    n: int
    videos: tuple[VideoDrift, ...]
    unpaired: tuple[str, ...]
    """Videos present on one side only."""
    errored: tuple[str, ...]
    """Videos present on both sides but not status 'ok' on both."""
    agreement: int
    agreement_interval: tuple[float, float]
    kl_mean: float | None
    kl_se: float | None
    kl_max: float | None
    kl_p50: float | None
    kl_p90: float | None
    kl_p99: float | None
    margin_change_mean: float | None
    abs_margin_change_mean: float | None
    abs_margin_change_max: float | None
    same_top_token: int
    same_top_token_n: int
    delta_p_mean: float | None
    accuracy: Accuracy | None
    min_detectable_drop: float
    vocab: VocabDrift | None = None
    """Full-vocabulary drift at the answer position and the first generated positions."""
    vision: dict[str, dict[str, Any]] | None = None
    """Per video: the vision tower's embeddings against the reference's, per frame group (HF)."""

    def vision_summary(self) -> dict[str, Any] | None:
        """The worst clip by cosine and by relative error over the compared clips (None: none)."""
        vision = self.vision
        if not vision:
            return None
        worst_cos = min(vision, key=lambda v: (vision[v]["cos_min"], v))
        worst_err = max(vision, key=lambda v: (vision[v]["rel_err_max"], v))
        return {"clips": len(vision), "cos_min": vision[worst_cos]["cos_min"], "cos_min_clip": worst_cos,
                "rel_err_max": vision[worst_err]["rel_err_max"], "rel_err_max_clip": worst_err,
                "rel_err_mean": sum(v["rel_err_mean"] for v in vision.values()) / len(vision)}

    @property
    def flips(self) -> list[VideoDrift]:
        """The paired videos whose label changed."""
        return [v for v in self.videos if v.flipped]

    @property
    def agreement_rate(self) -> float | None:
        """Top-1 label agreement over paired videos; None when none paired."""
        return self.agreement / self.n if self.n else None

    @property
    def flip_rate(self) -> float | None:
        """One minus the agreement rate; None when none paired."""
        return 1.0 - self.agreement / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite floats become None, since JSON has no inf)."""
        d = asdict(self)
        d.update(agreement_rate=self.agreement_rate, flip_rate=self.flip_rate,
                 flips=[{"video": v.video, "reference": v.reference_label, "candidate": v.candidate_label,
                         "direction": v.direction} for v in self.flips])
        if self.accuracy is not None:
            d["accuracy"]["drop"] = self.accuracy.drop
        d["vocab"] = self.vocab.to_dict() if self.vocab is not None else None
        d["vision_summary"] = self.vision_summary()
        return _json_safe(d)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def index_by_video(records: Sequence[Mapping[str, Any]], *, side: str) -> dict[str, Mapping[str, Any]]:
    """Records keyed by ``video``; a video twice on one side is an error (pairing would be a guess)."""
    out: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        video = rec.get("video")
        if video is None:
            raise ValueError(f"a {side} record has no 'video' key (keys: {sorted(rec)}); pass cell records")
        if video in out:
            raise ValueError(f"video '{video}' appears twice among the {side} records; "
                             "compare one task and one run per side")
        out[video] = rec
    return out


def _label(rec: Mapping[str, Any], video: str) -> tuple[str, dict[str, float]]:
    lps = rec.get("candidate_logprobs")
    if not lps:
        raise ValueError(f"video '{video}' has no candidate_logprobs; drift needs candidate scoring")
    return rec.get("predicted") or ranked(lps)[0][0], dict(lps)


def _first_token(rec: Mapping[str, Any]) -> int | None:
    ids = rec.get("token_ids")
    return ids[0] if ids else None


def _video_drift(video: str, ref: Mapping[str, Any], cand: Mapping[str, Any]) -> VideoDrift:
    ref_label, ref_lp = _label(ref, video)
    cand_label, cand_lp = _label(cand, video)
    if ref.get("truth") != cand.get("truth"):
        raise ValueError(f"video '{video}': ground truth differs between sides ({ref.get('truth')!r} vs "
                         f"{cand.get('truth')!r}); both runs must use the same dataset")
    p_ref, p_cand = candidate_distribution(ref_lp), candidate_distribution(cand_lp)
    try:
        kl = kl_divergence(p_ref, p_cand)
    except ValueError as exc:
        raise ValueError(f"video '{video}': {exc}") from None
    tok_ref, tok_cand = _first_token(ref), _first_token(cand)
    return VideoDrift(
        video=video, clip=str(ref.get("video_path") or video), truth=ref.get("truth"), reference_label=ref_label,
        candidate_label=cand_label,
        reference_logprobs=ref_lp, candidate_logprobs=cand_lp, kl=kl,
        margin_change=margin(cand_lp) - margin(ref_lp),
        delta_p=p_ref[ref_label] - p_cand.get(ref_label, 0.0),
        same_top_token=None if tok_ref is None or tok_cand is None else tok_ref == tok_cand)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _accuracy(videos: Sequence[VideoDrift]) -> Accuracy | None:
    judged = [v for v in videos if v.truth is not None]
    if not judged:
        return None
    ref_ok = [v.reference_label == v.truth for v in judged]
    cand_ok = [v.candidate_label == v.truth for v in judged]
    b = sum(r and not c for r, c in zip(ref_ok, cand_ok))
    c = sum(c and not r for r, c in zip(ref_ok, cand_ok))
    n, kr, kc = len(judged), sum(ref_ok), sum(cand_ok)
    by_clip: dict[str, tuple[int, int]] = {}
    for v, r, k in zip(judged, ref_ok, cand_ok):
        bk, ck = by_clip.get(v.clip, (0, 0))
        by_clip[v.clip] = (bk + (r and not k), ck + (k and not r))
    test = clustered_mcnemar(by_clip, items=n, clusters=len(by_clip))
    return Accuracy(n=n, reference_correct=kr, candidate_correct=kc, reference_interval=wilson_interval(kr, n),
                    candidate_interval=wilson_interval(kc, n), b=b, c=c, mcnemar_p=mcnemar_exact(b, c), test=test)


def compare_formats(reference: Sequence[Mapping[str, Any]], candidate: Sequence[Mapping[str, Any]], *,
                    reference_format: str, candidate_format: str) -> DriftReport:
    """Pair records by video (status 'ok' on both sides) and measure the candidate's drift."""
    refs, cands = index_by_video(reference, side="reference"), index_by_video(candidate, side="candidate")
    both = sorted(set(refs) & set(cands))
    ok = [v for v in both if refs[v].get("status") == "ok" and cands[v].get("status") == "ok"]
    videos = tuple(_video_drift(v, refs[v], cands[v]) for v in ok)
    kls = [v.kl for v in videos]
    changes = [v.margin_change for v in videos]
    tokens = [v.same_top_token for v in videos if v.same_top_token is not None]
    agree = sum(not v.flipped for v in videos)
    return DriftReport(
        reference_format=reference_format, candidate_format=candidate_format, n=len(videos), videos=videos,
        unpaired=tuple(sorted(set(refs) ^ set(cands))), errored=tuple(v for v in both if v not in ok),
        agreement=agree, agreement_interval=wilson_interval(agree, len(videos)),
        kl_mean=_mean(kls), kl_se=mean_and_se(kls)[1] if kls else None, kl_max=max(kls, default=None),
        kl_p50=percentile(kls, 50) if kls else None, kl_p90=percentile(kls, 90) if kls else None,
        kl_p99=percentile(kls, 99) if kls else None,
        margin_change_mean=_mean(changes), abs_margin_change_mean=_mean([abs(x) for x in changes]),
        abs_margin_change_max=max((abs(x) for x in changes), default=None),
        same_top_token=sum(tokens), same_top_token_n=len(tokens),
        delta_p_mean=_mean([v.delta_p for v in videos]), accuracy=_accuracy(videos),
        min_detectable_drop=min_detectable_drop(len(videos)),
        vocab=compare_clips({v: (refs[v], cands[v]) for v in ok}),
        vision={v: dict(cands[v]["vision"]) for v in ok if cands[v].get("vision")} or None)


def run_to_run(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]], *,
               tolerance: float = 0.0) -> dict[str, Any]:
    """Noise check: do two runs of one format agree exactly (labels, token ids, log-probs)?

    A video differs when its predicted or parsed label, its ``token_ids`` (when both have them) or
    any candidate log-prob (by more than ``tolerance``) differs. ``identical`` also needs every
    video paired with status 'ok' on both runs.
    """
    a, b = index_by_video(first, side="first"), index_by_video(second, side="second")
    both = sorted(set(a) & set(b))
    ok = [v for v in both if a[v].get("status") == "ok" and b[v].get("status") == "ok"]
    labels, tokens, logprobs, max_diff = [], [], [], 0.0
    for v in ok:
        if (a[v].get("predicted"), a[v].get("parsed")) != (b[v].get("predicted"), b[v].get("parsed")):
            labels.append(v)
        ta, tb = a[v].get("token_ids"), b[v].get("token_ids")
        if ta is not None and tb is not None and list(ta) != list(tb):
            tokens.append(v)
        la, lb = a[v].get("candidate_logprobs") or {}, b[v].get("candidate_logprobs") or {}
        diff = max((_abs_diff(la.get(k), lb.get(k)) for k in set(la) | set(lb)), default=0.0)
        max_diff = max(max_diff, diff)
        if diff > tolerance:
            logprobs.append(v)
    differing = sorted(set(labels) | set(tokens) | set(logprobs))
    unpaired = sorted(set(a) ^ set(b))
    errored = [v for v in both if v not in ok]
    return {"identical": not (differing or unpaired or errored), "n": len(ok),
            "max_abs_logprob_diff": max_diff if math.isfinite(max_diff) else None,
            "label_differences": labels, "token_id_differences": tokens, "logprob_differences": logprobs,
            "differing_videos": differing, "unpaired": unpaired, "errored": errored}


class RunToRunNoise(UserWarning):
    """GPU run-to-run differences of the reference that stay within what the suite tolerates
    (shown in pytest's warnings summary: reported, never hidden)."""


def judge_run_to_run(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]], *,
                     exact: bool, tolerance: float) -> tuple[dict[str, Any], list[str], list[str]]:
    """The reference's run-to-run check: (the exact comparison, what fails, what is only reported).

    What is tolerated is decided before the runs, by the device: on CPU (``exact``) two runs must
    agree exactly. On a GPU, kernels are not bitwise deterministic, so candidate log-prob
    differences up to ``tolerance`` (the reference format's golden tolerance: what the goldens
    already accept run to run) and generated tokens that differ while the label stays are reported,
    not failed. A label that flips between two runs, a log-prob difference beyond ``tolerance``,
    or a video that failed or is missing on one run fails: drift verdicts and goldens against a
    reference that disagrees with itself that much would mean nothing."""
    noise = run_to_run(first, second)
    if exact:
        return noise, ([] if noise["identical"] else [f"not deterministic on CPU: {noise}"]), []
    loose = run_to_run(first, second, tolerance=tolerance)
    failures, notes = [], []
    if loose["label_differences"]:
        failures.append(f"labels flip between two runs on {loose['label_differences']}: the reference's own "
                        "answer there is a coin toss, so a candidate's flips on those videos mean nothing")
    if loose["logprob_differences"]:
        failures.append(f"candidate log-probs differ by up to {noise['max_abs_logprob_diff']} nats, more than the "
                        f"tolerated {tolerance} (the golden tolerance), on {loose['logprob_differences']}")
    if loose["errored"] or loose["unpaired"]:
        failures.append(f"videos failed on one run ({loose['errored']}) or are missing from one "
                        f"({loose['unpaired']}): the run-to-run check could not compare them")
    flipped = set(loose["label_differences"])
    if tokens := [v for v in noise["token_id_differences"] if v not in flipped]:
        notes.append(f"generated tokens differ between two runs on {tokens} (labels equal)")
    if within := [v for v in noise["logprob_differences"] if v not in set(loose["logprob_differences"])]:
        notes.append(f"candidate log-probs differ between two runs on {within}, by at most "
                     f"{noise['max_abs_logprob_diff']} nats (tolerated: {tolerance})")
    return noise, failures, notes


def _abs_diff(x: float | None, y: float | None) -> float:
    if x is None or y is None:
        return math.inf  # a label scored on one run only is as different as it gets
    return 0.0 if x == y else abs(x - y)  # equal -inf values must count as equal, not NaN


def usable_inputs(*sides: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The sides without the videos that failed to decode on every side: a broken input, not drift."""
    broken = set.intersection(*({r["video"] for r in s if r.get("error_type") == "VideoError"} for s in sides))
    return [[r for r in s if r["video"] not in broken] for s in sides]
