"""Build the llm-compressor virtualenv: llmcompressor 0.14 over this project's own torch and transformers.

    python -m core.tools.envs.llmcompressor VENV [--project DIR] [--constraints FILE] [--verify]

Why a recipe: llmcompressor 0.14.0.1 pins ``transformers<=5.17``, ``torch<=2.14.0`` and
``compressed-tensors==0.19.0``; this project needs ``transformers>=5.18`` (5.3-5.17 truncate
Qwen2.5-VL's ``second_per_grid_ts``, so video sampled at 4 fps gets no temporal positions and
calibration would see other activations than the benchmark runs). Measured on this project's CPU
machine (2026-12-01): llmcompressor installed without its dependencies over transformers 5.23 /
torch 2.14.1 ran every recipe the suite uses (SmoothQuant + GPTQ W8A8, GPTQ W4A16, FP8_DYNAMIC,
calibrated NVFP4; video and text calibration; ``save_compressed``), and compressed-tensors 0.20.0
wrote tensors bit-identical to 0.19.0's. So this recipe installs the project (``[hf]``, under the
caller's constraints, e.g. ``.ci/constraints-cpu.txt``), then llmcompressor, compressed-tensors
and auto-round with ``--no-deps``, then their other requirements under constraints that pin the
torch, torchvision and transformers just installed. ``pip check`` afterwards names exactly the
pins this overrides; that is expected. The environment is separate because those pins would
otherwise fight the project's on every resolve (and pull datasets/pyarrow/pandas into it).

Idempotent: a ready environment (same recipe, same versions) is left alone. Every other pip setting
(index, find-links, certificates) is the caller's: ``PIP_*`` variables and pip config files apply.
The suite finds the environment at ``.tox/llmcompressor`` or through ``$VQBENCH_LLMCOMPRESSOR_PYTHON``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from core.base.envprobe import last_json_line, versions_probe
from core.tools.envs.common import Steps

RECIPE = "1"
NO_DEPS = (("llmcompressor", "0.14.0.1"), ("compressed-tensors", "0.20.0"), ("auto-round", "0.15.1"))
"""Installed without their dependencies: their pins are what this recipe overrides."""
KEPT = ("torch", "torchvision", "transformers")
"""The project's versions, pinned while the tools' other requirements are installed."""
MIN_TRANSFORMERS = (5, 18)
REQUIREMENTS_FILE = "llmcompressor-requirements.txt"
CONSTRAINTS_FILE = "llmcompressor-constraints.txt"
MARKER = ".vqbench-llmcompressor.json"
PROJECT = Path(__file__).resolve().parents[3]

PROBE = versions_probe(("llmcompressor", "compressed-tensors", "auto-round", "torch", "torchvision",
                        "transformers", "vqbench", "datasets"))
_steps = Steps("llmcompressor env")
say = _steps.say


def run(cmd: list[str], *, capture: bool = False) -> str:
    return _steps.run(cmd, capture=capture)


def probe(python: Path) -> dict:
    return last_json_line(run([str(python), "-c", PROBE], capture=True))


def _release(version: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version or "")[:2])


def ready(state: dict, marker: dict | None) -> bool:
    """The tools at this recipe's versions over a transformers the project accepts, built by this recipe."""
    return (all(state.get(name) == version for name, version in NO_DEPS)
            and _release(state.get("transformers")) >= MIN_TRANSFORMERS and bool(state.get("torch"))
            and bool(state.get("datasets")) and (marker or {}).get("recipe") == RECIPE)


def tool_requirements(python: Path) -> list[str]:
    """The tools' own requirements, without extras, without each other and without what is kept."""
    names = json.dumps([name for name, _ in NO_DEPS])
    out = run([str(python), "-c", f"import importlib.metadata as m, json; "
                                  f"print(json.dumps([r for n in {names} for r in (m.requires(n) or [])]))"],
              capture=True)
    skip = set(KEPT) | {name for name, _ in NO_DEPS}
    keep = []
    for req in json.loads(out.strip().splitlines()[-1]):
        m = re.match(r"[A-Za-z0-9_.\-]+", req)
        if m is None:
            raise RuntimeError(f"a requirement with no project name: {req!r}")
        name = m.group(0).lower().replace("_", "-")
        if name in skip or re.search(r"\bextra\s*==", req) or req in keep:
            continue
        keep.append(req)
    return keep


def build(venv: Path, *, base_python: str, project: Path, constraints: Path | None) -> dict:
    """Create or complete ``venv``; return the probed state of the finished environment."""
    python = venv / "bin" / "python"
    if not python.exists():
        run([base_python, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip"]
    marker_file = venv / MARKER
    marker = json.loads(marker_file.read_text()) if marker_file.is_file() else None
    state = probe(python)
    if ready(state, marker):
        say(f"already built: {state}")
        return state
    say(f"building (found {state})")
    user_constraints = ["-c", str(constraints)] if constraints else []
    run(pip + ["install", *user_constraints, "-e", f"{project}[hf]"])
    run(pip + ["install", "--no-deps", *(f"{name}=={version}" for name, version in NO_DEPS)])
    state = probe(python)
    pins = venv / CONSTRAINTS_FILE
    pins.write_text("".join(f"{name}=={state[name]}\n" for name in KEPT if state.get(name)))
    requirements = venv / REQUIREMENTS_FILE
    requirements.write_text("\n".join(tool_requirements(python)) + "\n")
    say(f"wrote {requirements} (the tools' requirements without {', '.join(KEPT)} and each other)")
    run(pip + ["install", "-c", str(pins), *user_constraints, "-r", str(requirements)])
    state = probe(python)
    if not ready(state, {"recipe": RECIPE}):
        sys.exit(f"[llmcompressor env] the environment is still not right: {state}")
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.tools.envs.llmcompressor",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path, help="virtualenv to create or complete (e.g. tox's {envdir})")
    parser.add_argument("--project", type=Path, default=PROJECT, help=f"this project's checkout (default {PROJECT})")
    parser.add_argument("--constraints", type=Path,
                        help="pip constraints for the project's packages (e.g. .ci/constraints-cpu.txt: CI's versions)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for a new venv (default: this one)")
    parser.add_argument("--verify", action="store_true", help="finally import llmcompressor (10-25 s)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    venv = args.venv.resolve()
    tools = ", ".join(f"{n}=={v}" for n, v in NO_DEPS)
    say(f"recipe {RECIPE}: {args.project}[hf] + --no-deps {tools} + their other requirements, in {venv}")
    state = build(venv, base_python=args.python, project=args.project.resolve(),
                  constraints=args.constraints.resolve() if args.constraints else None)
    python = str(venv / "bin" / "python")
    if args.verify:
        run([python, "-c", "import llmcompressor, compressed_tensors, transformers, torch; "
                           "print('llmcompressor', llmcompressor.__version__, 'compressed-tensors', "
                           "compressed_tensors.__version__, 'transformers', transformers.__version__, "
                           "'torch', torch.__version__)"])
    (venv / MARKER).write_text(json.dumps({"recipe": RECIPE, **state}, indent=2) + "\n")
    say(f"ready in {time.perf_counter() - t0:.0f} s: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
