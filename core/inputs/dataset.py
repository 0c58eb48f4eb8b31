"""Datasets: an STU-style folder or manifest CSV, a RoadBuddy-style JSON, or a plain folder.

Every path a manifest names must stay inside its dataset root (no ``..`` or absolute escapes, no
symlinks out); a malformed manifest raises ``DatasetError`` naming the file and the row.

A plain folder is scanned by content: every file is probed (``core.inputs.video.sniff``, headers only),
so raw streams, GIFs and MPEG-2 files count whatever their names, and every file that is not used
comes back in ``Scan.skipped`` with the reason; nothing is dropped silently. Hidden files and
folders (a leading dot) are passed over.
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.base import atomic, paths
from core.base.errors import DatasetError
from core.inputs import synth
from core.inputs.video import Probe, VideoClip, sniff

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
                  ".mts", ".m2ts", ".vob", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf", ".y4m", ".ogv"}
"""Names that promise a video. They decide nothing about what is one (probing does); a file with
such a name that is no video becomes an error record (the user meant it as a video) instead of a
skipped file."""
PROBE_THREADS = 8
"""Files probed at once: FFmpeg's open and header probe release the GIL and are mostly I/O waits."""
MANIFEST_NAMES = ("manifest.csv", "labels.csv", "manifest.json")


def safe_path(root: Path, relative: object, *, source: Path, row: int | str) -> Path:
    """``root / relative`` resolved, refusing anything that escapes ``root``."""
    if not isinstance(relative, str) or not relative.strip():
        raise DatasetError(f"{source}: entry {row} has an empty video path")
    if "\x00" in relative:
        raise DatasetError(f"{source}: entry {row} has a NUL byte in its video path")
    root = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise DatasetError(f"{source}: entry {row} path '{relative}' escapes the dataset root {root}")
    return candidate


def _clip_id(path: Path, root: Path) -> str:
    rel = path.relative_to(root.resolve()) if root.resolve() in path.parents else Path(path.name)
    return str(rel.with_suffix("")).replace("/", "__")


def load_csv(manifest: Path) -> list[VideoClip]:
    """STU-style CSV: columns ``video`` (path relative to the CSV) and optional ``label``, ``id``."""
    root = manifest.parent
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{manifest}: cannot read manifest ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    col = next((f for f in ("video", "path", "file", "filename") if f in fields), None)
    if col is None:
        raise DatasetError(f"{manifest}: no 'video' column (found: {', '.join(fields) or 'none'})")
    clips, seen = [], set()
    for i, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        path = safe_path(root, row.get(col, ""), source=manifest, row=f"line {i}")
        cid = row.get("id") or _clip_id(path, root)
        if cid in seen:
            raise DatasetError(f"{manifest}: line {i} repeats id '{cid}'")
        seen.add(cid)
        meta = {k: v for k, v in row.items() if k not in {col, "id", "label"}}
        clips.append(VideoClip(path=path, id=cid, label=row.get("label") or None, meta=meta))
    return clips


def load_roadbuddy(manifest: Path) -> list[VideoClip]:
    """RoadBuddy-style JSON: a list (or ``{"data": [...]}``) of id, video path, question, options,
    answer and optional support-frame timestamps (seconds)."""
    root = manifest.parent
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{manifest}: not valid JSON ({exc})") from None
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DatasetError(f"{manifest}: expected a list of items or {{'data': [...]}}")
    clips, seen = [], set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DatasetError(f"{manifest}: item {i} is not an object")
        video = item.get("video_path") or item.get("video")
        path = safe_path(root, video, source=manifest, row=f"item {i}")
        cid = str(item.get("id") or _clip_id(path, root))
        if cid in seen:
            raise DatasetError(f"{manifest}: item {i} repeats id '{cid}'")
        seen.add(cid)
        options = item.get("choices", item.get("options"))
        if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
            raise DatasetError(f"{manifest}: item {i} ('{cid}') options must be a list of strings")
        support = item.get("support_frames")
        if support is not None:
            try:
                support = tuple(float(s) for s in support)
            except (TypeError, ValueError):
                raise DatasetError(f"{manifest}: item {i} ('{cid}') support_frames must be numbers") from None
        answer = item.get("answer")
        question = item.get("question")
        if question is not None and not isinstance(question, str):
            raise DatasetError(f"{manifest}: item {i} ('{cid}') question must be a string")
        if answer is not None and not isinstance(answer, (str, int)):
            raise DatasetError(f"{manifest}: item {i} ('{cid}') answer must be a string")
        if not isinstance(item.get("id", ""), (str, int)):
            raise DatasetError(f"{manifest}: item {i} id must be a string")
        clips.append(VideoClip(
            path=path, id=cid, label=str(answer) if answer is not None else None,
            question=question, options=tuple(options) if options else None,
            support_frames=support, meta={k: v for k, v in item.items() if isinstance(v, (str, int, float))},
        ))
    return clips


