"""Pairing two audits of the same probe sample by sample: the checks, the join, the cheap mean deltas.

Both reports must come from the same probe (``meta["probe_fingerprint"]``), explain the same target
(``meta["target"]``) with the same method, and, where both record one, the same task. Samples are paired
by ``(sample_id, label)``, whatever the order of the rows. :func:`paired_deltas` is the cheap part, for a
caller that logs the difference at every audit; :mod:`cam_audit.report.compare` adds intervals, tests
and the promotion decision. Torch-free.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cam_audit import keys
from cam_audit.errors import ReportError

if TYPE_CHECKING:
    from cam_audit.report.audit_report import AuditReport

#: Columns that identify a probe sample in both reports.
PAIR_KEYS = ("sample_id", "label")
#: Meta data both reports must agree on (where both record it), and what to do about a mismatch.
_SAME_META = {
    "target": "audit both with the same --target (label or predicted)",
    "task": "audit both with the same task (multiclass, multilabel or binary)",
    "method": "audit both with the same method (gradcam++ or gradcam)",
}

def comparable_scores() -> tuple[str, ...]:
    """Summary keys that have a per-sample column, so two reports can be compared sample by sample.

    >>> comparable_scores()[:3]
    ('focus', 'focus_lift', 'pointing_game')
    """
    return tuple(s.summary for s in keys.SCORES if s.per_sample)

def check_comparable(candidate_meta: Mapping[str, Any], baseline_meta: Mapping[str, Any]) -> None:
    """Refuse two audits that cannot be compared sample by sample.

    Raises:
        ReportError: a report has no probe fingerprint, the probes differ, or the target, task or
            method differ (where both reports record them).
    """
    prints = {}
    for which, meta in (("candidate", candidate_meta), ("baseline", baseline_meta)):
        prints[which] = meta.get("probe_fingerprint")
        if not prints[which]:
            raise ReportError(
                f"the {which} report has no meta.probe_fingerprint, so it cannot be paired sample by sample; "
                "write it with audit(), CamAudit or `cam-audit audit`"
            )
    if prints["candidate"] != prints["baseline"]:
        raise ReportError(
            f"the reports audit different probes (probe_fingerprint {prints['candidate']} vs "
            f"{prints['baseline']}); audit the candidate on the champion's probe set to compare them"
        )
    for key, fix in _SAME_META.items():
        mine, theirs = candidate_meta.get(key), baseline_meta.get(key)
        if mine is not None and theirs is not None and mine != theirs:
            raise ReportError(f"the candidate's {key} is {mine!r} but the baseline's is {theirs!r}; {fix}")


def pair_samples(
    candidate: pd.DataFrame, baseline: pd.DataFrame, columns: Sequence[str], *, candidate_subset: bool = False
) -> pd.DataFrame:
    """The two per-sample tables joined on ``(sample_id, label)``, in the candidate's probe order.

    Args:
        candidate: the candidate report's ``samples``.
        baseline: the baseline report's ``samples``.
        columns: per-sample columns to pair (each must be in both tables).
        candidate_subset: the candidate may hold a part of the probe (e.g. one process's share);
            baseline samples it lacks are then left out instead of being an error.

    Returns:
        One row per paired sample: ``sample_id``, ``label``, ``class``, ``index`` (the candidate's
        probe position) and ``baseline_index``, then ``<column>_candidate``, ``<column>_baseline`` and
        ``<column>_delta`` (candidate minus baseline, float64) for each column.

    Raises:
        ReportError: a column is missing, a sample appears twice in one table, or a sample appears in
            only one table.
    """
    mine, theirs = _keyed(candidate, columns, "candidate"), _keyed(baseline, columns, "baseline")
    only_mine = mine.index.difference(theirs.index)
    only_theirs = theirs.index.difference(mine.index)
    for which, only in (("candidate", only_mine), ("baseline", only_theirs if not candidate_subset else [])):
        if len(only):
            shown = ", ".join(f"{sid!r} (label {label})" for sid, label in list(only)[:3])
            raise ReportError(
                f"{len(only)} sample(s) appear only in the {which} report, e.g. {shown}; compare audits of "
                "the whole probe (same probe_fingerprint, every sample)"
            )
    joined = mine.merge(theirs, how="inner", left_index=True, right_index=True,
                        suffixes=("_candidate", "_baseline"))
    pairs = pd.DataFrame(index=joined.index)
    pairs["class"] = joined["class_candidate"]
    pairs["index"] = joined["index_candidate"]
    pairs["baseline_index"] = joined["index_baseline"]
    for column in dict.fromkeys(columns):
        pairs[f"{column}_candidate"] = joined[f"{column}_candidate"].astype("float64")
        pairs[f"{column}_baseline"] = joined[f"{column}_baseline"].astype("float64")
        pairs[f"{column}_delta"] = pairs[f"{column}_candidate"] - pairs[f"{column}_baseline"]
    return pairs.reset_index().sort_values("index", kind="stable").reset_index(drop=True)


def paired_deltas(
    candidate_samples: pd.DataFrame,
    baseline: AuditReport | pd.DataFrame,
    scores: Sequence[str] | None = None,
) -> dict[str, float]:
    """Mean paired difference (candidate minus baseline) of each score over the samples both scored.

    Cheap (a join and a mean, no resampling): meant for logging ``vs_baseline/<score>`` at every audit.
    ``candidate_samples`` may hold part of the probe; each of its samples must be in the baseline.

    Args:
        candidate_samples: per-sample rows of an audit (``report.samples``).
        baseline: the baseline report, or its ``samples``.
        scores: summary keys (default: every :func:`comparable_scores` whose column both tables have).

    Returns:
        ``{score: mean delta}``; NaN for a score no sample has in both.

    Raises:
        ReportError: an unknown score, a missing column, or a sample the baseline does not have.
    """
    theirs = baseline if isinstance(baseline, pd.DataFrame) else baseline.samples
    if scores is None:
        scores = [s for s in comparable_scores()
                  if keys.score(s).column in candidate_samples and keys.score(s).column in theirs]
    scores = checked_scores(scores, "scores")
    columns = [keys.score(s).column for s in scores]
    pairs = pair_samples(candidate_samples, theirs, columns, candidate_subset=True)
    return {s: _mean(pairs[f"{c}_delta"].to_numpy()) for s, c in zip(scores, columns, strict=True)}

def _keyed(samples: pd.DataFrame, columns: Sequence[str], which: str) -> pd.DataFrame:
    missing = [c for c in (*PAIR_KEYS, *columns) if c not in samples.columns]
    if missing:
        raise ReportError(
            f"the {which} report's samples have no column(s) {', '.join(missing)}; compare reports "
            "written by audit(), CamAudit or `cam-audit audit`"
        )
    frame = samples.loc[:, [*PAIR_KEYS, *dict.fromkeys(columns)]].copy()
    # the probe position (rows without one keep their row order)
    frame.insert(0, "index", samples["index"] if "index" in samples else np.arange(len(samples)))
    frame["sample_id"] = frame["sample_id"].astype(str)
    frame["label"] = frame["label"].astype("int64")
    frame["class"] = samples["class"].astype(str) if "class" in samples else frame["label"].astype(str)
    twice = frame[frame.duplicated(list(PAIR_KEYS))]
    if len(twice):
        first = twice.iloc[0]
        raise ReportError(
            f"the {which} report has {len(twice)} repeated sample(s) (same sample_id and label), e.g. "
            f"{first['sample_id']!r}; each probe sample must appear once"
        )
    return frame.set_index(list(PAIR_KEYS))

def checked_scores(scores: Sequence[str], argument: str) -> tuple[str, ...]:
    """``scores`` without repeats, each a summary key of :func:`comparable_scores`.

    Raises:
        ReportError: an unknown score (the message lists the valid ones) or none at all.
    """
    if isinstance(scores, str):
        scores = [scores]
    valid = comparable_scores()
    unknown = [s for s in scores if s not in valid]
    if unknown or not scores:
        raise ReportError(
            f"{argument}: {'unknown score(s) ' + ', '.join(map(repr, unknown)) if unknown else 'none given'}"
            f"; scores with a per-sample column: {', '.join(valid)}"
        )
    return tuple(dict.fromkeys(scores))

def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def read_baseline(path: str | os.PathLike, candidate_meta: Mapping[str, Any], where: str) -> AuditReport:
    """The champion's report at ``path``, refused unless :func:`check_comparable` with ``candidate_meta``
    (what the candidate's audit will record: its probe fingerprint, target, method); ``where`` names the
    argument in the error, e.g. ``"--baseline FILE"``."""
    from cam_audit.report.audit_report import AuditReport

    baseline = AuditReport.from_json(path)
    try:
        check_comparable(candidate_meta, baseline.meta)
    except ReportError as err:
        raise ReportError(f"{where}: {err}") from err
    return baseline


__all__ = [
    "PAIR_KEYS",
    "check_comparable",
    "read_baseline",
    "checked_scores",
    "comparable_scores",
    "pair_samples",
    "paired_deltas",
]
