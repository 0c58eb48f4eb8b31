"""Calibration sets for post-training quantization, identified by a content hash.

``captions``: text-only traffic captions (the seeds calibrate text-only: CNN/DailyMail, COCO
captions). ``clips``: the fixture clips with the task prompt, so activations of video tokens are
seen too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.base.errors import ConfigError

_SUBJECTS = ["A red car", "A white truck", "A bus", "A cyclist", "A motorbike", "A grey van",
             "A pedestrian", "A taxi", "A delivery truck", "A black SUV", "A dog", "A police car"]
_ACTIONS = ["drives along the right lane", "waits at the traffic light", "turns left at the junction",
            "overtakes a slower car", "crosses the road at the zebra crossing", "merges onto the highway",
            "brakes suddenly in heavy traffic", "parks by the curb", "drives the wrong way",
            "stops behind a broken-down car", "follows the lane markings", "enters the roundabout"]
_PLACES = ["on a sunny morning.", "in the rain.", "at night under street lights.", "near a school.",
           "on a two-lane highway.", "in a busy city centre.", "on a quiet suburban street.",
           "at a four-way intersection."]


def captions(n: int) -> list[str]:
    """``n`` deterministic traffic captions (no randomness: a fixed walk over the parts)."""
    out = []
    for i in range(n):
        out.append(f"{_SUBJECTS[i % len(_SUBJECTS)]} {_ACTIONS[(i * 7) % len(_ACTIONS)]} "
                   f"{_PLACES[(i * 5) % len(_PLACES)]}")
    return out


@dataclass(frozen=True)
class CalibrationSet:
    """A named, hashed calibration set and how to run it through a model."""

    kind: str
    size: int
    identity: str

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size, "sha256": self.identity}


def make(kind: str, size: int) -> CalibrationSet:
    """The calibration set ``kind`` ('captions' or 'clips') of ``size`` samples."""
    if size < 1:
        raise ConfigError(f"calibration size must be >= 1, got {size}")
    if kind == "captions":
        content = captions(size)
    elif kind == "clips":
        from core.inputs import dataset

        content = [c.id for c in dataset.fixture_clips()][:size]
    else:
        raise ConfigError(f"unknown calibration set '{kind}'; use 'captions' or 'clips'")
    digest = hashlib.sha256(json.dumps([kind, content]).encode()).hexdigest()[:16]
    return CalibrationSet(kind=kind, size=len(content), identity=digest)


def _progress(items, *, total: int, desc: str):
    """A progress bar on stderr when it is a terminal (calibrating a 7B takes minutes); silent in logs."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=desc, unit="sample", leave=False, disable=None)


def samples(calib: CalibrationSet, *, processor, family) -> Iterator[dict[str, Any]]:
    """The calibration set as model inputs (dicts of CPU tensors with a batch dimension of 1), in order:
    each caption through the chat template, or each clip's frames and prompt through the family's HF
    processor (``Family.hf_inputs``, as the benchmark feeds the model). ModelOpt's forward loop and
    llm-compressor's calibration dataset both read them."""
    if calib.kind == "captions":
        tok = getattr(processor, "tokenizer", processor)
        for text in _progress(captions(calib.size), total=calib.size, desc="calibrating (captions)"):
            ids = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                          add_generation_prompt=True, return_tensors="pt", return_dict=True)
            yield {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
        return
    from core.inputs import dataset
    from core.inputs.requests import Request
    from core.inputs.sampling import SamplingSpec
    from core.inputs.tasks import AnomalyTask
    from core.inputs.video import load_frames

    task = AnomalyTask()
    spec = SamplingSpec(fps=4.0, resolution=(252, 252))
    clips = dataset.fixture_clips()[: calib.size]
    for clip in _progress(clips, total=len(clips), desc="calibrating (clips)"):
        req = Request(clip=clip, frames=load_frames(clip.path, spec), messages=task.messages(clip),
                      candidates=task.candidates(clip))
        yield dict(family.hf_inputs(processor, req))


def forward_loop(calib: CalibrationSet, *, processor, family, device: str) -> Callable[[Any], None]:
    """A ModelOpt ``forward_loop(model)`` that runs every calibration sample through the model."""
    import torch

    def loop(model) -> None:
        with torch.inference_mode():
            for inputs in samples(calib, processor=processor, family=family):
                model(**{k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()})

    return loop
