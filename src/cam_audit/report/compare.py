"""Promotion: a candidate's audit against the champion's (the baseline), on the same probe, sample by sample.

Both reports must come from the same probe (``meta["probe_fingerprint"]``), explain the same target
(``meta["target"]``) with the same method, and, where both record one, the same task. Samples are paired
by ``(sample_id, label)``, whatever the order of the rows; a sample present in only one report is an
error (same fingerprint, different samples: one report is truncated or edited). See
:mod:`cam_audit.report.pairing`.

For each score with a per-sample column (see :mod:`cam_audit.keys`), probe-wide and per class, the
comparison reports both reports' summaries, the mean paired difference ``candidate - baseline`` with a
percentile bootstrap confidence interval, and the two-sided p-value of a paired sign-flip permutation
test of that mean (see :mod:`cam_audit.report.paired` for the definitions and their sources). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cam_audit import keys
from cam_audit.errors import ReportError
from cam_audit.report.compare_text import flag_sentences, markdown, row_sentences, text_lines
from cam_audit.report.jsonio import clean, number
from cam_audit.report.paired import DEFAULT_RESAMPLES, bootstrap_ci, holm, relative, sign_flip_p
from cam_audit.report.pairing import check_comparable, checked_scores, comparable_scores, pair_samples
from cam_audit.report.policy import Finding, ShortcutPolicy, Verdict

if TYPE_CHECKING:
    from cam_audit.report.audit_report import AuditReport

#: Columns of :attr:`Comparison.table`, in order.
TABLE_COLUMNS = ("score", "scope", "baseline", "candidate", "delta", "ci_low", "ci_high", "p_value", "judged",
                 "verdict")


@dataclass(frozen=True, eq=False)
class Comparison:
    """A candidate's audit against the champion's (the baseline).

    Attributes:
        passed: promote. False when the candidate fails the policy, when a judged score regresses by
            more than ``max_regression`` of the baseline's value and significantly, or when the candidate
            has a flag (rule and scope) the baseline did not have.
        table: one row per score and scope (``"probe"`` or a class name), columns :data:`TABLE_COLUMNS`:
            ``baseline`` and ``candidate`` are the reports' summaries, ``delta`` the mean paired difference
            (candidate minus baseline), ``ci_low``/``ci_high`` its bootstrap interval, ``p_value`` the
            sign-flip test's, ``judged`` whether the row can stop the promotion, and ``verdict`` one of
            ``"regression"`` (judged, significant, beyond ``max_regression``: blocks), ``"worse"`` (the
            same on a row that is not judged), ``"better"`` (significant, beyond ``max_regression`` the
            right way), ``"ok"`` (neither) or ``"no data"`` (no sample scored by both).
        findings: sentences with the numbers: each judged score probe-wide and in each class where it is
            a regression or better, each other score probe-wide where it is worse or better, and the
            candidate's policy flags.
        reasons: the findings that stop the promotion (empty when ``passed``).
        new_flags: the candidate's policy findings whose rule and scope the baseline does not fail.
        candidate_verdict: the candidate judged by the comparison's policy.
        baseline_verdict: the baseline judged by the same policy.
        pairs: one row per paired sample: ``sample_id``, ``label``, ``class``, ``index`` (candidate) and
            ``baseline_index``, then ``<column>_candidate``, ``<column>_baseline``, ``<column>_delta`` for
            each compared score's per-sample column. Not part of :meth:`to_dict`.
        settings: ``max_regression``, ``scores``, ``level``, ``confidence``, ``resamples``, ``seed``,
            ``n_pairs`` and the test's name.
    """

    passed: bool
    table: pd.DataFrame
    findings: list[str]
    reasons: list[str]
    new_flags: tuple[Finding, ...]
    candidate_verdict: Verdict
    baseline_verdict: Verdict
    pairs: pd.DataFrame = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    def worst_samples(self, n: int, score: str | None = None) -> pd.DataFrame:
        """The ``n`` paired samples whose ``score`` (default: the first judged) got most worse.

        Rows of :attr:`pairs`, worst first; samples without a value in both reports are left out.
        """
        entry = keys.score(score or self.settings["scores"][0])
        delta = self.pairs[f"{entry.column}_delta"]
        worse = -delta if entry.higher_is_better else delta
        order = worse[worse.notna()].sort_values(ascending=False, kind="stable")
        return self.pairs.loc[order.index[:n]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: decision, reasons, findings, new flags, both verdicts, settings and the table."""
        return clean(
            {
                "passed": self.passed,
                "reasons": list(self.reasons),
                "findings": list(self.findings),
                "new_flags": [f.message for f in self.new_flags],
                "candidate_verdict": self.candidate_verdict.to_dict(),
                "baseline_verdict": self.baseline_verdict.to_dict(),
                "settings": self.settings,
                "table": self.table.to_dict(orient="records"),
            }
        )

    def to_markdown(self, candidate: str = "candidate", baseline: str = "champion") -> str:
        """A table and the reasons, fit for a pull-request comment (see :mod:`.compare_text`)."""
        return markdown(self, candidate, baseline)

    def to_text(self, candidate: str = "candidate", baseline: str = "champion") -> list[str]:
        """Lines for a terminal: the decision, then the reasons (or, when it promotes, the findings)."""
        return text_lines(self, candidate, baseline)


