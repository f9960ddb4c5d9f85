"""The audit page's "Cues found" section: one block per cue, confirmed first, with its tests, its
controls, its p-values and its gallery; bg_gap in the summary; and the page with a gallery in a browser."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from cam_audit.render import save_png
from cam_audit.render.html import render_html, write_html
from helpers.cues import cue_row, discovery_report

CHROMIUM = Path("/usr/bin/chromium")
#: pure green: no heatmap, outline or style colour of the page comes near it
GALLERY_GREEN = (0, 255, 0)

WEAK = cue_row(0, "<b>disc</b>", 0, n_samples=30, fill=(2, 1, 30), where="centre, about 9x9 px")
STRONG = cue_row(1, "square", 1, n_samples=12, fill=(0, 0, 12), paste=(10, 0, 12),
                 where="bottom-right corner, about 6x6 px", box=(56.0, 57.0, 62.0, 63.0))  # fmt: skip
SMALL = cue_row(2, "triangle", 2, n_samples=3, fill=(0, 0, 0))


@pytest.fixture()
def gallery(tmp_path) -> Path:
    image = torch.zeros(3, 120, 300)
    image[1] = 1.0
    return save_png(image, tmp_path / "cues" / "cue_1.png")


def _blocks(page: str) -> list[str]:
    section = page.split("<h2>Cues found</h2>")[1].split("<h2>")[0]
    return section.split('<div class="cue">')[1:]


def test_each_cue_is_a_block_confirmed_first_with_its_tests_and_gallery(gallery):
    report = discovery_report([WEAK, STRONG, SMALL], bg_gap=0.25)
    page = render_html(report, cue_images={1: gallery})
    assert "3 candidate cue(s), <b>1 confirmed</b>" in page
    first, second, third = _blocks(page)
    assert first.startswith("<h3>cue 1: class square &mdash; <span class=\"confirmed\">confirmed</span></h3>")
    place = "bottom-right corner, about 6x6 px (typical box x_min 56, y_min 57, x_max 62, y_max 63)"
    assert f"{place}; 12 samples" in first
    cells = re.findall(r"<td>([^<]*)</td>", first.split("paste: moved to the class")[1])
    assert cells[:6] == ["83%", "0%", "12", "10", "0", "&lt; 0.001"]  # rate, control, pairs, only, only, p
    shown = re.search(r'src="data:image/png;base64,([^"]+)"', first).group(1)
    assert base64.b64decode(shown) == gallery.read_bytes()
    # the larger unconfirmed cue next; its class name is escaped
    assert second.startswith("<h3>cue 0: class &lt;b&gt;disc&lt;/b&gt; &mdash; "
                             '<span class="unconfirmed">not confirmed</span></h3>')
    assert re.findall(r"<td>([^<]*)</td>", second.split("fill: decision flips")[1])[:6] == [
        "7%", "3%", "30", "2", "1", "0.500"
    ]
    assert "paste: moved to the class</td><td colspan='6'>not tested" in second
    assert "No gallery: this cue was not tested (fewer than 5 samples)" in third
    assert "<b>disc</b>" not in page


def test_bg_gap_is_explained_and_in_the_summary_table():
    page = render_html(discovery_report([], bg_gap=0.25))
    assert (
        "<b>bg_gap 0.250</b>: with each object moved onto a background of its own class the model is right "
        "95% of the time, onto a background of another class 70%"
    ) in page
    summary = page.split('<table class="summary">')[1].split("</table>")[0]
    heads, values = re.findall(r"<th>([^<]*)</th>", summary), re.findall(r"<td>([^<]*)</td>", summary)
    assert dict(zip(heads, values, strict=True))["bg_gap"] == "0.250"
    assert "No candidate cue off the object regions." in page


def test_no_section_without_discovery():
    report = discovery_report([])
    report.meta["discover"] = False
    assert "Cues found" not in render_html(report)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium: apt-get install -y chromium")
def test_the_page_with_a_cue_gallery_renders_in_headless_chromium(gallery, tmp_path):
    report = discovery_report([STRONG], bg_gap=0.3)
    page = write_html(report, tmp_path / "index.html", cue_images={1: gallery})
    shot = tmp_path / "screenshot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,3000"]
    done = subprocess.run([str(CHROMIUM), *flags, page.resolve().as_uri()], capture_output=True, timeout=180)
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    green = sum(count for count, rgb in image.getcolors(maxcolors=1 << 22) if rgb == GALLERY_GREEN)
    assert green == 300 * 120  # the whole gallery is on screen, at its own size
    confirmed = (0xB7, 0x1C, 0x1C)  # the "confirmed" label's colour: the cue style sheet was applied
    assert any(rgb == confirmed for _, rgb in image.getcolors(maxcolors=1 << 22))
