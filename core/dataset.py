"""Datasets: an STU-style folder or manifest CSV, a RoadBuddy-style JSON, or a plain folder.

Every path a manifest names must stay inside its dataset root (no ``..`` or absolute escapes, no
symlinks out); a malformed manifest raises ``DatasetError`` naming the file and the row.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from core import atomic, paths, synth
from core.errors import DatasetError
from core.video import VideoClip

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
MANIFEST_NAMES = ("manifest.csv", "labels.csv", "manifest.json")


def safe_path(root: Path, relative: str, *, source: Path, row: int | str) -> Path:
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


def load_folder(folder: Path) -> list[VideoClip]:
    """A folder: its manifest if it has one, else every video file in it (no labels), sorted."""
    for name in MANIFEST_NAMES:
        if (folder / name).is_file():
            return load(folder / name)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    root = folder.resolve()
    clips = []
    for p in files:
        resolved = p.resolve()
        if root not in resolved.parents:
            continue  # a symlink pointing out of the folder
        clips.append(VideoClip(path=resolved, id=_clip_id(resolved, root)))
    return clips


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


def load(source: Path | str) -> list[VideoClip]:
    """Clips from a built-in set name (fixtures, heldout, roadbuddy), a folder, a CSV manifest or a
    RoadBuddy-style JSON file."""
    if isinstance(source, str) and source in BUILTIN:
        source = BUILTIN[source]()
    source = Path(source).expanduser()
    if source.is_dir():
        clips = load_folder(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        clips = load_csv(source)
    elif source.is_file() and source.suffix.lower() == ".json":
        clips = load_roadbuddy(source)
    elif not source.exists():
        raise DatasetError(f"{source}: no such folder or manifest")
    else:
        raise DatasetError(f"{source}: expected a folder, a .csv manifest or a .json (RoadBuddy) file")
    if not clips:
        raise DatasetError(f"{source}: no videos found")
    return clips


def fixture_clips() -> list[VideoClip]:
    """The committed fixture clips (labeled, STU style)."""
    return load_csv(paths.FIXTURES_DIR / "clips" / "manifest.csv")


def describe(clips: list[VideoClip]) -> dict[str, Any]:
    labels: dict[str, int] = {}
    for c in clips:
        labels[str(c.label)] = labels.get(str(c.label), 0) + 1
    return {"clips": len(clips), "labels": labels}
