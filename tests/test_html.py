"""The HTML page: escaped text, the worst samples first, embedded overlays, and a real browser render."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from cam_audit import ShortcutPolicy, audit
from cam_audit.errors import CamAuditError
from cam_audit.render import overlay_grid, save_png
from cam_audit.render.html import render_html, write_html
from cam_audit.synthetic import make_scenes

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A report on 9 scenes with hostile class names and sample ids, and one overlay PNG per sample."""
    folder = tmp_path_factory.mktemp("page")
    from cam_audit.lightning.scenes import SceneClassifier

    torch.manual_seed(0)
    model = SceneClassifier(width=8).eval()
    scenes = make_scenes(9, watermark="correlated", seed=5)
    probe = scenes.to_probe(classes=["<b>disc</b>", "a&b", "tri'angle"])
    overlays = {}

    def keep(batch, maps, rows):
        for i, index in enumerate(batch.indices.tolist()):
            grid = overlay_grid(batch.images[i : i + 1], maps[i : i + 1], batch.regions[i : i + 1],
                                batch.spurious[i : i + 1], ncol=1, scale=3)
            overlays[index] = save_png(grid, folder / f"{index:05d}.png")

    report = audit(model, probe, target_layer="features", batch_size=4, counterfactual=False,
                   policy=ShortcutPolicy(min_focus_lift=100.0, min_accuracy_p=None), on_batch=keep)
    report.samples["sample_id"] = [f"<script>alert({i})</script>" for i in range(len(report.samples))]
    return report, overlays, folder


def test_text_from_the_report_is_escaped(audited):
    report, overlays, _ = audited
    page = render_html(report, overlays)
    assert "<script>" not in page and "&lt;script&gt;alert(0)&lt;/script&gt;" in page
    assert "<b>disc</b>" not in page and "&lt;b&gt;disc&lt;/b&gt;" in page
    assert "a&amp;b" in page
    assert "SHORTCUT" in page and "focus_lift" in page and "&lt; 100.00" in page  # the failed rule


def test_lowest_focus_lift_comes_first_with_its_own_overlay(audited):
    report, overlays, _ = audited
    page = render_html(report, overlays, worst=3)
    section = page.split("<h2>Lowest focus_lift</h2>")[1].split("<h2>")[0]
    shown = [int(i) for i in re.findall(r"\(#(\d+)\)", section)]
    expected = report.samples.sort_values(["focus_lift", "index"])["index"].head(3).tolist()
    assert shown == expected
    first_png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', section).group(1))
    assert first_png == Path(overlays[expected[0]]).read_bytes()
    spurious = page.split("<h2>Highest spurious_lift</h2>")[1]
    top = report.samples.sort_values("spurious_lift", ascending=False)["index"].iloc[0]
    assert re.findall(r"\(#(\d+)\)", spurious)[0] == str(top)


def test_missing_overlays_and_bad_arguments(audited):
    report, _, _ = audited
    page = render_html(report, overlays=None, worst=2)
    assert page.count('class="missing"') == 4 and "data:image/png" not in page
    with pytest.raises(CamAuditError, match="worst must be >= 0"):
        render_html(report, worst=-1)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium: apt-get install -y chromium")
def test_page_renders_in_headless_chromium(audited, tmp_path):
    report, overlays, _ = audited
    page = write_html(report, tmp_path / "index.html", overlays, worst=4)
    shot = tmp_path / "screenshot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000"]
    done = subprocess.run([str(CHROMIUM), *flags, page.resolve().as_uri()], capture_output=True, timeout=180)
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    print(f"\nscreenshot of the audit page: {shot}")
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200  # text, tables and heatmaps, not a blank page
    badge = (0xC6, 0x28, 0x28)  # the red "SHORTCUT" badge: the style sheet was applied
    assert any(sum(abs(a - b) for a, b in zip(rgb, badge, strict=True)) < 12 for _, rgb in colours)
    assert shot.stat().st_size > 10_000


def test_a_caption_wider_than_its_tile_loses_its_end_visibly_and_a_short_one_stays_whole():
    """Captions under the overlay pairs (e.g. the cue gallery's 'triangle->square') are cut to the strip's
    width with a '..' mark, never silently at a fixed number of characters."""
    from PIL import ImageDraw

    from cam_audit.render.overlays import text_strip

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    short, long = "triangle->square", "a-very-long-sample-id-0123456789.png"
    assert draw.textlength(short) < 124 < draw.textlength(long)

    def inked_columns(strip: torch.Tensor) -> int:
        columns = (strip < 0.5).any(dim=0).any(dim=0).nonzero()
        return int(columns.max()) + 1 if len(columns) else 0

    whole = text_strip(short, 128)
    assert inked_columns(whole) == pytest.approx(2 + draw.textlength(short), abs=2)  # all of it written
    cut = text_strip(long, 128)
    assert inked_columns(cut) <= 128 - 2  # it fits
    assert inked_columns(cut) > 100  # and fills the strip rather than stopping at a fixed length