def compare(
    candidate: AuditReport,
    baseline: AuditReport,
    max_regression: float = 0.05,
    scores: Sequence[str] = ("focus_lift",),
    level: float = 0.01,
    *,
    policy: ShortcutPolicy | None = None,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare ``candidate`` with ``baseline`` (the champion) audited on the same probe.

    A judged score (one of ``scores``) regresses when it moved the wrong way (``keys.score(name).
    higher_is_better``) by more than ``max_regression`` of the baseline's summary AND the paired
    sign-flip test rejects "no difference" at ``level``. ``level`` holds for the judged rows together:
    the probe-wide row of each judged score and, when the policy judges classes (``per_class``), each
    class with at least ``min_class_samples`` pairs, with Holm's step-down procedure. The other scores
    are reported, not judged. The flags compared are both reports judged by ``policy``.

    Args:
        candidate: the model that would be promoted.
        baseline: the champion it would replace, audited on the same probe.
        max_regression: largest tolerated fall of a judged score, as a fraction of the baseline's value.
        scores: summary keys judged (see :func:`comparable_scores`).
        level: family-wise significance level of the judged tests.
        policy: the thresholds both reports are judged by (default: the candidate's own policy).
        confidence: coverage of the bootstrap intervals.
        resamples: bootstrap resamples, and random sign patterns of the Monte Carlo test (beyond
            :data:`~cam_audit.report.paired.EXACT_MAX_PAIRS` pairs the test is Monte Carlo, so the
            smallest p-value it can report is ``1 / (1 + resamples)``).
        seed: seed of every random draw: the same inputs give the same numbers.

    Returns:
        A :class:`Comparison`.

    Raises:
        ReportError: different probes, targets, tasks or methods; samples that do not pair; an unknown
            score; or an argument out of range.
    """
    judged = check_options(max_regression, scores, level, confidence=confidence, resamples=resamples)
    check_comparable(candidate.meta, baseline.meta)
    policy = policy if policy is not None else candidate.policy
    names = [s for s in comparable_scores() if s in judged or _measured(s, candidate, baseline)]
    pairs = pair_samples(candidate.samples, baseline.samples, [keys.score(s).column for s in names])
    settings = {
        "max_regression": max_regression, "scores": list(judged), "level": level, "confidence": confidence,
        "resamples": resamples, "seed": seed, "n_pairs": len(pairs),
        "test": "two-sided paired sign-flip permutation test of the mean difference; Holm across judged rows",
    }
    min_class = policy.min_class_samples if policy.per_class else math.inf
    rows = [
        _row(name, scope, pairs if scope == "probe" else pairs[pairs["class"] == scope],
             _summary_value(baseline, name, scope), _summary_value(candidate, name, scope),
             name in judged, min_class, settings)
        for name in names
        for scope in ("probe", *_classes(baseline, pairs))
    ]
    table = _with_verdicts(pd.DataFrame(rows), settings)
    verdicts = (_judge(policy, candidate), _judge(policy, baseline))
    found, blocking = row_sentences(table, settings)
    new_flags = _new_flags(*verdicts)
    flagged, flag_reasons = flag_sentences(verdicts[0], new_flags)
    return Comparison(
        passed=not blocking and not flag_reasons,
        table=table,
        findings=found + flagged,
        reasons=blocking + flag_reasons,
        new_flags=new_flags,
        candidate_verdict=verdicts[0],
        baseline_verdict=verdicts[1],
        pairs=pairs,
        settings=settings,
    )


def _row(
    name: str, scope: str, pairs: pd.DataFrame, base: float, cand: float, judged: bool, min_class: float,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    deltas = pairs[f"{keys.score(name).column}_delta"].to_numpy()
    deltas = deltas[np.isfinite(deltas)]
    low, high = bootstrap_ci(deltas, settings["confidence"], settings["resamples"], settings["seed"])
    return {
        "score": name,
        "scope": scope,
        "baseline": base,
        "candidate": cand,
        "delta": float(deltas.mean()) if deltas.size else math.nan,
        "ci_low": low,
        "ci_high": high,
        "p_value": sign_flip_p(deltas, settings["resamples"], settings["seed"]),
        # a class is judged when the policy judges classes and it has enough pairs (min_class is inf if not)
        "judged": bool(judged and len(deltas) > 0 and (scope == "probe" or len(deltas) >= min_class)),
    }


def _with_verdicts(table: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """Add the ``verdict`` column: Holm's procedure on the judged rows, ``p < level`` on the others."""
    level, allowed = settings["level"], settings["max_regression"]
    significant = (table["p_value"] < level).to_numpy().copy()
    judged = table["judged"].to_numpy(dtype=bool)
    significant[judged] = holm(table.loc[judged, "p_value"].tolist(), level)
    verdicts = []
    rows: list[Any] = list(table.itertuples(index=False))  # named tuples of the table's columns
    for i, row in enumerate(rows):
        gain = relative(row.delta, row.baseline) * (1 if keys.score(row.score).higher_is_better else -1)
        if math.isnan(row.delta):
            verdicts.append("no data")
        elif significant[i] and gain < -allowed:
            verdicts.append("regression" if judged[i] else "worse")
        elif significant[i] and gain > allowed:
            verdicts.append("better")
        else:
            verdicts.append("ok")
    table["verdict"] = verdicts
    return table.loc[:, list(TABLE_COLUMNS)]


def _judge(policy: ShortcutPolicy, report: AuditReport) -> Verdict:
    best = report.meta.get("best_focus_lift")
    best_lift = best if isinstance(best, (int, float)) else None
    return policy.evaluate(report.summary, report.per_class, best_lift, cues=report.cues)


def _new_flags(candidate: Verdict, baseline: Verdict) -> tuple[Finding, ...]:
    known = {(f.rule, f.scope) for f in baseline.findings}
    return tuple(f for f in candidate.findings if (f.rule, f.scope) not in known)


def _summary_value(report: AuditReport, name: str, scope: str) -> float:
    if scope == "probe":
        return number(report.summary.get(name))
    table = report.per_class
    if scope in table.index and name in table.columns:
        return number(table.loc[scope, name])
    return math.nan


def _classes(baseline: AuditReport, pairs: pd.DataFrame) -> list[str]:
    """Class names with paired samples, in the baseline's per-class order, then any others."""
    present = list(dict.fromkeys(pairs["class"]))
    ordered = [str(c) for c in baseline.per_class.index if str(c) in present]
    return ordered + [c for c in present if c not in ordered]


def _measured(name: str, *reports: AuditReport) -> bool:
    """Whether every report has the score's column and one of them a value in it (a score neither audit
    measured, such as ``bg_gap`` of two audits without discovery, has no row)."""
    column = keys.score(name).column
    if not all(column in report.samples.columns for report in reports):
        return False
    return any(bool(np.isfinite(report.samples[column].to_numpy(dtype=float)).any()) for report in reports)


def check_options(
    max_regression: float = 0.05,
    scores: Sequence[str] = ("focus_lift",),
    level: float = 0.01,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
) -> tuple[str, ...]:
    """Check the options of :func:`compare` before any work is spent; returns the judged scores.

    Raises:
        ReportError: an unknown score (the message lists the valid ones) or a value out of range.
    """
    judged = checked_scores(scores, "scores")
    _check_settings(max_regression, level, confidence, resamples)
    return judged


def _check_settings(max_regression: float, level: float, confidence: float, resamples: int) -> None:
    if not (isinstance(max_regression, (int, float)) and 0 <= max_regression < math.inf):
        raise ReportError(f"max_regression must be a fraction >= 0 (0.05 for 5%), got {max_regression!r}")
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ReportError(f"level must be a significance level in (0, 1) (e.g. 0.01), got {level!r}")
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ReportError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")
    if not (isinstance(resamples, int) and resamples >= 1):
        raise ReportError(f"resamples must be a whole number >= 1 (e.g. 9999), got {resamples!r}")



__all__ = [
    "TABLE_COLUMNS",
    "Comparison",
    "check_options",
    "compare",
]
