"""The records a run writes, as types: what a cell, an engine load, a drift verdict and a session
leave in the results file (one JSON object per line) and in pytest-benchmark's ``extra_info``.

A cell record says what kind of measurement it is:

* ``timed``: the cell's timed rounds (warm-up excluded); its latency is what reports show;
* ``scoring``: an untimed generation made to score answers (goldens, drift, the reference's
  run-to-run check); its answers count, its timings are never reported as latency.

Readers never pick "the last record of a cell id" blindly: ``core.base.results.Results`` keeps timed
and scoring records apart, so a scoring re-run cannot replace a timed figure; an error record (of
either kind) is the cell's newest outcome and replaces every earlier record of it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

RecordKind = Literal["timed", "scoring"]
Status = Literal["ok", "error"]
RECORD_KINDS: tuple[RecordKind, ...] = ("timed", "scoring")


class Timings(TypedDict, total=False):
    """Seconds of one answer; GPU marks are taken after a device synchronize."""

    video_decode_s: float
    processor_s: float
    prefill_s: float
    """Time to first token."""
    decode_s: float
    decode_per_token_s: float | None
    generate_s: float
    total_s: float
    """processor + generate: what a timed round measures."""
    end_to_end_s: float
    """video decode + total."""
    video_wait_s: float
    """How long the engine waited for this clip's frames (``vqbench run``'s decode-ahead; absent elsewhere)."""


class Tokens(TypedDict):
    prompt: int
    video: int
    new: int


class LoadDetails(TypedDict, total=False):
    """An engine's load: where its time went, the weights as loaded, memory, what kernels ran."""

    model: str
    backend: str
    format: str
    device_class: str
    device_name: str
    observed_mode: dict[str, Any]
    """What ran against what the capability verdict declared (``core.plan.kernels``)."""
    load_s: float
    quantize_s: float | None
    quantize_cached: bool | None
    weight_bytes: int | None
    weights_source: str | None
    weight_bytes_estimated: bool
    load_count: int
    memory: dict[str, Any]
    wall_s: float
    details: dict[str, Any]
    quantization: dict[str, Any] | None
    versions: dict[str, str]


class CellIdentity(TypedDict):
    """The fields that name a cell in a record (``core.cells.runner.cell_identity``)."""

    cell: str
    engine: str
    model: str
    backend: str
    format: str
    device: str
    gpu_class: str | None
    """The device class the cell was planned for (cpu, cpu_fp32, sm90 ...); None when planned with no GPU."""
    task: str
    video: str
    video_path: str


class CellRecord(CellIdentity):
    """One cell (model x backend x format x task x video) answered once or timed over rounds."""

    type: Literal["cell"]
    kind: RecordKind
    status: Status
    time: float
    gpu_name: NotRequired[str]
    truth: NotRequired[str | None]
    predicted: NotRequired[str]
    parsed: NotRequired[str | None]
    correct: NotRequired[bool | None]
    answer: NotRequired[str]
    token_ids: NotRequired[list[int]]
    candidate_logprobs: NotRequired[dict[str, float]]
    top_logprobs: NotRequired[list[list[tuple[int, float]]]]
    batch: NotRequired[dict[str, Any]]
    """Answered in a batch (``vqbench run --batch``): its size, the answer's index in it and the batch's
    wall time. Such a record is a ``scoring`` record: a batched answer has no latency of its own."""
    reference_model: NotRequired[str]
    """A pre-quantized checkpoint's ``--reference-model``: the model it was quantized from, whose
    reference-format engine its drift is judged against and beside which reports show it."""
    timings: NotRequired[Timings]
    rounds_s: NotRequired[list[float] | None]
    """Every timed round (timed records only)."""
    tokens: NotRequired[Tokens]
    load: NotRequired[LoadDetails]
    memory: NotRequired[dict[str, Any]]
    frames: NotRequired[dict[str, Any]]
    mode: NotRequired[str]
    """native, export, emulated or fake-quant: whether the latency is the format's own kernels."""
    mode_note: NotRequired[str]
    mode_observed: NotRequired[bool]
    """Whether the engine's observed kernels confirm ``mode`` (``core.plan.kernels.record_mode``): a declared
    "native" whose engine ran another kernel is recorded as "emulated", its note naming the kernel."""
    roofline: NotRequired[dict[str, Any] | None]
    extra: NotRequired[dict[str, Any]]
    vocab: NotRequired[dict[str, Any]]
    """Top-k token log-probs and the rest's mass at the first positions (``core.metrics.vocab``)."""
    inputs: NotRequired[dict[str, Any]]
    """Fingerprint of the inputs: decoded pixels, processor outputs, decoder and processor versions."""
    gpu_clocks: NotRequired[dict[str, Any]]
    """NVML clocks and power limit after the timed rounds (timed GPU records)."""
    history: NotRequired[dict[str, Any]]
    """The latency-history verdict of a timed record (``--history``)."""
    vision: NotRequired[dict[str, Any]]
    """Vision-tower embeddings against the reference format's, per frame group (HF)."""
    error_type: NotRequired[str]
    error: NotRequired[str]
    traceback: NotRequired[str]
    unit: NotRequired[str]
    """The work unit that ran it (``vqbench cluster``)."""
    node: NotRequired[str]
    """The host that ran it (``vqbench cluster``)."""


def error_cell_record(identity: CellIdentity, *, kind: RecordKind, error_type: str, error: str,
                      traceback: str = "") -> CellRecord:
    """The record of a cell that failed (or never ran: its unit was lost): the error, and nothing that
    pretends to be a measurement."""
    return {"type": "cell", "kind": kind, **identity, "status": "error", "error_type": error_type,
            "error": error, "traceback": traceback, "time": time.time()}


