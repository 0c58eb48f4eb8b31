"""Golden answers as readable JSON under ``golden/``, compared with a tolerance.

One file per (model, backend, format, task, device class): per video the predicted label, the
parsed free-form answer and the candidate log-probs rounded to 3 decimals. Labels must match
exactly; log-probs may move by at most the tolerance (default 0.05 nats), so goldens are stable
run to run yet catch real drift long before a label flips.

Each golden also carries a preprocessing fingerprint (never compared for matching): per video the
sampled frame indices, the frame size and hashes of the decoded pixels and of the processor's
outputs; per file the decoder (PyAV, FFmpeg libraries) and processor versions. A failing golden
first says whether its inputs changed or only the model's outputs did. Goldens recorded before
the fingerprint existed still match as before; their failures say the inputs cannot be checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from core.base import paths
from core.base.records import CellRecord
from core.plan.device import cpu_model

DECIMALS = 3


def golden_payload(engine_id: str, meta: dict[str, Any], records: list[CellRecord]) -> dict[str, Any]:
    """The snapshot content of one engine's records (videos sorted by id); a clip that failed is
    part of the golden as ``error:<type>``."""
    videos, preprocessing = {}, None
    for r in sorted(records, key=lambda r: r["video"]):
        ok = r.get("status", "ok") == "ok"
        videos[r["video"]] = {
            "label": r["predicted"] if ok else f"error:{r.get('error_type')}",
            "parsed": r.get("parsed") if ok else None,
            "logprobs": {k: round(v, DECIMALS) for k, v in (r.get("candidate_logprobs") or {}).items()} if ok else {},
        }
        if ok and r.get("inputs"):
            videos[r["video"]]["inputs"] = input_fingerprint(r)
            preprocessing = preprocessing or {k: r["inputs"][k] for k in ("decoder", "processor") if k in r["inputs"]}
    payload = {"engine": engine_id, **meta, "videos": videos}
    if preprocessing:
        payload["preprocessing"] = preprocessing
    return payload


def unanswered(records: list[CellRecord]) -> str | None:
    """Why these records can neither be judged against a golden nor recorded as one: every clip failed (the
    engine does not answer, e.g. a kernel missing for this dtype), else None. One failed clip among answered
    ones is part of the golden (``golden_payload``); a golden of nothing but errors would record the crash."""
    failed = [r for r in records if r.get("status", "ok") != "ok"]
    if not records or len(failed) < len(records):
        return None
    first = failed[0]
    return (f"every clip failed ({len(failed)} of {len(records)}; {first.get('video')}: {first.get('error_type')}: "
            f"{first.get('error')}): the engine gave no answer, so no golden is compared or written")


def input_fingerprint(rec: CellRecord) -> dict[str, Any]:
    """What a golden keeps of a record's inputs: frames, size and hashes."""
    frames, inputs = rec.get("frames") or {}, rec.get("inputs") or {}
    return {"frames": frames.get("indices"), "size": [frames.get("height"), frames.get("width")],
            "pixels": inputs.get("pixels_sha256"), "processor": inputs.get("processor_sha256")}