@dataclass(frozen=True)
class Skipped:
    """A file of a scanned folder that is not answered, and why."""

    path: str
    """Relative to the scanned folder."""
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Scan:
    """What a dataset source holds: the clips to answer, the files passed over (with reasons) and,
    for scanned folders, each clip's header probe (by clip id)."""

    clips: list[VideoClip]
    skipped: list[Skipped] = field(default_factory=list)
    probes: dict[str, Probe] = field(default_factory=dict)


def _walk(folder: Path) -> list[Path]:
    """Every non-hidden entry below ``folder`` that is not a directory, sorted; symlinked folders are
    not followed (a loop, or a way out of the folder)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not os.path.islink(os.path.join(dirpath, d)))
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return sorted(found)


def scan_folder(folder: Path) -> Scan:
    """Every file below ``folder`` probed: videos become clips (no labels; ids from the relative path
    without suffix, with the suffix when two files would share one), everything else is skipped
    with its reason, except files named like videos, which stay clips that will fail with the
    probe's reason (so a broken ``.mp4`` is an error, not a silent skip)."""
    root = folder.resolve()
    entries: list[tuple[Path, Path | None, str]] = []  # (path, resolved or None, reason if refused)
    resolved: Path | None
    for p in _walk(folder):
        try:
            resolved = p.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            entries.append((p, None, f"cannot be resolved ({getattr(exc, 'strerror', None) or exc})"))
            continue
        if root not in resolved.parents:
            entries.append((p, None, f"a link to {resolved}, outside the folder"))
            continue
        entries.append((p, resolved, ""))
    to_probe = [r for _, r, _ in entries if r is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(PROBE_THREADS, len(to_probe)))) as ex:
        probes = dict(zip(to_probe, ex.map(sniff, to_probe)))
    chosen: list[tuple[Path, Probe]] = []
    skipped: list[Skipped] = []
    for p, resolved, reason in entries:
        rel = str(p.relative_to(folder))
        if resolved is None:
            skipped.append(Skipped(rel, reason))
            continue
        probe = probes[resolved]
        if probe.video or resolved.suffix.lower() in VIDEO_SUFFIXES:
            chosen.append((resolved, probe))
        else:
            skipped.append(Skipped(rel, probe.reason))
    ids = [_clip_id(r, root) for r, _ in chosen]
    clips, by_id = [], {}
    for (resolved, probe), cid in zip(chosen, ids):
        if ids.count(cid) > 1:  # a.mp4 and a.mkv: both keep their suffix
            cid = str(resolved.relative_to(root)).replace("/", "__")
        clips.append(VideoClip(path=resolved, id=cid, meta={} if probe.video else {"probe_error": probe.reason}))
        by_id[cid] = probe
    return Scan(clips=clips, skipped=skipped, probes=by_id)


def load_folder(folder: Path) -> list[VideoClip]:
    """A folder: its manifest if it has one, else every video in it (no labels), sorted."""
    for name in MANIFEST_NAMES:
        if (folder / name).is_file():
            return load(folder / name)
    return scan_folder(folder).clips


