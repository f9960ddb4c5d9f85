"""A :class:`~cam_audit.report.compare.Comparison` in words: sentences, terminal lines and Markdown.

Torch-free. Every sentence carries its numbers: both values (candidate first, champion second), the
mean paired change as a share of the champion's value, the bootstrap interval of that change on the same
scale, and the p-value, e.g. ``focus_lift 4.15 vs 5.17 (-20%, 95% CI -23% to -17%, p < 0.001): the
candidate is worse than the champion (...)``. Where the champion's value is 0, or so small that the change
is ten times it or more, a share says little and the difference itself is given instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from cam_audit import keys
from cam_audit.report.paired import relative
from cam_audit.report.policy import Finding, Verdict

if TYPE_CHECKING:
    from cam_audit.report.compare import Comparison

#: Verdicts of rows worth a sentence even when their score is not judged.
_NOTABLE = ("regression", "worse", "better")


def row_sentences(table: pd.DataFrame, settings: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(findings, reasons)``: a sentence for each judged score probe-wide, each judged class row that is
    notable (regression or better) and each notable probe-wide row of the other scores (their classes stay
    in the table); the sentences of ``"regression"`` rows are also the reasons not to promote."""
    findings, reasons = [], []
    for row in table.itertuples(index=False):
        notable = row.verdict in _NOTABLE
        if (row.scope == "probe" and (notable or row.judged)) or (row.judged and notable):
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
    change, low, high = _changes(row)
    spec = _spec(row.candidate, row.baseline)
    numbers = (
        f"{row.score}{where} {row.candidate:{spec}} vs {row.baseline:{spec}} ({change}, "
        f"{settings['confidence']:.0%} CI {low} to {high}, {p_text(row.p_value)})"
    )
    better = "higher" if entry.higher_is_better else "lower"
    allowed = settings["max_regression"]
    if row.verdict == "regression":
        tail = f"the candidate is worse than the champion ({entry.description}; {better} is better)"
        tail += f"; more than the {allowed:.0%} allowed" if allowed else ""
    elif row.verdict == "worse":
        tail = f"the candidate is worse than the champion ({better} is better); reported, not judged"
    elif row.verdict == "better":
        tail = f"the candidate is better than the champion ({better} is better)"
    elif abs(relative(row.delta, row.baseline)) > allowed:
        tail = f"not significant at level {settings['level']:g}"
    else:
        tail = f"within the {allowed:.0%} allowed"
    return f"{numbers}: {tail}"


def flag_sentences(candidate: Verdict, new_flags: tuple[Finding, ...]) -> tuple[list[str], list[str]]:
    """``(findings, reasons)`` for the candidate's policy flags: each one stops the promotion."""
    new = {(f.rule, f.scope) for f in new_flags}
    sentences = [_flag_sentence(f, (f.rule, f.scope) in new) for f in candidate.findings]
    return sentences, list(sentences)


def _flag_sentence(finding: Finding, new: bool) -> str:
    if new:
        return f"new flag {finding.rule}: {finding.message}"
    return f"fails the policy, like the champion, {finding.rule}: {finding.message}"


def value_text(value: float, *others: float) -> str:
    """A score for reading, with as many decimals as the largest of it and ``others`` needs: two from 1
    up, three from 0.01, else two significant digits.

    >>> value_text(5.1734), value_text(0.1541), value_text(0.0, 0.917), value_text(0.0000084)
    ('5.17', '0.154', '0.000', '8.4e-06')
    """
    return "n/a" if math.isnan(value) else f"{value:{_spec(value, *others)}}"


def _spec(*values: float) -> str:
    size = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return ".2f" if size >= 1 or size == 0 else ".3f" if size >= 0.01 else ".2g"


#: Shares of the champion's value beyond this (1000%) say little: the change is given as a difference.
MAX_SHARE = 10.0


def told_share(delta: float, baseline: float) -> float | None:
    """``delta`` as a share of the champion's value ``baseline``, or None where that value is 0 or so
    small that the share says little (beyond :data:`MAX_SHARE`): the change is then told as a difference."""
    share = relative(delta, baseline)
    return share if math.isfinite(share) and abs(share) < MAX_SHARE else None


def share_cell(delta: float, baseline: float) -> str:
    """The change as a share of the champion's value for a table cell (``+4.2%``), or ``-`` where
    :func:`told_share` gives none (the delta column has the difference).

    >>> share_cell(0.5, 10.0), share_cell(0.5, 0.001), share_cell(float("nan"), 1.0)
    ('+5.0%', '-', '-')
    """
    share = told_share(delta, baseline)
    return "-" if share is None else f"{share:+.1%}"


def _changes(row: Any) -> tuple[str, str, str]:
    """The mean change and its interval as shares of the champion's value, or as differences where a
    share says little (see the module's docstring)."""
    shares = [told_share(v, row.baseline) for v in (row.delta, row.ci_low, row.ci_high)]
    if all(share is not None for share in shares):
        return tuple(f"{v:+.0%}" for v in shares)  # type: ignore[return-value]
    spec = "+" + _spec(row.delta, row.ci_low, row.ci_high)
    return tuple(f"{v:{spec}}" for v in (row.delta, row.ci_low, row.ci_high))  # type: ignore[return-value]


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

    Rows: every judged row (the judged scores probe-wide and per class) and the other scores probe-wide
    (their classes are in :attr:`Comparison.table`, the JSON and the audit page). Then the reasons not
    to promote, and the new flags.
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
        if row.judged or row.scope == "probe":
            lines.append(_markdown_row(row))
    new = {(f.rule, f.scope) for f in comparison.new_flags}
    why = [row_sentence(row, settings) for row in comparison.table.itertuples(index=False)
           if row.verdict == "regression"]
    shared = [f for f in comparison.candidate_verdict.findings if (f.rule, f.scope) not in new]
    why += [_flag_sentence(f, False) for f in shared]
    if why:
        lines += ["", "**Why not:**", *(f"- {_cell(s)}" for s in why)]
    if comparison.new_flags:
        lines += ["", "**New flags** (the champion does not have them):",
                  *(f"- {_cell(f.message)}" for f in comparison.new_flags)]
    return "\n".join(lines) + "\n"


def _markdown_row(row: Any) -> str:
    name = f"**{row.score}**" if row.judged else row.score
    share = told_share(row.delta, row.baseline)
    spec = "+" + _spec(row.delta, row.ci_low, row.ci_high)
    delta = f"{row.delta:{spec}}" + ("" if share is None else f" ({share:+.0%})")
    ci = f"{row.ci_low:{spec}} to {row.ci_high:{spec}}" if math.isfinite(row.ci_low) else "n/a"
    verdict = f"**{row.verdict}**" if row.verdict == "regression" else row.verdict
    cells = [name, _cell(row.scope), value_text(row.baseline, row.candidate),
             value_text(row.candidate, row.baseline), delta if math.isfinite(row.delta) else "n/a", ci,
             p_cell(row.p_value), verdict]
    return "| " + " | ".join(cells) + " |"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell or list item (pipes escaped, one line)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


__all__ = [
    "MAX_SHARE",
    "flag_sentences",
    "markdown",
    "p_cell",
    "p_text",
    "row_sentence",
    "row_sentences",
    "share_cell",
    "told_share",
    "text_lines",
    "value_text",
]
