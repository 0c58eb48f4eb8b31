"""The evidence behind "native": which kernels real engine loads were seen running, per format, backend
and device class (``core/observed_kernels.json``, committed; the README's support matrix reads it).

    python -m core.tools.observed add RESULTS.jsonl [--where TEXT]   # add the conclusive loads of a run
    python -m core.tools.observed list                               # what the file holds

An entry comes from an engine load record of a results file (``--results``): the kernels the load
observed (``core.plan.kernels``: vLLM's kernel class per linear layer, HF's module classes) and the mode
they showed against the capability verdict's. Only conclusive observations are added (a load whose
kernels were not observed, or are unknown to ``core.plan.kernels.FAMILIES``, proves nothing). An entry
replaces an earlier one of the same format, backend, device class, device and model; the file is
only ever written from real runs, never by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

EVIDENCE = Path(__file__).resolve().parent.parent / "observed_kernels.json"
"""``core/observed_kernels.json``: package data, so ``vqbench`` installs read it too."""
ABOUT = ("Kernels seen running in real engine loads (python -m core.tools.observed add RESULTS.jsonl). 'observed': "
         "'native' when every language-model linear layer ran the format's own kernels (core.plan.kernels.FAMILIES), "
         "'emulated' when one ran another kernel; 'declared': the capability verdict's mode (a bf16 model computed "
         "in float32 is declared emulated whatever its kernels). The README's support matrix says 'native (seen)' "
         "only for a declared-native format, backend and device class with an entry here observed native; every "
         "other native verdict is 'native (unverified)'.")


def load(path: Path | str = EVIDENCE) -> list[dict[str, Any]]:
    """The evidence entries (none when the file does not exist)."""
    p = Path(path)
    if not p.is_file():
        return []
    return list(json.loads(p.read_text(encoding="utf-8")).get("entries", []))


def seen(entries: list[dict[str, Any]], *, fmt: str, backend: str, device_class: str) -> dict[str, Any] | None:
    """The newest entry for ``fmt`` on ``backend`` and ``device_class``, or None."""
    want = (fmt, backend, device_class)
    found = [e for e in entries if (e.get("format"), e.get("backend"), e.get("device_class")) == want]
    return max(found, key=lambda e: e.get("measured", "")) if found else None


def entry_from_load(rec: dict[str, Any], *, results: str = "", where: str = "") -> tuple[dict[str, Any] | None, str]:
    """An evidence entry from an engine load record (``{"type": "engine", "event": "load", ...}``) and,
    when there is none, why."""
    load_rec = rec.get("details") or {}
    observed = load_rec.get("observed_mode") or {}
    kernels = (load_rec.get("details") or {}).get("kernels") or {}
    ident = [load_rec.get(k) for k in ("format", "backend", "device_class")]
    if not all(ident):
        return None, f"{rec.get('engine')}: the load record names no format/backend/device class (an older run)"
    if observed.get("mode") not in ("native", "emulated"):
        return None, f"{rec.get('engine')}: inconclusive ({observed.get('note') or 'no observation'})"
    when = datetime.datetime.fromtimestamp(rec.get("time") or 0, tz=datetime.UTC)
    entry = {
        "format": ident[0], "backend": ident[1], "device_class": ident[2],
        "observed": observed["mode"], "declared": observed.get("declared"), "note": observed.get("note", ""),
        "kernels": kernels.get("linear", {}), "quantization": kernels.get("quantization"),
        "source": kernels.get("source"), "model": load_rec.get("model"), "device": load_rec.get("device_name"),
        "versions": load_rec.get("versions", {}), "measured": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if kernels.get("dtype"):
        entry["dtype"] = kernels["dtype"]
    if results:
        entry["results"] = results
    if where:
        entry["where"] = where
    return entry, ""


def entry_from_server(rec: dict[str, Any], *, results: str = "", where: str = "") -> tuple[dict[str, Any] | None, str]:
    """An evidence entry from a load scenario's record (``{"type": "load"}``): the kernels its `vllm serve`
    process logged choosing (``core.load.session``), and, when it has none, why."""
    server = rec.get("server") or {}
    observed = server.get("observed_mode") or {}
    kernels = server.get("kernels") or {}
    name = f"{rec.get('engine')} (server)"
    if observed.get("mode") not in ("native", "emulated"):
        return None, f"{name}: inconclusive ({observed.get('note') or 'no observation'})"
    as_load = {"type": "engine", "event": "load", "engine": name, "time": rec.get("time"),
               "details": {"format": rec.get("format"), "backend": rec.get("backend"),
                           "device_class": rec.get("gpu_class"), "model": rec.get("model"),
                           "device_name": server.get("device_name"), "observed_mode": observed,
                           "details": {"kernels": kernels}, "versions": server.get("versions", {})}}
    return entry_from_load(as_load, results=results, where=where)


def add(results_path: Path | str, *, evidence: Path | str = EVIDENCE, where: str = "") -> tuple[list[dict], list[str]]:
    """Add the conclusive engine loads of a results file (in-process engines' load records and load scenarios'
    servers) to the evidence file; (added, skipped reasons)."""
    from core.base import results

    added, skipped = [], []
    for rec in results.read(results_path):
        if rec.get("type") == "load" and rec.get("status") == "ok":
            entry, why = entry_from_server(rec, results=Path(results_path).name, where=where)
        elif rec.get("type") == "engine" and rec.get("event") == "load":
            entry, why = entry_from_load(rec, results=Path(results_path).name, where=where)
        else:
            continue
        if entry is None:
            skipped.append(why)
        else:
            added.append(entry)
    entries = load(evidence)

    def key(e: dict[str, Any]) -> tuple:
        return e.get("format"), e.get("backend"), e.get("device_class"), e.get("device"), e.get("model")

    new_keys = {key(e) for e in added}
    kept = [e for e in entries if key(e) not in new_keys]
    latest = {key(e): e for e in added}  # a run that loaded an engine twice: its last load
    write([*kept, *latest.values()], evidence)
    return list(latest.values()), skipped


def write(entries: list[dict[str, Any]], path: Path | str = EVIDENCE) -> None:
    ordered = sorted(entries, key=lambda e: (e.get("backend", ""), e.get("format", ""), e.get("device_class", ""),
                                             e.get("device") or "", e.get("model") or ""))
    Path(path).write_text(json.dumps({"about": ABOUT, "entries": ordered}, indent=2) + "\n",
                          encoding="utf-8")


def _count(kernel: str, n: int) -> str:
    """A server log names each kernel once and counts no layers: its entries keep 0, which is not 'no layer'."""
    return f"{kernel} x{n}" if n else f"{kernel} (named in the log, layers not counted)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="add the conclusive engine loads of a results file")
    a.add_argument("results", type=Path)
    a.add_argument("--where", default="", help="where it was measured (machine, CI job), kept with each entry")
    a.add_argument("--evidence", type=Path, default=EVIDENCE)
    ls = sub.add_parser("list", help="print the evidence entries")
    ls.add_argument("--evidence", type=Path, default=EVIDENCE)
    args = p.parse_args(argv)
    if args.cmd == "add":
        added, skipped = add(args.results, evidence=args.evidence, where=args.where)
        for e in added:
            print(f"added: {e['backend']}/{e['format']} on {e['device_class']} ({e['device']}): {e['observed']}, "
                  f"{', '.join(_count(k, n) for k, n in e['kernels'].items())}")
        for why in skipped:
            print(f"skipped: {why}", file=sys.stderr)
        if not added:
            print(f"no conclusive engine load in {args.results}", file=sys.stderr)
            return 1
        return 0
    for e in load(args.evidence):
        print(f"{e['backend']}/{e['format']} on {e['device_class']}: {e['observed']} "
              f"({', '.join(e['kernels'])}; {e.get('model')}, {e.get('device')}, {e.get('measured')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