def probe_clips(clips: list[VideoClip]) -> dict[str, Probe]:
    """Header probes of clips a manifest named (a folder scan has them already), by clip id."""
    if not clips:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(PROBE_THREADS, len(clips)))) as ex:
        return dict(zip((c.id for c in clips), ex.map(sniff, [c.path for c in clips])))


HELDOUT_SEED = 5000
"""Seeds of the held-out split; the reference model trains on seeds from core.train, disjoint."""


def generated_split(name: str, *, count: int, first_seed: int) -> Path:
    """A generated labeled split (half normal, half anomalies of every kind) in the cache."""

    final = paths.cache_dir() / "datasets" / f"{name}-{count}-{first_seed}-synth{synth.VERSION}"

    def build(tmp: Path) -> dict[str, Any]:
        rows = ["video,label,kind,seed"]
        kinds = [k for i in range(count) for k in
                 [synth.KINDS_NORMAL[0] if i % 2 == 0 else synth.KINDS_ANOMALY[(i // 2) % len(synth.KINDS_ANOMALY)]]]
        for i, kind in enumerate(kinds):
            seed = first_seed + i
            synth.encode(synth.render_clip(kind, seed), tmp / f"{kind}_{seed}.mp4")
            rows.append(f"{kind}_{seed}.mp4,{synth.label_of(kind)},{kind},{seed}")
        (tmp / "manifest.csv").write_text("\n".join(rows) + "\n")
        return {"name": name, "count": count, "first_seed": first_seed}

    directory, _ = atomic.build_directory(final, build)
    return directory / "manifest.csv"


BUILTIN = {
    "fixtures": lambda: paths.FIXTURES_DIR / "clips" / "manifest.csv",
    "heldout": lambda: generated_split("heldout", count=40, first_seed=HELDOUT_SEED),
    "roadbuddy": lambda: paths.FIXTURES_DIR / "questions_roadbuddy.json",
}


def scan(source: Path | str) -> Scan:
    """The clips of a built-in set name (fixtures, heldout, roadbuddy), a folder (its manifest if it
    has one, else every file probed), a CSV manifest or a RoadBuddy-style JSON file, with the files
    a folder scan passed over."""
    if isinstance(source, str) and source in BUILTIN:
        source = BUILTIN[source]()
    source = Path(source).expanduser()
    if source.is_dir():
        manifest = next((source / n for n in MANIFEST_NAMES if (source / n).is_file()), None)
        found = scan(manifest) if manifest is not None else scan_folder(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        found = Scan(load_csv(source))
    elif source.is_file() and source.suffix.lower() == ".json":
        found = Scan(load_roadbuddy(source))
    elif not source.exists():
        raise DatasetError(f"{source}: no such folder or manifest")
    else:
        raise DatasetError(f"{source}: expected a folder, a .csv manifest or a .json (RoadBuddy) file")
    if not found.clips:
        passed = "; ".join(f"{s.path}: {s.reason}" for s in found.skipped[:5])
        more = f" (and {len(found.skipped) - 5} more)" if len(found.skipped) > 5 else ""
        raise DatasetError(f"{source}: no videos found" + (f"; passed over {passed}{more}" if passed else ""))
    return found


def load(source: Path | str) -> list[VideoClip]:
    """Clips from a built-in set name (fixtures, heldout, roadbuddy), a folder, a CSV manifest or a
    RoadBuddy-style JSON file (``scan`` without the skipped files)."""
    return scan(source).clips


def fixture_clips() -> list[VideoClip]:
    """The committed fixture clips (labeled, STU style)."""
    return load_csv(paths.FIXTURES_DIR / "clips" / "manifest.csv")


def describe(clips: list[VideoClip]) -> dict[str, Any]:
    labels: dict[str, int] = {}
    for c in clips:
        labels[str(c.label)] = labels.get(str(c.label), 0) + 1
    return {"clips": len(clips), "labels": labels}
