"""A self-contained HTML page for one audit report: verdict, numbers, and the worst samples' overlays.

The page opens from disk without a server: overlays are embedded as base64 PNGs, there is no script
and no external style sheet. Every text that comes from a report (class names, sample ids, flags,
paths) is HTML-escaped. Like :mod:`cam_audit.report`, this module imports no torch: it renders a report
read back with :meth:`~cam_audit.report.AuditReport.from_json` and PNG files written by
``cam-audit audit``.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any, Union

import pandas as pd

from cam_audit.errors import CamAuditError
from cam_audit.keys import CARD_COLUMNS, HEADLINE_KEYS, SUMMARY_KEYS, is_count
from cam_audit.render.cues_html import CUE_STYLE, CueImages, cues_section
from cam_audit.report import AuditReport, Comparison
from cam_audit.report.atomic import write_atomic

#: Per-sample numbers shown under each overlay: the registry's card columns and the target's probability.
SAMPLE_KEYS = (*CARD_COLUMNS, "confidence")
#: Per-class columns shown in the class table: how many samples, then the headline scores.
CLASS_KEYS = ("n_samples", *HEADLINE_KEYS)
#: Order of the summary table: the headline scores first, then the rest in report order.
SUMMARY_ORDER = tuple(dict.fromkeys((*HEADLINE_KEYS, *SUMMARY_KEYS)))
#: PNG of each sample's overlay (bytes or a file path), keyed by the sample's ``index``.
Overlays = Mapping[int, Union[bytes, str, "os.PathLike[str]"]]

#: Report meta data shown in the header, in this order, when present.
META_KEYS = ("model_class", "checkpoint", "epoch", "global_step", "target_layer", "method", "target", "task",
             "model_fingerprint", "probe_fingerprint", "seconds")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d1d1f; background: #fafafa; }
h1 { margin: 0 0 8px 0; font-size: 24px; }
h2 { margin-top: 28px; font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
.verdict { display: inline-block; padding: 4px 12px; border-radius: 4px; color: white; font-weight: bold; }
.pass { background: #1a7f37; } .fail { background: #c62828; }
table { border-collapse: collapse; margin: 8px 0; background: white; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; font-size: 13px; }
th { background: #eef; } td.name, th.name { text-align: left; }
ul.flags li { color: #b71c1c; margin: 2px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: white; border: 1px solid #ccc; border-radius: 4px; padding: 8px; font-size: 12px; }
.card img { display: block; image-rendering: pixelated; max-width: 420px; }
.card .missing { width: 200px; height: 90px; background: #eee; color: #777; padding: 8px; }
.wide { overflow-x: auto; } .meta td { text-align: left; } .legend { font-size: 13px; color: #444; }
.object { color: #1a9f2a; font-weight: bold; } .spurious { color: #d010c0; font-weight: bold; }
tr.regression td { background: #fde0e0; } tr.worse td { background: #fff4e0; }
tr.better td { background: #e3f5e6; } .pair { display: flex; gap: 6px; }
.pair figure { margin: 0; } .pair figcaption { font-size: 11px; color: #555; }
""" + CUE_STYLE


