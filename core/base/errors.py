"""The suite's own error types: each says what went wrong, with which input, and what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VqbenchError(Exception):
    """Base of every error the suite raises on purpose (bad input, missing package, bad config)."""


class VideoError(VqbenchError):
    """A video file could not be used: missing, empty, not a video, or undecodable."""

    def __init__(self, path: object, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        msg = f"{self.path}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __reduce__(self):
        # Crosses process boundaries intact (decode-ahead workers): the default reduce would call
        # VideoError(message) and lose the path and the problem.
        return (type(self), (self.path, self.problem, self.hint))


class BudgetError(VqbenchError):
    """A clip would not fit: more tokens than the engine's context, or more memory than the device has.
    Only that clip fails; the message says which option to lower."""


class DatasetError(VqbenchError):
    """A manifest or dataset folder is malformed or points outside its root."""


class ModelError(VqbenchError):
    """A model directory or name cannot be loaded (missing config or weights, unknown name)."""


class ConfigError(VqbenchError):
    """An option or configuration value is invalid."""


class MissingDependency(VqbenchError):
    """An optional package is needed for this cell and is not installed."""

    def __init__(self, package: str, purpose: str, install: str) -> None:
        self.package = package
        super().__init__(f"{purpose} needs the '{package}' package, which is not installed; {install}")


class Unsupported(VqbenchError):
    """A backend/format/device combination cannot run; the message says why."""


class DoesNotFit(Unsupported):
    """The engine cannot fit this device's memory at all (``core.plan.estimate.plan_budget``): a verdict
    reached before loading, so the suite skips its cells with the reason and ``vqbench run`` stops."""


class NumericsError(VqbenchError):
    """The model produced NaN or inf logits (for example after a broken quantization)."""


class ArtifactError(VqbenchError):
    """A quantized artifact could not be made or loaded."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """A ConfigError for an unknown name, with a "did you mean" suggestion when one is close."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown {kind} '{name}'.{hint} Known: {', '.join(known)}.")