def input_changes(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Whether a golden's inputs changed since it was recorded, in words (first lines of a failure)."""
    ev, av = expected.get("videos", {}), actual.get("videos", {})
    common = sorted(v for v in set(ev) & set(av) if "inputs" in av[v])
    if not any("inputs" in ev[v] for v in common) and "preprocessing" not in expected:
        return ["inputs: this golden has no preprocessing fingerprint (recorded before it existed), so whether "
                "the frames or the processor changed is unknown; re-recording it adds one"]
    old, new = expected.get("preprocessing") or {}, actual.get("preprocessing") or {}
    lines = []
    eq, aq = expected.get("prequantized") or {}, actual.get("prequantized") or {}
    if (eq or aq) and eq.get("fingerprint") != aq.get("fingerprint"):
        lines.append(f"inputs: the checkpoint's quantization config changed (fingerprint {eq.get('fingerprint')} -> "
                     f"{aq.get('fingerprint')}): it was quantized again")
    for part, what in (("decoder", "decoder (PyAV/FFmpeg)"), ("processor", "processor")):
        a, b = old.get(part) or {}, new.get(part) or {}
        moved = [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if moved:
            lines.append(f"inputs: {what} changed: {', '.join(moved)}")
    judged = [v for v in common if "inputs" in ev[v]]
    for key, what in (("frames", "sampled frame indices"), ("size", "frame size"), ("pixels", "decoded pixels"),
                      ("processor", "processor outputs")):
        differ = [v for v in judged if ev[v]["inputs"].get(key) != av[v]["inputs"].get(key)]
        if differ:
            lines.append(f"inputs: {what} differ for {len(differ)}/{len(judged)} videos "
                         f"({', '.join(differ[:4])}{'...' if len(differ) > 4 else ''})")
    if not lines:
        return [f"inputs: unchanged (same frames, sizes, decoded pixels and processor outputs on all {len(judged)} "
                "videos, same decoder and processor): only the model's outputs moved"]
    return ["inputs CHANGED since this golden was recorded; the outputs may have moved because of them:", *lines]


def engine_payload(plan, task: str, records: list[CellRecord]) -> dict[str, Any]:
    """``golden_payload`` of an engine plan on ``task``, with what identifies it and the library versions."""
    e = plan.engine
    versions = recorded_with(e.backend, plan.spec.tool_for(plan.fmt))
    if plan.device_class.startswith("cpu"):
        versions["cpu"] = cpu_model()  # CPU numerics differ by instruction set (bf16 dot products)
    meta = {"model": e.model, "backend": e.backend, "format": e.format, "task": task,
            "device_class": plan.device_class, "recorded_with": versions}
    if plan.spec.is_prequantized:
        # A checkpoint quantized elsewhere: the format it was detected as (in the id too), what said so, a
        # fingerprint of its quantization config, and the model its drift is judged against.
        meta["prequantized"] = {**plan.spec.prequantized.to_dict(),
                                "reference_model": plan.reference.model if plan.reference else None}
    return golden_payload(plan.golden_id(task), meta, records)


def recorded_with(backend: str, tool: str) -> dict[str, str]:
    """Versions stored with a golden: the backend's and the quantizer's libraries. When a golden
    stops matching, the failure says whether they changed since it was recorded. Not compared: a
    library upgrade that keeps the numbers is fine."""
    from core.plan.capability import version
    from core.plan.catalog import backend_info, quantizer_info, resolve

    q = quantizer_info(tool)
    names = [*backend_info(backend).versioned, *q.versioned]
    versions = {n: v for n in dict.fromkeys(names) if (v := version(n))}
    if q.environment:  # a tool in its own environment: its versions there
        versions.update(resolve(f"{q.environment}:recorded_versions")())
    return versions


def recorded_device_classes(golden_dir: Path | None = None) -> set[str]:
    """Device classes (cpu, sm90 ...) that have at least one golden file."""
    d = golden_dir or GoldenJSON.golden_dir
    return {parts[-2] for f in d.glob("*.json") if len(parts := f.stem.split("-")) >= 3}


def version_changes(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Libraries that changed between the golden's recording and this run ([] when unknown)."""
    old, new = expected.get("recorded_with") or {}, actual.get("recorded_with") or {}
    return [f"{n} {old[n]} -> {new.get(n)}" for n in sorted(old) if old[n] != new.get(n)]


def _margin(logprobs: dict[str, float]) -> float:
    top = sorted(logprobs.values(), reverse=True)
    return top[0] - top[1] if len(top) > 1 else float("inf")


def _named(videos: set[str], limit: int = 20) -> str:
    names = sorted(videos)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def coverage(expected: dict[str, Any], actual: dict[str, Any], *, max_videos: int = 0) -> tuple[list[str], list[str]]:
    """(problems, notes) about which videos the two sides hold. A golden judges the clips it was
    recorded on, all of them: a golden video this run does not have fails (a run that lost clips
    must not pass on the rest), and so does a video of this run the golden lacks (its answers would go
    unjudged, and a clip set that grows without a new golden is drift of coverage too). The one
    allowed difference: ``--max-videos N`` asks for the first N clips only; when the run got all N,
    the golden's other videos were not asked for (a note, not a failure)."""
    ev, av = set(expected.get("videos", {})), set(actual.get("videos", {}))
    problems, notes = [], []
    extra, missing = av - ev, ev - av
    if extra:
        problems.append(f"{len(extra)} videos of this run have no golden ({_named(extra)}): the golden holds "
                        f"{len(ev)} videos, this run {len(av)}, and the new ones would go unjudged. Record them with "
                        "--snapshot-update, or run only the golden's clips")
    if missing:
        asked_fewer = bool(max_videos) and len(av) == max_videos and not extra
        if asked_fewer:
            notes.append(f"--max-videos {max_videos}: {len(missing)} golden videos were not asked for this time")
        else:
            problems.append(f"{len(missing)} golden videos are missing from this run ({_named(missing)}): a run that "
                            "loses clips is not judged on the clips it kept. Find where they went (a moved or "
                            "unreadable file, another --videos set); if the set shrank on purpose, re-record with "
                            "--snapshot-update")
    return problems, notes


def compare(expected: dict[str, Any], actual: dict[str, Any], *, tolerance: float, max_videos: int = 0) -> list[str]:
    """Human-readable differences between two golden payloads ([] when they match).

    Both sides must hold the same videos (``coverage``: only a ``--max-videos`` run may check the
    first clips of a larger golden). A label change between candidates tied within ``tolerance`` on
    both sides is a tie, not drift (GPU kernels may break such ties either way).
    """
    problems = []
    for key in ("model", "backend", "format", "task", "device_class"):
        if expected.get(key) != actual.get(key):
            problems.append(f"{key}: golden {expected.get(key)!r}, now {actual.get(key)!r}")
    ev, av = expected.get("videos", {}), actual.get("videos", {})
    common = sorted(set(ev) & set(av))
    if not common:
        problems.append(f"no video in common with the golden (golden has {len(ev)}, this run {len(av)}); "
                        "run --snapshot-update to record this set")
    else:
        problems += coverage(expected, actual, max_videos=max_videos)[0]
    for vid in common:
        e, a = ev[vid], av[vid]
        tie = _margin(e["logprobs"]) <= tolerance and _margin(a["logprobs"]) <= tolerance if e["logprobs"] else False
        if e["label"] != a["label"] and not tie:
            problems.append(f"{vid}: label {e['label']} -> {a['label']}  (log-probs {e['logprobs']} -> "
                            f"{a['logprobs']})")
        if e.get("parsed") != a.get("parsed"):
            problems.append(f"{vid}: parsed answer {e.get('parsed')} -> {a.get('parsed')}")
        for cand in sorted(set(e["logprobs"]) | set(a["logprobs"])):
            x, y = e["logprobs"].get(cand), a["logprobs"].get(cand)
            if x is None or y is None or abs(x - y) > tolerance:
                problems.append(f"{vid}: log p({cand}) {x} -> {y} (tolerance {tolerance})")
    return problems


def unjudged(expected: dict[str, Any], actual: dict[str, Any], *, max_videos: int = 0) -> list[str]:
    """Golden videos a ``--max-videos`` run did not ask for (reported, not failed; every other
    difference in the video sets fails ``compare``)."""
    return coverage(expected, actual, max_videos=max_videos)[1]


class GoldenJSON(SingleFileSnapshotExtension):
    """A syrupy extension: ``golden/<engine>-<task>.json``, tolerance-aware comparison."""

    _write_mode = WriteMode.TEXT
    file_extension = "json"
    tolerance = 0.05
    max_videos = 0
    """The run's ``--max-videos`` (0: all): such a run checks the first clips of a larger golden."""
    golden_dir: Path = paths.GOLDEN_DIR

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(cls.golden_dir)

    @classmethod
    def discovery_dirname(cls, *, test_location) -> str:
        return str(cls.golden_dir)

    @classmethod
    def get_file_basename(cls, *, test_location, index) -> str:
        name = test_location.snapshot_name
        # test_golden[tiny-hf-bf16-cpu-anomaly] -> tiny-hf-bf16-cpu-anomaly
        return name[name.index("[") + 1: name.rindex("]")] if "[" in name else name

    def serialize(self, data, **kwargs) -> str:
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def matches(self, *, serialized_data, snapshot_data) -> bool:
        try:
            expected, actual = json.loads(snapshot_data), json.loads(serialized_data)
        except (TypeError, ValueError):
            return False
        return not compare(expected, actual, tolerance=self.tolerance, max_videos=self.max_videos)

    def diff_lines(self, serialized_data, snapshot_data):
        """Why a golden failed, in words: each video whose label or log-probs moved, and which
        libraries changed since the golden was recorded (syrupy prints these lines)."""
        try:
            actual = json.loads(serialized_data)
        except (TypeError, ValueError):
            yield from super().diff_lines(serialized_data, snapshot_data)
            return
        name = actual.get("engine", "?")
        try:
            expected = json.loads(snapshot_data) if snapshot_data else None
        except (TypeError, ValueError):
            expected = None
        if expected is None:
            yield f"no golden for {name} yet: record it with `pytest bench --snapshot-update -k '{name}'`"
            return
        yield f"golden {name}.json does not match this run:"
        for line in input_changes(expected, actual):
            yield f"  {line}"
        for problem in compare(expected, actual, tolerance=self.tolerance, max_videos=self.max_videos):
            yield f"  {problem}"
        changed = version_changes(expected, actual)
        if changed:
            yield ("libraries changed since this golden was recorded: " + ", ".join(changed)
                   + ". A library upgrade can move answers by itself (transformers 5.18 changed Qwen2.5-VL's "
                   "video positions at fps > 2): check the change, then re-record with --snapshot-update.")


def golden_extension(tolerance: float, max_videos: int = 0) -> type[GoldenJSON]:
    """A GoldenJSON subclass bound to ``tolerance`` and the run's ``--max-videos`` (syrupy
    instantiates extension classes)."""
    return type("GoldenJSONTol", (GoldenJSON,), {"tolerance": tolerance, "max_videos": max_videos})
