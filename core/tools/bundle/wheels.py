"""Every pip call a bundle makes: downloading a requirements list's wheels for the target interpreter and
platforms, installing them into a site dir (build side), and installing carried wheels with no index
(device side)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.tools.bundle.manifest import BundleError, Requirements, canonical_name, sha256_file


@dataclass(frozen=True)
class PipTarget:
    """The interpreter and platform the wheels are for, as pip options."""

    python_version: str
    implementation: str
    platforms: tuple[str, ...]
    find_links: tuple[Path, ...]
    no_index: bool

    def options(self) -> list[str]:
        opts = ["--only-binary=:all:", "--python-version", self.python_version,
                "--implementation", self.implementation]
        for p in self.platforms:
            opts += ["--platform", p]
        for d in self.find_links:
            opts += ["--find-links", str(d)]
        if self.no_index:
            opts.append("--no-index")
        return opts


def download(req: Requirements, wheel_dir: Path, *, target: PipTarget, log=print) -> list[Path]:
    """``pip download --no-deps`` every line of ``req`` into ``wheel_dir``; the wheels, one each."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
           "--disable-pip-version-check", *target.options(), "-d", str(wheel_dir), *req.lines]
    total = len(req.lines)
    got: list[Path] = []

    def on_line(line: str) -> None:
        m = re.match(r"\s*(?:Saved|File was already downloaded)\s+(\S+)", line)
        if m:
            got.append(wheel_dir / Path(m.group(1)).name)
            log(f"bundle: download [{len(got)}/{total}] {got[-1].name}")

    _run(cmd, on_line, what=f"downloading the {total} requirements of {req.path}",
         hint="check the pins exist as binary wheels for cp"
              f"{target.python_version.replace('.', '')} on these platforms (`pip index versions NAME "
              f"--python-version {target.python_version} --only-binary=:all:`)")
    by_name = {canonical_name(whl.name.split("-")[0]): whl for whl in got}
    wheels, missing = [], []
    for line in req.lines:
        key = canonical_name(re.split(r"[\s<>=!~;\[@(]", line, maxsplit=1)[0])
        (wheels.append(by_name[key]) if key in by_name else missing.append(line))
    if missing:
        raise BundleError(f"pip reported success but left no wheel for {missing} in {wheel_dir}")
    return sorted(set(wheels), key=lambda p: p.name)


def install_site(wheels: Sequence[Path], stage: Path, *, target: PipTarget, log=print) -> None:
    """Install ``wheels`` (no deps, no .pyc) into ``stage`` for the target interpreter."""
    log(f"bundle: installing {len(wheels)} wheels into a site dir for Python {target.python_version}")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--no-index",
           "--disable-pip-version-check", "--progress-bar", "off", "--target", str(stage),
           *target.options(), *map(str, wheels)]
    _run(cmd, lambda line: None, what="installing the downloaded wheels into the site dir",
         hint="a wheel may not match the target python/platform")
    # PEP 610 records the build machine's temporary wheel path: untrue there, and it breaks determinism.
    for direct in stage.glob("*.dist-info/direct_url.json"):
        direct.unlink()
        record = direct.parent / "RECORD"
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        record.write_text("".join(x for x in lines if not x.startswith(f"{direct.parent.name}/direct_url.json,")),
                          encoding="utf-8")


def _run(cmd: list[str], on_line, *, what: str, hint: str) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line)
        if "is ignored: it is neither a file nor a directory" not in line:
            tail = (tail + [line.rstrip()])[-15:]
    if proc.wait() != 0:
        raise BundleError(f"pip failed {what} (exit {proc.returncode}); {hint}. pip said:\n"
                          + "\n".join(tail))


def wheel_entry(whl: Path) -> dict:
    name, version = whl.name.split("-")[:2]
    return {"name": canonical_name(name), "version": version, "wheel": whl.name,
            "size": whl.stat().st_size, "sha256": sha256_file(whl)}


def install_wheels(wheels: Sequence[Path], target: Path, *, log=print) -> None:
    """``pip install --no-index --no-deps --no-compile --target`` of the extracted wheels."""
    log(f"bundle: pip-installing {len(wheels)} wheels into {target}")
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--progress-bar", "off", "--target", str(target),
           *map(str, wheels)]
    # No index exists there; a config's find-links or constraints must not steer this install.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull}
    res = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if res.returncode != 0:
        raise BundleError(f"pip install of the bundle's wheels failed (exit {res.returncode}):\n"
                          + "\n".join(res.stdout.splitlines()[-15:]))
