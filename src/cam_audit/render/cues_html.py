"""The "Cues found" section of the audit page: each cue a discovery audit found off the object, the
interventions that tested it against its matched control, and its gallery.

Torch-free, like :mod:`cam_audit.render.html`: it renders the cue table of a report read back from JSON
and gallery PNGs written by ``cam-audit audit`` (``cues/cue_<n>.png``).
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

#: PNG of each cue's gallery (bytes or a file path), keyed by the cue number.
CueImages = Mapping[int, "bytes | str | os.PathLike[str]"]

CUE_STYLE = """
.cue { background: white; border: 1px solid #ccc; border-radius: 4px; padding: 8px; margin: 10px 0; }
.cue h3 { margin: 0 0 6px 0; font-size: 15px; } .cue img { display: block; image-rendering: pixelated; }
.confirmed { color: #b71c1c; font-weight: bold; } .unconfirmed { color: #555; }
"""

_LEGEND = (
    '<p class="legend">Hot spots of the maps off the object regions, grouped by class and place. Each cue is '
    "tested twice against a matched control region of the same size, elsewhere off the object of the same "
    "image: <i>fill</i> (blur it away: does the decision flip?) and <i>paste</i> (copy it into an image of "
    "another class: does the model move to the cue's class?). A cue is confirmed when one test moves clearly "
    "more samples than its control (one-sided exact test). Gallery, top row: crops around the spot with "
    'the map (<span class="spurious">magenta</span>: the spot); bottom row: images of other classes with '
    "the cue pasted that the model moved to the cue's class, with that class's map.</p>"
)


def cue_order(cues: pd.DataFrame) -> list[int]:
    """Cue numbers, the confirmed first, then the larger (more samples), then by number."""
    if cues.empty:
        return []
    ranked = cues.assign(_confirmed=cues["confirmed"].astype(bool))
    ranked = ranked.sort_values(["_confirmed", "n_samples", "cue"], ascending=[False, False, True])
    return [int(n) for n in ranked["cue"]]


def cue_lines(row: Mapping[Any, Any]) -> tuple[str, str]:
    """Two short lines about a cue (the gallery's caption): what and where, then the tests' rates.

    >>> row = {"cue": 0, "class": "disc", "where": "top-left corner, about 8x8 px", "n_samples": 12,
    ...        "confirmed": True, "n_fill": 12, "flip_rate": 0.5, "control_flip_rate": 0.0,
    ...        "fill_p_value": 0.0005, "n_paste": 0, "paste_rate": float("nan"),
    ...        "control_paste_rate": float("nan"), "paste_p_value": float("nan")}
    >>> for line in cue_lines(row):
    ...     print(line)
    cue 0 'disc' CONFIRMED: top-left corner, about 8x8 px (12 samples)
    fill flips 50% (control 0%, p < 0.001); paste not tested
    """
    state = "CONFIRMED" if bool(row["confirmed"]) else "not confirmed"
    head = f"cue {int(row['cue'])} '{row['class']}' {state}: {row['where']} ({int(row['n_samples'])} samples)"
    tests = []
    for name, verb, rate in (("fill", "flips", "flip_rate"), ("paste", "moves", "paste_rate")):
        if int(row[f"n_{name}"]):
            tests.append(
                f"{name} {verb} {float(row[rate]):.0%} (control {float(row[f'control_{rate}']):.0%}, "
                f"p {p_text(row[f'{name}_p_value'])})"
            )
        else:
            tests.append(f"{name} not tested")
    return head, "; ".join(tests)


def p_text(value: Any) -> str:
    """A p-value as ``< 0.001`` or ``= 0.012`` (``n/a`` for NaN)."""
    number = float(value)
    if math.isnan(number):
        return "n/a"
    return "< 0.001" if number < 0.001 else f"= {number:.3f}"


def cues_section(
    cues: pd.DataFrame, summary: Mapping[str, Any], images: CueImages, min_samples: int | None = None
) -> list[str]:
    """The page's "Cues found" section: the legend, ``bg_gap``, and one block per cue (confirmed first).

    Args:
        cues: the report's cue table (:data:`cam_audit.report.cues.CUE_COLUMNS`).
        summary: the report's summary (``bg_gap``, ``bg_acc_same``, ``bg_acc_other``).
        images: each cue's gallery PNG by cue number; a cue without one was not tested.
        min_samples: the policy's ``min_cue_samples``, named where a cue was too small to be tested.
    """
    parts = ["<h2>Cues found</h2>", _LEGEND, _background(summary)]
    if cues.empty:
        return [*parts, "<p>No candidate cue off the object regions.</p>"]
    confirmed = int(cues["confirmed"].astype(bool).sum())
    parts.append(f"<p>{len(cues)} candidate cue(s), <b>{confirmed} confirmed</b>.</p>")
    rows = {int(r["cue"]): r for r in cues.to_dict("records")}
    for number in cue_order(cues):
        parts.append(_cue_block(rows[number], images.get(number), min_samples))
    return parts


def _background(summary: Mapping[str, Any]) -> str:
    gap = _float(summary.get("bg_gap"))
    if math.isnan(gap):
        return "<p>bg_gap: n/a (no object had a background of its own class and of another to move onto).</p>"
    same, other = _float(summary.get("bg_acc_same")), _float(summary.get("bg_acc_other"))
    return (
        f"<p><b>bg_gap {gap:.3f}</b>: with each object moved onto a background of its own class the model is "
        f"right {same:.0%} of the time, onto a background of another class {other:.0%} "
        "(objects removed from both backgrounds first; near 0: the background does not decide).</p>"
    )


def _cue_block(
    row: Mapping[Any, Any], image: bytes | str | os.PathLike | None, min_samples: int | None
) -> str:
    state = (
        '<span class="confirmed">confirmed</span>'
        if bool(row["confirmed"])
        else '<span class="unconfirmed">not confirmed</span>'
    )
    box = ", ".join(f"{k} {float(row[k]):.0f}" for k in ("x_min", "y_min", "x_max", "y_max"))
    head = (
        f"<h3>cue {int(row['cue'])}: class {escape(str(row['class']))} &mdash; {state}</h3>"
        f"<p>{escape(str(row['where']))} (typical box {box}); {int(row['n_samples'])} samples</p>"
    )
    table = (
        "<table><tr><th class='name'>test</th><th>rate</th><th>control</th><th>samples</th>"
        "<th>only the cue</th><th>only the control</th><th>p-value</th></tr>"
        + _test_row("fill: decision flips", row, "fill", "flip_rate")
        + _test_row("paste: moved to the class", row, "paste", "paste_rate")
        + "</table>"
    )
    if image is not None:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        picture = (
            f'<img alt="gallery of cue {int(row["cue"])}" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'
        )
    else:
        few = f" (fewer than {min_samples} samples)" if min_samples is not None else ""
        picture = f'<p class="legend">No gallery: this cue was not tested{few}.</p>'
    return f'<div class="cue">{head}{table}{picture}</div>'


def _test_row(name: str, row: Mapping[Any, Any], prefix: str, rate: str) -> str:
    n = int(row[f"n_{prefix}"])
    if not n:
        return f"<tr><td class='name'>{name}</td><td colspan='6'>not tested</td></tr>"
    cells = (
        f"{float(row[rate]):.0%}", f"{float(row[f'control_{rate}']):.0%}", str(n),
        str(int(row[f"{prefix}_only"])), str(int(row[f"control_{prefix}_only"])),
        escape(p_text(row[f"{prefix}_p_value"]).lstrip("= ")),
    )  # fmt: skip
    return f"<tr><td class='name'>{name}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


__all__ = ["CUE_STYLE", "CueImages", "cue_lines", "cue_order", "cues_section", "p_text"]
