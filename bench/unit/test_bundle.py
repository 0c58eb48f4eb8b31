"""Offline bundles: parts under the limit, checksums, determinism, round trips and refusals.

No network: the wheels are written by hand in tmp_path and found with ``--no-index --find-links``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from core.tools import bundle
from core.tools.bundle import BundleError, BundleIncomplete, Manifest, Requirements

pytestmark = pytest.mark.cpu

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
PART = 96 * 1024


def make_wheel(directory: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal pure-Python wheel (deterministic: fixed zip timestamps) with a valid RECORD."""
    dist = f"{name}-{version}.dist-info"
    files = {**files,
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{dist}/RECORD"] = ("\n".join(record) + f"\n{dist}/RECORD,,\n").encode()
    whl = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for path, data in sorted(files.items()):
            zf.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_STORED)
    return whl


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """Two throwaway packages: one with incompressible ballast (so it spans parts), one tiny."""
    d = tmp_path_factory.mktemp("wheelhouse")
    rng = __import__("random").Random(0)
    make_wheel(d, "vqb_alpha", "1.0", {
        "vqb_alpha/__init__.py": b"VALUE = 'alpha-1.0'\n",
        "vqb_alpha/ballast.bin": rng.randbytes(300_000),
        "vqb_alpha/data/huge_1.json": b"[" + b"0," * 20_000 + b"0]",
    })
    make_wheel(d, "vqb_beta", "2.0", {"vqb_beta/__init__.py": b"from vqb_alpha import VALUE\n"})
    return d


@pytest.fixture(scope="module")
def reqs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reqs") / "tiny.txt"
    path.write_text("# a tiny list\n# bundle-exclude: vqb_alpha/data/huge_*.json\n\n"
                    "vqb-alpha==1.0\nvqb_beta==2.0  # trailing comment\n")
    return path


def make_bundle(reqs: Path, wheelhouse: Path, out: Path, **kw) -> Manifest:
    kw = {"mode": "wheels", "python_version": HERE, "part_size": PART, "find_links": [wheelhouse],
          "no_index": True, "log": lambda _: None, **kw}
    return bundle.build(reqs, out, **kw)


@pytest.fixture(scope="module")
def wheels_bundle(tmp_path_factory, reqs, wheelhouse) -> Path:
    out = tmp_path_factory.mktemp("built") / "tiny"
    make_bundle(reqs, wheelhouse, out)
    return out


