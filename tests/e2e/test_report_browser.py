"""report.html in a real browser: Debian's chromium, headless, renders the page of real run folders
(captured from runs on the local fleet, tests/fixtures/run_folders/); the page must show its verdict and
charts, log nothing to the console, and not be blank."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from pathlib import Path

import pytest

from controller.htmlreport import write_report

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "run_folders"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (make setup installs it)")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless chromium run with nothing reaching out (no sync, updates or background fetches)."""
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90)


def console_messages(stderr: str) -> list[str]:
    """What the page logged: every console message (errors, failed loads, warnings) shows as CONSOLE."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit PNG, unfiltered: enough to tell blank from not."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, bpp)]


@pytest.fixture(params=["connection-storm", "stream-no-significant", "storm-current-format"])
def run_folder(request, tmp_path) -> Path:
    folder = tmp_path / request.param
    shutil.copytree(FIXTURES / request.param, folder)
    return folder


def test_report_renders_in_chromium_with_its_verdict_and_charts(run_folder, tmp_path):
    page = write_report(run_folder)
    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    import json

    verdict = json.loads((run_folder / "result.json").read_text())["verdict"]
    text = re.sub(r"<[^>]+>", "", dom.stdout)
    assert verdict in text.replace("&amp;", "&")
    for heading in ("What to keep", "Original against best", "best so far", "Each knob against the result",
                    "Which knobs mattered", "The plan", "The hosts"):
        assert heading in text
    assert dom.stdout.count("<svg") >= 4  # A/B, best so far, one per knob, metrics

    shot = tmp_path / "shot.png"
    r = chromium(page, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1100,1400")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1100, 1400)
    background, count = Counter(pixels).most_common(1)[0]
    assert count / len(pixels) < 0.97, "the page is (nearly) one colour: blank"
    assert len(set(pixels)) > 50  # text, charts, colours: not a placeholder


def test_the_console_check_sees_a_script_error(tmp_path):
    """The oracle itself: a page that throws is caught by the same check the report passes."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>undefinedFunction()</script>")
    r = chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("undefinedFunction" in line for line in console_messages(r.stderr))


def test_the_report_is_one_self_contained_file(run_folder):
    html = write_report(run_folder).read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"(src|href)=\"?(https?:)?//", html)
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert svgs
    for svg in svgs:  # each chart is well-formed XML, as an .svg file of its own would have to be
        ET.fromstring(svg)


def test_a_cut_short_run_folder_still_renders(tmp_path):
    """An interrupted run has no result.json and perhaps half a trials line: the page says so."""
    folder = tmp_path / "cut"
    shutil.copytree(FIXTURES / "connection-storm", folder)
    (folder / "result.json").unlink()
    with open(folder / "trials.jsonl", "a") as f:
        f.write('{"host": "h1", "phase": "sea')
    html = write_report(folder).read_text()
    assert "No result: the run was interrupted" in html
    assert "best so far" in html
