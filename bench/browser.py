"""Check an HTML report the way a reader sees it: screenshot it with headless Chromium, and make sure
every embedded <img> is a PNG that decodes (so the plots really exist, not just their tags).
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

from core.base.errors import VqbenchError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = "apt-get install chromium"


class BrowserError(VqbenchError):
    """No headless browser was found, or it did not produce a screenshot."""


class ImageCheckError(VqbenchError):
    """An <img> in the report is not an embedded PNG that decodes."""


def find_browser() -> str | None:
    """Path of a Chromium-family browser: $VQBENCH_BROWSER, else the first of BROWSERS on PATH."""
    explicit = os.environ.get("VQBENCH_BROWSER")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(html_path: Path | str, png_path: Path | str, *, width: int = 1400, height: int = 2000,
               timeout_s: float = 120.0) -> Path:
    """Render ``html_path`` in headless Chromium and save a ``width`` x ``height`` PNG to ``png_path``."""
    browser = find_browser()
    if browser is None:
        raise BrowserError(f"no headless browser found (looked for $VQBENCH_BROWSER and {', '.join(BROWSERS)}); "
                           f"install one: {INSTALL_HINT}")
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    if not html_path.is_file():
        raise BrowserError(f"{html_path}: no such HTML file to screenshot")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)
    # A fresh profile per call: no shared state between runs, and nothing written to $HOME.
    proc = _headless(browser, [f"--screenshot={png_path}", f"--window-size={width},{height}", html_path.as_uri()],
                     what=f"screenshot {html_path}", timeout_s=timeout_s)
    if not png_path.is_file() or png_path.stat().st_size == 0:
        tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-8:])
        raise BrowserError(f"{browser} exited with {proc.returncode} and wrote no screenshot of {html_path}:\n{tail}")
    return png_path


def _headless(browser: str, args: list[str], *, what: str, timeout_s: float) -> subprocess.CompletedProcess:
    # A fresh profile per call: no shared state between runs, and nothing written to $HOME.
    with tempfile.TemporaryDirectory(prefix="vqbench-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"{browser} took more than {timeout_s:g}s to {what}") from None


_LAYOUT_PROBE = """<script>
window.addEventListener("load", () => {
  const out = [];
  document.querySelectorAll("table").forEach((t, i) => {
    const box = t.parentElement, style = getComputedStyle(box);
    const scrolls = ["auto", "scroll"].includes(style.overflowX) && box.clientWidth < t.scrollWidth;
    const fits = t.getBoundingClientRect().right <= document.documentElement.clientWidth + 0.5;
    out.push([i, Math.round(t.scrollWidth), fits ? "fits" : scrolls ? "scrolls" : "cut"]);
  });
  const pre = document.createElement("pre");
  pre.id = "vqbench-layout";
  pre.textContent = JSON.stringify({viewport: document.documentElement.clientWidth, tables: out});
  document.body.appendChild(pre);
});
</script>"""


def table_layout(html_path: Path | str, *, width: int = 1000, timeout_s: float = 120.0) -> dict:
    """How each <table> of a page lays out in headless Chromium at ``width`` pixels: ``fits`` the
    viewport, ``scrolls`` inside a scrollable box, or is ``cut`` off. Returns
    ``{"viewport": px, "tables": [[index, width px, state], ...]}``."""
    import json
    import re

    browser = find_browser()
    if browser is None:
        raise BrowserError(f"no headless browser found; install one: {INSTALL_HINT}")
    source = Path(html_path).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="vqbench-layout-") as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(source.replace("</body>", _LAYOUT_PROBE + "</body>"), encoding="utf-8")
        proc = _headless(browser, ["--dump-dom", "--virtual-time-budget=5000", f"--window-size={width},1200",
                                   probe.as_uri()], what=f"lay out {html_path}", timeout_s=timeout_s)
    m = re.search(r'<pre id="vqbench-layout">(.*?)</pre>', proc.stdout or "", re.S)
    if not m:
        raise BrowserError(f"{browser} did not run the layout probe on {html_path}: {(proc.stderr or '')[-400:]}")
    import html as html_mod

    return json.loads(html_mod.unescape(m.group(1)))


class _ImgSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def embedded_images(html: str) -> list[str]:
    """The ``src`` of every <img> in ``html``, in document order."""
    parser = _ImgSources()
    parser.feed(html)
    return parser.sources


def check_images(html: str) -> list[tuple[int, int]]:
    """(width, height) of every <img>; raises ImageCheckError unless each is a base64 PNG that decodes."""
    sizes = []
    for i, src in enumerate(embedded_images(html)):
        prefix = "data:image/png;base64,"
        if not src.startswith(prefix):
            raise ImageCheckError(f"<img> #{i + 1} is not an embedded PNG (src starts {src[:40]!r})")
        try:
            data = base64.b64decode(src[len(prefix):], validate=True)
            sizes.append(png_size(data))
        except (ValueError, KeyError, struct.error, zlib.error) as exc:
            raise ImageCheckError(f"<img> #{i + 1} does not decode as PNG: {exc}") from None
    return sizes


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_size(data: bytes) -> tuple[int, int]:
    """Decode a PNG far enough to trust it (chunk CRCs, IHDR, full IDAT inflate); return (width, height)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    pos, chunks, idat = 8, [], b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body, crc = data[pos + 8:pos + 8 + length], data[pos + 8 + length:pos + 12 + length]
        if len(crc) != 4 or zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise ValueError(f"bad or truncated {kind!r} chunk at byte {pos}")
        chunks.append(kind)
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if not chunks or chunks[0] != b"IHDR" or chunks[-1] != b"IEND":
        raise ValueError("IHDR first and IEND last are required")
    raw = zlib.decompress(idat)
    if interlace == 0:
        row = (width * _CHANNELS[color] * depth + 7) // 8 + 1
        if len(raw) != row * height:
            raise ValueError(f"pixel data is {len(raw)} bytes, expected {row * height} for {width}x{height}")
    return width, height
