"""Fixtures shared by the suite's test modules (modules never import fixtures from each other)."""

from __future__ import annotations

import numpy as np
import pytest

from core.inputs.video import Frames


@pytest.fixture(scope="session")
def built_model():
    """``built_model(name)``: the directory of a built-in model (built once into the cache)."""
    from core.models import registry

    def build(name: str):
        pytest.importorskip("transformers", reason="building the tiny models needs transformers: "
                                                   "pip install 'vqbench[hf]'")
        return registry.materialize(registry.resolve(name))

    return build


def make_frames(t: int = 4, h: int = 56, w: int = 84) -> Frames:
    """Random RGB frames with plausible metadata (no video file)."""
    rng = np.random.default_rng(0)
    return Frames(array=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), source_fps=30.0, total_frames=120,
                  indices=tuple(range(0, 120, 120 // t)), timestamps=tuple(float(i) for i in range(t)),
                  duration=4.0, source_size=(h, w), rotation=0, decode_s=0.0)


@pytest.fixture
def frames_factory():
    return make_frames