class EngineRecord(TypedDict):
    """An engine's load (``details``: ``LoadDetails``), a failed load (the error) or its close (memory
    against the pre-load baseline). Built by ``engine_record``."""

    type: Literal["engine"]
    event: Literal["load", "close", "load-failed"]
    engine: str
    time: float
    details: dict[str, Any]


def engine_record(event: Literal["load", "close", "load-failed"], engine: str,
                  details: Mapping[str, Any]) -> EngineRecord:
    return {"type": "engine", "event": event, "engine": engine, "time": time.time(), "details": dict(details)}


class LoadRecord(TypedDict, total=False):
    """One load scenario of an engine on a real server (``core.load.session``): its figures, or its error
    with the points it finished before."""

    type: Literal["load"]
    scenario: str
    engine: str
    model: str
    backend: str
    format: str
    device: str
    gpu_class: str
    task: str
    status: Status
    result: dict[str, Any]
    batch_drift: dict[str, Any]
    capacity: dict[str, Any] | None
    alone: dict[str, Any]
    server: dict[str, Any]
    excluded_clips: dict[str, str]
    """Clips left out of the workload, with why (a clip that does not decode)."""
    error_type: str
    error: str
    server_log: str | None
    finished_points: list[dict[str, Any]]
    history: list[dict[str, Any]]
    """The latency history's verdict on each of its throughput figures (``core.load.gate``)."""
    machine: dict[str, Any]
    """Which machine served it: host name, host CPU, and the GPU's NVML UUID (``core.load.report`` gives a
    ratio to the reference format as same-machine only where these match)."""
    time: float
    run_id: str


class UnitStartRecord(TypedDict):
    """A ``vqbench cluster`` work unit started on a node."""

    type: Literal["unit-start"]
    unit: str
    pid: int
    node: str
    gpu: str | None
    gpus_held: list[str]
    time: float


class UnitRecord(TypedDict, total=False):
    """A ``vqbench cluster`` work unit's end: its pytest's exit status, or why it was lost."""

    type: Literal["unit"]
    unit: str
    exit: int | None
    lost: str
    note: str
    wall_s: float
    node: str
    gpu: str | None
    gpus_held: list[str]
    pid: int
    tests: int
    summary: list[str]
    """The last lines of the unit's pytest log."""


def lost_unit(unit: str, why: str) -> UnitRecord:
    return {"type": "unit", "unit": unit, "exit": None, "lost": why}


class ClusterRecord(TypedDict):
    """A ``vqbench cluster`` run's wall time and how busy its workers were."""

    type: Literal["cluster"]
    wall_s: float
    units: int
    workers: int
    busy_s: float


class DriftRecord(TypedDict):
    """A format's drift against its reference, as ``core.metrics.judge.judge_drift`` builds it."""

    type: Literal["drift"]
    engine: str
    task: str
    passed: bool
    report: dict[str, Any]
    status: NotRequired[str]
    """pass, inconclusive or fail (older records have only ``passed``)."""
    verdict: NotRequired[dict[str, Any]]
    """Failures, per-gate sensitivity (smallest detectable change, clips needed), thresholds."""
    reference: NotRequired[str]
    """The engine id judged against (the same model in the reference format, or a pre-quantized
    checkpoint's ``--reference-model``)."""
    prequantized: NotRequired[dict[str, Any]]
    """For a checkpoint quantized elsewhere: what its files said (format, source, fingerprint)."""


class SessionRecord(TypedDict):
    """Where a session's wall time went, the loads per engine and, under xdist, the schedule."""

    type: Literal["session"]
    wall_s: float
    phases: dict[str, float]
    unattributed_s: float
    loads: dict[str, int]
    worker: NotRequired[str]
    gpu: NotRequired[str | None]
    """The GPUs the worker was pinned to (``CUDA_VISIBLE_DEVICES``), None when not pinned."""
    engines: NotRequired[list[dict[str, Any]]]
    """Each engine's wall time while loaded, in load order."""
    schedule: NotRequired[dict[str, Any]]


class HeaderRecord(TypedDict, total=False):
    """The first line a writer puts in a results file: the schema, the settings, who wrote it."""

    type: Literal["header"]
    schema: str
    settings: dict[str, Any]
    command: str
    run: dict[str, Any]
    machine: dict[str, Any]
    worker: str
    skipped: list[dict[str, Any]]
    resumed: int | None
    run_id: str
    pytest_args: list[str]
    workers: int
    schedule: dict[str, Any] | None
    planned_on: dict[str, Any] | None
    units: Any
    gpu_units: list[str]


BENCHMARK_EXTRA_KEYS = ("kind", "model", "backend", "format", "device", "gpu_class", "task", "video", "truth",
                        "predicted", "parsed", "correct", "answer", "candidate_logprobs", "timings", "tokens", "load",
                        "memory", "frames", "mode", "mode_note", "mode_observed", "rounds_s", "roofline", "gpu_name",
                        "status", "gpu_clocks", "history")
"""The cell-record fields that go into pytest-benchmark's ``extra_info``."""


def kind_of(rec: Mapping[str, Any]) -> RecordKind:
    """A cell record's kind; records from before kinds existed are timed when they carry rounds."""
    kind = rec.get("kind")
    if kind == "timed" or kind == "scoring":
        return kind
    return "timed" if rec.get("rounds_s") else "scoring"


def extra_info(rec: CellRecord) -> dict[str, Any]:
    """The fields of a timed cell record that go into pytest-benchmark's ``extra_info``."""
    return {k: rec.get(k) for k in BENCHMARK_EXTRA_KEYS}
