"""The "against the champion" section of the audit page: the decision, the comparison table and findings,
and the samples that got most worse, with the candidate's overlay (and the champion's, when given) and
both models' numbers. Torch-free; every text from a report is HTML-escaped. Its styles are the page's
(:mod:`cam_audit.render.html`).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

import pandas as pd

from cam_audit import keys
from cam_audit.render.html import Overlays, _base64, _number
from cam_audit.report import Comparison
from cam_audit.report.compare_text import p_cell, share_cell


def comparison_section(
    comparison: Comparison,
    overlays: Overlays,
    baseline_overlays: Overlays | None = None,
    worst: int = 8,
) -> list[str]:
    """HTML parts: the decision, reasons and findings, the table, and the ``worst`` samples most worse.

    Args:
        comparison: the candidate (this page's report) against the champion.
        overlays: the candidate's overlay PNGs by probe index.
        baseline_overlays: the champion's overlay PNGs by its probe index (e.g. the ``overlays/`` folder
            of its ``cam-audit audit`` run); without them its numbers are shown alone.
        worst: samples shown.
    """
    passed = comparison.passed
    badge = "PROMOTE" if passed else "DO NOT PROMOTE"
    settings = comparison.settings
    judged = ", ".join(settings["scores"])
    parts = [
        "<h2>Against the champion</h2>",
        f'<p><span class="verdict {"pass" if passed else "fail"}">{badge}</span> '
        f"{settings['n_pairs']} paired probe samples; judged: {escape(judged)} (a fall of more than "
        f"{settings['max_regression']:.0%} of the champion's value that a paired sign-flip test finds "
        f"significant at level {settings['level']:g}, Holm across judged rows).</p>",
    ]
    if comparison.reasons:
        parts.append('<ul class="flags">' + "".join(f"<li>{escape(r)}</li>" for r in comparison.reasons)
                     + "</ul>")
    others = [f for f in comparison.findings if f not in comparison.reasons]
    if others:
        parts.append("<ul>" + "".join(f"<li>{escape(f)}</li>" for f in others) + "</ul>")
    parts.append(_table(comparison.table, settings["confidence"]))
    if worst:
        score = settings["scores"][0]
        parts += [
            f"<h2>Most worse than the champion: {escape(score)}</h2>",
            _worse_cards(comparison.worst_samples(worst), overlays, baseline_overlays or {}),
        ]
    return parts


def _table(table: pd.DataFrame, confidence: float) -> str:
    head = "".join(
        f"<th{' class=name' if i < 2 else ''}>{escape(c)}</th>"
        for i, c in enumerate(("score", "scope", "champion", "candidate", "delta", "change",
                               f"{confidence:.0%} CI", "p", "judged", "verdict"))
    )
    rows = []
    table_rows: list[Any] = list(table.itertuples(index=False))  # named tuples of the table's columns
    for row in table_rows:
        cells = [
            f'<td class="name">{escape(row.score)}</td>',
            f'<td class="name">{escape(str(row.scope))}</td>',
            *(f"<td>{_number(v)}</td>" for v in (row.baseline, row.candidate, row.delta)),
            f"<td>{share_cell(row.delta, row.baseline)}</td>",
            f"<td>{_number(row.ci_low)} to {_number(row.ci_high)}</td>",
            f"<td>{escape(p_cell(row.p_value))}</td>",
            f"<td>{'yes' if row.judged else ''}</td>",
            f'<td class="name">{escape(row.verdict)}</td>',
        ]
        rows.append(f'<tr class="{row.verdict.replace(" ", "-")}">' + "".join(cells) + "</tr>")
    return f'<div class="wide"><table class="comparison"><tr>{head}</tr>{"".join(rows)}</table></div>'


def _worse_cards(pairs: pd.DataFrame, overlays: Overlays, baseline_overlays: Overlays) -> str:
    if not len(pairs):
        return "<p>No sample has the judged score in both reports.</p>"
    columns = [c for c in keys.CARD_COLUMNS if f"{c}_delta" in pairs.columns]
    cards = []
    for _, row in pairs.iterrows():
        sample = row["sample_id"]
        pictures = [_figure(overlays, int(row["index"]), "candidate", sample)]
        if baseline_overlays:
            pictures.append(_figure(baseline_overlays, int(row["baseline_index"]), "champion", sample))
        numbers = "".join(
            f"<tr><th class='name'>{escape(c)}</th><td>{_number(row[f'{c}_baseline'])}</td>"
            f"<td>{_number(row[f'{c}_candidate'])}</td><td>{_number(row[f'{c}_delta'])}</td></tr>"
            for c in columns
        )
        cards.append(
            f'<div class="card"><div class="pair">{"".join(pictures)}</div>'
            f"<b>{escape(str(sample))}</b> (#{int(row['index'])}), class {escape(str(row['class']))}"
            f"<table><tr><th></th><th>champion</th><th>candidate</th><th>delta</th></tr>{numbers}</table></div>"
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _figure(overlays: Mapping[int, Any], index: int, who: str, sample_id: Any) -> str:
    image = overlays.get(index)
    picture = (
        f'<img alt="{who} overlay of sample {escape(str(sample_id))}" src="data:image/png;base64,'
        f'{_base64(image)}">'
        if image is not None
        else '<div class="missing">no overlay</div>'
    )
    return f"<figure>{picture}<figcaption>{who}</figcaption></figure>"


__all__ = ["comparison_section"]