def render_html(
    report: AuditReport,
    overlays: Mapping[int, bytes | str | os.PathLike] | None = None,
    worst: int = 8,
    title: str | None = None,
    comparison: Comparison | None = None,
    baseline_overlays: Mapping[int, bytes | str | os.PathLike] | None = None,
    cue_images: CueImages | None = None,
) -> str:
    """The report as one HTML page.

    Args:
        report: the audit report.
        overlays: PNG of each sample's overlay (bytes or a file path), keyed by the sample's ``index``
            column; samples without one get a placeholder.
        worst: how many samples to show in each of the two lists: lowest ``focus_lift`` and highest
            ``spurious_lift``.
        title: the page title (default: the model class and the verdict).
        comparison: this report against a champion's (:meth:`AuditReport.compare`): shown after the
            flags, with the samples that got most worse (see :mod:`cam_audit.render.compare_html`).
        baseline_overlays: the champion's overlay PNGs by probe index, shown beside the candidate's.
        cue_images: a discovery audit's gallery PNG of each cue (bytes or a file path) by cue number,
            shown in the "Cues found" section (:mod:`cam_audit.render.cues_html`), which a report of a
            discovery audit (``meta["discover"]``) or with a cue table gets.

    Returns:
        The page as a string.

    Raises:
        CamAuditError: ``worst`` is negative.

    >>> from cam_audit.report import ShortcutPolicy
    >>> policy = ShortcutPolicy(max_spurious_lift=2.0)
    >>> summary = {"focus_lift": 1.2, "spurious_lift": 3.0, "spurious_mass": 0.3, "n_samples": 8,
    ...            "n_degenerate": 0, "focus": 0.2}
    >>> report = AuditReport(summary, pd.DataFrame(), pd.DataFrame(), policy.evaluate(summary), policy,
    ...                      {"model_class": "<Net>"})
    >>> page = render_html(report)
    >>> "SHORTCUT" in page, "&lt;Net&gt;" in page, "<Net>" in page
    (True, True, False)
    """
    if worst < 0:
        raise CamAuditError(f"worst must be >= 0 (samples shown per list), got {worst}")
    overlays = overlays or {}
    passed = report.verdict.passed
    badge = report.verdict.outcome.upper()
    model = str(report.meta.get("model_class", "model"))
    title = title if title is not None else f"cam_audit: {model} - {badge}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p><span class="verdict {"pass" if passed else "fail"}">{badge}</span></p>',
        _flags(report),
        *(_comparison(comparison, overlays, baseline_overlays, worst) if comparison is not None else []),
        "<h2>Summary</h2>",
        _summary_table(report.summary),
        _meta_table(report.meta),
        "<h2>Policy</h2>",
        _policy_table(report.policy.to_dict()),
        "<h2>Per class</h2>",
        _class_table(report.per_class),
    ]
    if report.meta.get("discover") or len(report.cues):
        parts += cues_section(report.cues, report.summary, cue_images or {}, report.policy.min_cue_samples)
    samples = report.samples
    if len(samples) and worst:
        names = [str(i) for i in report.per_class.index] if len(report.per_class) else []
        parts += [
            "<h2>Lowest focus_lift</h2>",
            '<p class="legend">Each card: the probe image and its Grad-CAM map (scaled to its own maximum; '
            'colour bar on the right). <span class="object">Green</span>: object region, '
            '<span class="spurious">magenta</span>: spurious region.</p>',
            _cards(_lowest(samples, "focus_lift", worst), overlays, names),
        ]
        if "spurious_lift" in samples and samples["spurious_lift"].notna().any():
            parts += [
                "<h2>Highest spurious_lift</h2>",
                _cards(_highest(samples, "spurious_lift", worst), overlays, names),
            ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(
    report: AuditReport,
    path: str | os.PathLike,
    overlays: Mapping[int, bytes | str | os.PathLike] | None = None,
    worst: int = 8,
    title: str | None = None,
    comparison: Comparison | None = None,
    baseline_overlays: Mapping[int, bytes | str | os.PathLike] | None = None,
    cue_images: CueImages | None = None,
) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8); returns the path."""
    page = render_html(report, overlays, worst=worst, title=title, comparison=comparison,
                       baseline_overlays=baseline_overlays, cue_images=cue_images)
    return write_atomic(path, page)  # UTF-8, replaced whole


def _comparison(comparison: Comparison, overlays: Overlays, baseline_overlays: Overlays | None,
                worst: int) -> list[str]:
    from cam_audit.render.compare_html import comparison_section

    return comparison_section(comparison, overlays, baseline_overlays, worst)


def _flags(report: AuditReport) -> str:
    if not report.verdict.flags:
        return "<p>No rule of the policy failed.</p>"
    items = "".join(f"<li>{escape(flag)}</li>" for flag in report.verdict.flags)
    return f'<ul class="flags">{items}</ul>'


def _summary_table(summary: Mapping[str, Any]) -> str:
    keys = [k for k in SUMMARY_ORDER if k in summary] + [k for k in summary if k not in SUMMARY_ORDER]
    head = "".join(f"<th>{escape(str(k))}</th>" for k in keys)
    row = "".join(f"<td>{_number(summary[k], count=is_count(k))}</td>" for k in keys)
    return f'<div class="wide"><table class="summary"><tr>{head}</tr><tr>{row}</tr></table></div>'


def _meta_table(meta: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><th class="name">{escape(k)}</th><td>{escape(_text(meta[k]))}</td></tr>'
        for k in META_KEYS
        if meta.get(k) is not None
    )
    return f'<table class="meta">{rows}</table>' if rows else ""


def _policy_table(policy: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><th class="name">{escape(str(k))}</th><td>{escape(_text(v, "off"))}</td></tr>'
        for k, v in policy.items()
    )
    return f'<table class="policy">{rows}</table>'


def _class_table(per_class: pd.DataFrame) -> str:
    if not len(per_class):
        return "<p>No per-class numbers.</p>"
    keys = [k for k in CLASS_KEYS if k in per_class.columns]
    head = '<th class="name">class</th>' + "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = "".join(
        f'<tr><td class="name">{escape(str(name))}</td>'
        + "".join(f"<td>{_number(row[k], count=is_count(k))}</td>" for k in keys)
        + "</tr>"
        for name, row in per_class.iterrows()
    )
    return f'<table class="per-class"><tr>{head}</tr>{rows}</table>'


def _cards(rows: pd.DataFrame, overlays: Overlays, names: Sequence[str]) -> str:
    if not len(rows):
        return "<p>No scored samples.</p>"
    cards = []
    for _, row in rows.iterrows():
        index = int(row["index"]) if "index" in row else -1
        image = overlays.get(index)
        picture = (
            f'<img alt="overlay of sample {escape(str(row.get("sample_id", index)))}" '
            f'src="data:image/png;base64,{_base64(image)}">'
            if image is not None
            else '<div class="missing">no overlay</div>'
        )
        label = str(row["class"]) if "class" in row else _class_name(row.get("label"), names)
        numbers = "".join(
            f"<tr><th class='name'>{k}</th><td>{_number(row[k])}</td></tr>" for k in SAMPLE_KEYS if k in row
        )
        cards.append(
            '<div class="card">'
            + picture
            + f"<b>{escape(str(row.get('sample_id', index)))}</b> (#{index})<br>"
            + f"class {escape(label)}, predicted {escape(_class_name(row.get('prediction'), names))}"
            + f"<table>{numbers}</table></div>"
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _lowest(samples: pd.DataFrame, key: str, n: int) -> pd.DataFrame:
    scored = samples[samples[key].notna()] if key in samples else samples.iloc[:0]
    return scored.sort_values([key, "index"] if "index" in scored else key, kind="stable").head(n)


def _highest(samples: pd.DataFrame, key: str, n: int) -> pd.DataFrame:
    scored = samples[samples[key].notna()]
    order = scored.sort_values(key, ascending=False, kind="stable")
    return order.head(n)


def _class_name(value: Any, names: Sequence[str]) -> str:
    try:
        index = int(value)
    except (TypeError, ValueError):
        return "?"
    return names[index] if 0 <= index < len(names) else str(index)


def _base64(image: bytes | str | os.PathLike) -> str:
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return base64.b64encode(data).decode("ascii")


def _number(value: Any, count: bool = False) -> str:
    """Three decimals, ``n/a`` for NaN; counts (``count=True``) as whole numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return escape(str(value))
    if math.isnan(number):
        return "n/a"
    return f"{number:.0f}" if count else f"{number:.3f}"


def _text(value: Any, none: str = "") -> str:
    if value is None:
        return none
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


__all__ = ["render_html", "write_html"]
