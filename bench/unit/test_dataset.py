"""Dataset adapters: STU-style CSV, RoadBuddy-style JSON, plain folders; paths cannot escape."""

from __future__ import annotations

import json

import pytest

from core.base.errors import DatasetError
from core.inputs import dataset

pytestmark = pytest.mark.cpu


def test_fixture_manifest_is_labeled():
    clips = dataset.fixture_clips()
    assert len(clips) == 12
    assert {c.label for c in clips} == {"Normal", "Anomaly"}
    assert all(c.path.is_file() for c in clips)
    assert len({c.id for c in clips}) == 12


def test_csv_manifest(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("Video,Label\nv/a.mp4,abnormal\n")
    (clip,) = dataset.load(tmp_path / "m.csv")
    assert clip.id == "v__a" and clip.label == "abnormal" and clip.path == (tmp_path / "v" / "a.mp4").resolve()


@pytest.mark.parametrize("entry", ["../outside.mp4", "/etc/passwd", "v/../../x.mp4"])
def test_paths_cannot_escape_the_root(tmp_path, entry):
    (tmp_path / "m.csv").write_text(f"video,label\n{entry},Normal\n")
    with pytest.raises(DatasetError, match="escapes the dataset root"):
        dataset.load(tmp_path / "m.csv")


def test_symlink_out_of_root_is_refused(tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.mp4").symlink_to(outside)
    (root / "m.csv").write_text("video\nlink.mp4\n")
    with pytest.raises(DatasetError, match="escapes"):
        dataset.load(root / "m.csv")
    (root / "m.csv").unlink()
    assert dataset.load_folder(root) == []  # the folder scan skips it too


def test_csv_errors_name_file_and_line(tmp_path):
    (tmp_path / "m.csv").write_text("name,label\na.mp4,Normal\n")
    with pytest.raises(DatasetError, match="no 'video' column"):
        dataset.load(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("video,label\na.mp4,Normal\n,Normal\n")
    with pytest.raises(DatasetError, match="line 3"):
        dataset.load(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("video,id\na.mp4,x\nb.mp4,x\n")
    with pytest.raises(DatasetError, match="repeats id 'x'"):
        dataset.load(tmp_path / "m.csv")


def test_roadbuddy_json(tmp_path):
    items = {"data": [{"id": "testa_0001", "video_path": "videos/a.mp4", "question": "Which lane?",
                       "choices": ["A. left", "B. right"], "answer": "B. right", "support_frames": [1.5, 3]}]}
    (tmp_path / "test.json").write_text(json.dumps(items))
    (clip,) = dataset.load(tmp_path / "test.json")
    assert clip.id == "testa_0001" and clip.options == ("A. left", "B. right") and clip.support_frames == (1.5, 3.0)
    items["data"][0]["choices"] = "A. left"
    (tmp_path / "test.json").write_text(json.dumps(items))
    with pytest.raises(DatasetError, match="options must be a list"):
        dataset.load(tmp_path / "test.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        dataset.load(tmp_path / "bad.json")


def test_plain_folder_is_sorted_and_unlabeled(tmp_path):
    for name in ("b.mp4", "a.MKV", "notes.txt", "sub/c.webm"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    clips = dataset.load(tmp_path)
    assert [c.id for c in clips] == ["a", "b", "sub__c"] and all(c.label is None for c in clips)


def test_empty_or_missing_source(tmp_path):
    with pytest.raises(DatasetError, match="no videos"):
        dataset.load(tmp_path)
    with pytest.raises(DatasetError, match="no such"):
        dataset.load(tmp_path / "nope")


def test_fixture_generator_reproduces_the_committed_set(tmp_path):
    import subprocess
    import sys

    from core.base import paths
    from core.inputs import synth

    assert (synth.render_clip("pedestrian", 3) == synth.render_clip("pedestrian", 3)).all()  # bit-exact render
    res = subprocess.run([sys.executable, str(paths.FIXTURES_DIR / "generate.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
