"""A :class:`~cam_audit.report.compare.Comparison` in words: sentences, terminal lines and Markdown.

Torch-free. Every sentence carries its numbers: both values, the change as a share of the baseline's
value, the bootstrap interval of that change and the p-value, e.g.
``focus_lift 4.15 vs 5.17 (-20%, 95% CI -23% to -17%, p < 0.001): the candidate is worse than the
champion (...)`` (candidate first, champion second).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from cam_audit import keys
from cam_audit.report.compare import relative
from cam_audit.report.policy import Finding, Verdict

if TYPE_CHECKING:
    from cam_audit.report.compare import Comparison

#: Verdicts of rows worth a sentence even when their score is not judged.
_NOTABLE = ("regression", "worse", "better")


def row_sentences(table: pd.DataFrame, settings: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(findings, reasons)``: a sentence for each judged probe-wide row and each notable row; the
    sentences of ``"regression"`` rows are also the reasons not to promote."""
    findings, reasons = [], []
    for row in table.itertuples(index=False):
        if row.verdict in _NOTABLE or (row.judged and row.scope == "probe"):
            sentence = row_sentence(row, settings)
            findings.append(sentence)
            if row.verdict == "regression":
                reasons.append(sentence)
    return findings, reasons


def row_sentence(row: Any, settings: Mapping[str, Any]) -> str:
    """One row of the comparison table as a sentence with its numbers."""
    entry = keys.score(row.score)
    where = "" if row.scope == "probe" else f" for class '{row.scope}'"
    if math.isnan(row.delta):
        return f"{row.score}{where}: no sample has a value in both reports, so it is not compared"
    shares = [relative(v, row.baseline) for v in (row.delta, row.ci_low, row.ci_high)]
    if all(math.isfinite(v) for v in shares):
        change, low, high = (f"{v:+.0%}" for v in shares)
    else:  # the baseline's value is 0 or missing: say the change itself
        change, low, high = (f"{v:+.3g}" for v in (row.delta, row.ci_low, row.ci_high))
    numbers = (
        f"{row.score}{where} {value_text(row.candidate)} vs {value_text(row.baseline)} ({change}, "
        f"{settings['confidence']:.0%} CI {low} to {high}, {p_text(row.p_value)})"
    )
    better = "higher" if entry.higher_is_better else "lower"
    allowed = settings["max_regression"]
    if row.verdict in ("regression", "worse"):
        tail = f"the candidate is worse than the champion ({entry.description}; {better} is better)"
        if row.verdict == "worse":
            tail += "; reported, not judged"
        elif allowed:
            tail += f"; more than the {allowed:.0%} allowed"
    elif row.verdict == "better":
        tail = f"the candidate is better than the champion ({entry.description}; {better} is better)"
    elif abs(shares[0]) > allowed:
        tail = f"not significant at level {settings['level']:g}"
    else:
        tail = f"within the {allowed:.0%} allowed"
    return f"{numbers}: {tail}"


def flag_sentences(candidate: Verdict, new_flags: tuple[Finding, ...]) -> tuple[list[str], list[str]]:
    """``(findings, reasons)`` for the candidate's policy flags: each one stops the promotion."""
    new = {id(f) for f in new_flags}
    sentences = [
        f"new flag {f.rule}: {f.message}" if id(f) in new else f"fails the policy, like the champion, "
        f"{f.rule}: {f.message}"
        for f in candidate.findings
    ]
    return sentences, list(sentences)


def value_text(value: float) -> str:
    """A score for reading: two decimals from 1 up, three below, significant digits under 0.01.

    >>> value_text(5.1734), value_text(0.1541), value_text(0.0000084), value_text(0.0)
    ('5.17', '0.154', '8.4e-06', '0.00')
    """
    if math.isnan(value):
        return "n/a"
    size = abs(value)
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.3f}" if size >= 0.01 else f"{value:.2g}"


def p_text(p: float) -> str:
    """``p = 0.043``, ``p < 0.001``, or ``p n/a``.

    >>> p_text(0.04321), p_text(1e-7), p_text(float("nan"))
    ('p = 0.043', 'p < 0.001', 'p n/a')
    """
    if math.isnan(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def p_cell(p: float) -> str:
    """The p-value for a table cell: ``0.043``, ``< 0.001`` or ``n/a``."""
    return p_text(p).removeprefix("p = ").removeprefix("p ")


def text_lines(comparison: Comparison, candidate: str = "candidate", baseline: str = "champion") -> list[str]:
    """The decision, then the reasons (or, when it promotes, the findings), then anything else reported."""
    n = comparison.settings["n_pairs"]
    if comparison.passed:
        lines = [f"PROMOTE {candidate} over {baseline} ({n} paired samples)"]
        return lines + [f"  {s}" for s in comparison.findings]
    lines = [f"DO NOT PROMOTE {candidate} over {baseline}: {len(comparison.reasons)} reason(s) ({n} paired "
             "samples)"]
    lines += [f"  {s}" for s in comparison.reasons]
    others = [s for s in comparison.findings if s not in comparison.reasons]
    if others:
        lines += ["also reported:", *(f"  {s}" for s in others)]
    return lines


def markdown(comparison: Comparison, candidate: str = "candidate", baseline: str = "champion") -> str:
    """A table and the reasons, fit for a pull-request comment.

    Rows: every judged row, every score's probe-wide row, and each class row that is not ``"ok"``.
    """
    settings = comparison.settings
    decision = "**promote**" if comparison.passed else "**do not promote**"
    judged = ", ".join(f"`{s}`" for s in settings["scores"])
    lines = [
        f"### cam_audit: {decision} `{_cell(candidate)}` (champion: `{_cell(baseline)}`)",
        "",
        f"{settings['n_pairs']} paired probe samples. Judged: {judged} (a fall of more than "
        f"{settings['max_regression']:.0%} of the champion's value that a paired sign-flip test finds "
        f"significant at level {settings['level']:g}, Holm across judged rows). Delta: candidate minus "
        f"champion, mean over samples, with its {settings['confidence']:.0%} bootstrap interval.",
        "",
        "| score | scope | champion | candidate | delta | CI | p | verdict |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for row in comparison.table.itertuples(index=False):
        if row.judged or row.scope == "probe" or row.verdict in _NOTABLE:
            lines.append(_markdown_row(row))
    if comparison.reasons:
        lines += ["", "**Why not:**", *(f"- {_cell(s)}" for s in comparison.reasons)]
    if comparison.new_flags:
        lines += ["", "**New flags** (the champion does not have them):",
                  *(f"- {_cell(f.message)}" for f in comparison.new_flags)]
    return "\n".join(lines) + "\n"


def _markdown_row(row: Any) -> str:
    name = f"**{row.score}**" if row.judged else row.score
    share = relative(row.delta, row.baseline)
    delta = f"{row.delta:+.3g}" + (f" ({share:+.0%})" if math.isfinite(share) else "")
    ci = f"{row.ci_low:+.3g} to {row.ci_high:+.3g}" if math.isfinite(row.ci_low) else "n/a"
    verdict = f"**{row.verdict}**" if row.verdict == "regression" else row.verdict
    cells = [name, _cell(row.scope), value_text(row.baseline), value_text(row.candidate),
             delta if math.isfinite(row.delta) else "n/a", ci, p_cell(row.p_value), verdict]
    return "| " + " | ".join(cells) + " |"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell or list item (pipes escaped, one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


__all__ = [
    "flag_sentences",
    "markdown",
    "p_cell",
    "p_text",
    "row_sentence",
    "row_sentences",
    "text_lines",
    "value_text",
]