def import_from(target: Path, module: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-c", f"import {module} as m; print(m.VALUE, m.__file__)"],
                         capture_output=True, text=True, env=env, cwd=target.parent, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_requirements_read_directives_and_pins(reqs):
    req = Requirements.read(reqs)
    assert req.lines == ("vqb-alpha==1.0", "vqb_beta==2.0")
    assert req.excludes == ("vqb_alpha/data/huge_*.json",)
    assert req.sha256 == hashlib.sha256(reqs.read_bytes()).hexdigest()


def test_requirements_refuse_pip_options(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("-r other.txt\n")
    with pytest.raises(BundleError, match="not supported"):
        Requirements.read(path)


@pytest.mark.parametrize("name, count", [("gpu-tools-cp312.txt", 13),
                                         ("vllm-0.26.0-cp312-manylinux_2_28_x86_64.txt", 95)])
def test_shipped_lists_are_pinned(name, count):
    req = Requirements.read(Path(bundle.__file__).parent.parent / "bundles" / name)
    assert len(req.lines) == count
    assert all("==" in line for line in req.lines)
    assert len({line.split("==")[0].replace("_", "-").lower() for line in req.lines}) == count


def test_parts_under_limit_and_checksums_match(wheels_bundle):
    manifest = Manifest.load(wheels_bundle)
    assert len(manifest.parts) >= 3
    assert all(p["size"] <= PART for p in manifest.parts)
    assert [p["name"] for p in manifest.parts] == sorted(p["name"] for p in manifest.parts)
    joined = hashlib.sha256()
    for part in manifest.parts:
        data = (wheels_bundle / part["name"]).read_bytes()
        assert len(data) == part["size"]
        assert hashlib.sha256(data).hexdigest() == part["sha256"]
        joined.update(data)
    assert joined.hexdigest() == manifest.archive["sha256"]
    assert manifest.total_size == manifest.archive["size"]
    assert {p["name"] for p in manifest.packages} == {"vqb-alpha", "vqb-beta"}
    assert sorted(f.name for f in wheels_bundle.iterdir()) == sorted(
        [bundle.MANIFEST, *(p["name"] for p in manifest.parts)])


@pytest.mark.parametrize("mode, compress", [("wheels", "none"), ("site", "xz")])
def test_same_inputs_give_same_parts(tmp_path, reqs, wheelhouse, mode, compress):
    first = make_bundle(reqs, wheelhouse, tmp_path / "a" / "tiny", mode=mode, compress=compress)
    second = make_bundle(reqs, wheelhouse, tmp_path / "b" / "tiny", mode=mode, compress=compress)
    assert first.parts == second.parts
    manifests = [json.loads((tmp_path / side / "tiny" / bundle.MANIFEST).read_text()) for side in "ab"]
    for m in manifests:
        m.pop("unpack")  # names the bundle's own directory
    assert manifests[0] == manifests[1]
    for part in first.parts:
        assert (tmp_path / "a/tiny" / part["name"]).read_bytes() == (tmp_path / "b/tiny" / part["name"]).read_bytes()


def test_unpack_wheels_round_trip_imports(wheels_bundle, tmp_path):
    target = bundle.unpack(wheels_bundle, tmp_path / "site", log=lambda _: None)
    out = import_from(target, "vqb_beta")
    assert out.startswith("alpha-1.0 ") and str(target) in out
    assert not list(target.glob(".wheels.*"))
    # idempotent: a second run sees the marker and leaves the directory alone
    assert bundle.unpack(wheels_bundle, target, log=lambda _: None) == target


def test_failed_unpack_leaves_no_half_filled_target(wheels_bundle, tmp_path, monkeypatch):
    def broken_pip(*args, **kwargs):
        raise BundleError("pip install of the bundle's wheels failed (exit 1)")

    monkeypatch.setattr("core.tools.bundle.wheels.install_wheels", broken_pip)  # where unpacking looks it up
    with pytest.raises(BundleError, match="pip install"):
        bundle.unpack(wheels_bundle, tmp_path / "site", log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("threads", [None, 1], ids=["xz-program", "python-lzma"])
def test_site_mode_prunes_excludes_and_unpacks(tmp_path, reqs, wheelhouse, threads):
    manifest = make_bundle(reqs, wheelhouse, tmp_path / "tiny", mode="site", threads=threads)
    assert manifest.archive["name"].endswith(".site.tar.xz")
    assert ("single" in manifest.compression["encoder"]) == (threads == 1 or not shutil.which("xz"))
    assert manifest.excluded_bytes > 40_000
    target = bundle.unpack(tmp_path / "tiny", tmp_path / "site", log=lambda _: None)
    assert import_from(target, "vqb_beta").startswith("alpha-1.0 ")
    assert (target / "vqb_alpha" / "ballast.bin").is_file()
    assert not (target / "vqb_alpha" / "data").exists()


def test_corrupt_part_is_named(wheels_bundle, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in wheels_bundle.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    victim = Manifest.load(copy).parts[1]["name"]
    data = bytearray((copy / victim).read_bytes())
    data[100] ^= 0xFF
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"part {victim} .* is corrupt \(sha256"):
        bundle.unpack(copy, tmp_path / "site", log=lambda _: None)
    assert not (tmp_path / "site").exists()
    assert bundle.main(["verify", str(copy)]) == 2


def test_missing_part_is_named(wheels_bundle, tmp_path):
    parts = [p["name"] for p in Manifest.load(wheels_bundle).parts]
    carried = [wheels_bundle / bundle.MANIFEST, *(wheels_bundle / n for n in parts[:-1])]
    with pytest.raises(BundleIncomplete, match=rf"missing: {parts[-1]}\."):
        bundle.unpack(carried, tmp_path / "site", log=lambda _: None)
    assert bundle.main(["verify", *map(str, carried)]) == 3


def test_parts_accumulate_in_a_stage_across_commands(wheels_bundle, tmp_path):
    """Each 'command' carries the manifest and one part; the last one unpacks."""
    parts = [p["name"] for p in Manifest.load(wheels_bundle).parts]
    stage, target = tmp_path / "stage", tmp_path / "site"
    for i, name in enumerate(parts):
        carried = tmp_path / f"cmd{i}"
        carried.mkdir()
        for f in (bundle.MANIFEST, name):
            (carried / f).write_bytes((wheels_bundle / f).read_bytes())
        rc = bundle.main(["unpack", str(carried), "--stage", str(stage), "--target", str(target)])
        assert rc == (0 if i == len(parts) - 1 else 3)
        assert target.exists() == (i == len(parts) - 1)
    assert import_from(target, "vqb_alpha").startswith("alpha-1.0 ")


def test_plan_keeps_each_command_under_the_limit(wheels_bundle, capsys):
    manifest_size = (wheels_bundle / bundle.MANIFEST).stat().st_size
    limit = manifest_size + 2 * PART
    carries = bundle.plan_parts(wheels_bundle, limit)
    assert all(c.size <= limit for c in carries)
    assert all(c.files[0].name == bundle.MANIFEST for c in carries)
    carried = [f.name for c in carries for f in c.files[1:]]
    assert carried == [p["name"] for p in Manifest.load(wheels_bundle).parts]
    assert bundle.main(["plan", str(wheels_bundle), "--limit", str(limit), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["commands"]) == len(carries) and "--stage" in plan["run"]
    with pytest.raises(BundleError, match="smaller --part-size"):
        bundle.plan_parts(wheels_bundle, PART)


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name, kind, link", [
    ("../escape.txt", tarfile.REGTYPE, ""),
    ("/tmp/absolute.txt", tarfile.REGTYPE, ""),
    ("ok/link", tarfile.SYMTYPE, "../../outside"),
    ("dev", tarfile.CHRTYPE, ""),
])
def test_extract_refuses_members_escaping_the_target(tmp_path, name, kind, link):
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, link
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match=r"refusing tar member"):
        bundle.extract(_tar_with(member, b"x"), dest, log=lambda _: None)
    assert not (tmp_path / "escape.txt").exists() and not list(dest.rglob("*"))


def test_wrong_python_is_refused(wheels_bundle, tmp_path):
    manifest = json.loads((wheels_bundle / bundle.MANIFEST).read_text())
    manifest["python_version"] = "2.7"
    other = tmp_path / "other"
    other.mkdir()
    (other / bundle.MANIFEST).write_text(json.dumps(manifest))
    for part in manifest["parts"]:
        (other / part["name"]).symlink_to(wheels_bundle / part["name"])
    with pytest.raises(BundleError, match="for Python 2.7"):
        bundle.unpack(other, tmp_path / "site", log=lambda _: None)


def test_download_failure_names_the_requirement(tmp_path, wheelhouse):
    path = tmp_path / "bad.txt"
    path.write_text("vqb-gamma==9.9\n")
    with pytest.raises(BundleError, match="vqb-gamma"):
        make_bundle(path, wheelhouse, tmp_path / "bad")


@pytest.mark.parametrize("command", ["build", "plan", "verify", "unpack"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        bundle.main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: vqbench bundle " + command in capsys.readouterr().out


def test_parse_size():
    assert bundle.parse_size("58MiB") == 58 * 2**20
    assert bundle.parse_size("64M") == 64 * 2**20
    assert bundle.parse_size("1024") == 1024
    assert bundle.parse_size("1.5GiB") == 3 * 2**29
