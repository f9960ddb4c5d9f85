"""The one registry of scores: every number an audit reports, and how each is computed, logged and shown.

Everything that lists scores reads this table: the pipeline (which per-sample columns it averages), the
report (which summary keys it carries), the policy (which way is better), the Lightning callback (what it
logs and where), the HTML page, ``cam-audit audit``, the gate and the demo. Adding a score is one entry
here plus its computation in the pipeline. Torch-free, so the gate can read it anywhere.

>>> score("focus_lift").column, score("focus_lift").higher_is_better
('focus_lift', True)
>>> score("cf_paste_rate").column, score("cf_paste_rate").evidence
('cf_paste', 'counterfactual')
>>> [s.summary for s in SCORES if s.evidence == "count"]
['n_samples', 'n_degenerate', 'n_spurious', 'n_cues', 'n_cues_confirmed']
>>> CHARTS["counterfactual"]
('cf_flip_rate', 'cf_paste_rate')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

#: What a score is evidence of: where the map falls, what an intervention changes, how the model does,
#: or how many samples there were.
Evidence = Literal["attribution", "counterfactual", "discovery", "behaviour", "count"]
#: How the per-sample column becomes the probe-wide number: the mean of the finite values, the count of
#: samples, the count of non-finite (degenerate) values, the sum of a 0/1 column, or a count of rows of
#: the cue table (``column`` names the cue table's bool column counted, ``""`` for every row).
Reduce = Literal["mean", "count", "degenerate", "sum", "cues"]
#: The values a share of samples or of heatmap mass can take.
SHARE = (0.0, 1.0)


@dataclass(frozen=True)
class Score:
    """One number of an audit.

    Attributes:
        summary: its key in ``report.summary``, ``report.per_class`` and the logged name
            ``cam_audit/<summary>``.
        column: the per-sample column of ``report.samples`` it is reduced from.
        reduce: how the column becomes the probe-wide number (see :data:`Reduce`).
        evidence: what it is evidence of (see :data:`Evidence`).
        higher_is_better: which way is better (None: neither, e.g. a count).
        description: one line for help texts and tables.
        headline: printed by ``cam-audit audit``, the demo and the verdict text; shown first in the HTML
            page's summary and in its class table.
        per_class_logged: also logged per class as ``cam_audit/per_class/<class>/<summary>``.
        on_card: the per-sample value is shown under each overlay on the HTML page.
        chart: title of the TensorBoard custom-scalars chart that draws it next to the scores it is
            read against (None: no chart).
        bounds: the smallest and largest value it can take; a policy threshold on it must lie within.
    """

    summary: str
    column: str
    reduce: Reduce
    evidence: Evidence
    higher_is_better: bool | None
    description: str
    headline: bool = False
    per_class_logged: bool = False
    on_card: bool = False
    chart: str | None = None
    bounds: tuple[float, float] = (0.0, math.inf)

    @property
    def per_sample(self) -> bool:
        """Whether ``report.samples`` has a column of this score's own (counts reuse another's)."""
        return self.reduce == "mean"


_MASS, _LIFT, _COUNTERFACTUAL = "focus vs spurious (mass)", "focus vs spurious (lift)", "counterfactual"
_BACKGROUND = "background reliance"

SCORES: tuple[Score, ...] = (
    Score("focus", "focus", "mean", "attribution", True,
          "share of heatmap mass on the object (relevance mass)", headline=True, on_card=True,
          chart=_MASS, bounds=SHARE),
    Score("focus_lift", "focus_lift", "mean", "attribution", True,
          "focus / object area: 1.0 is a uniform map", headline=True, per_class_logged=True, on_card=True,
          chart=_LIFT),
    Score("pointing_game", "pointing_game", "mean", "attribution", True,
          "share of maps whose maximum falls on the object", bounds=SHARE),
    Score("relevance_rank", "relevance_rank", "mean", "attribution", True,
          "share of the object-sized top of the map that lies on the object", bounds=SHARE),
    Score("spurious_mass", "spurious_mass", "mean", "attribution", False,
          "share of heatmap mass on regions marked spurious", headline=True, per_class_logged=True,
          on_card=True, chart=_MASS, bounds=SHARE),
    Score("spurious_lift", "spurious_lift", "mean", "attribution", False,
          "spurious mass / spurious area: 1.0 is a uniform map", headline=True, per_class_logged=True,
          on_card=True, chart=_LIFT),
    Score("cf_flip_rate", "cf_flip", "mean", "counterfactual", False,
          "share of predictions that change when the spurious region is filled", headline=True,
          per_class_logged=True, on_card=True, chart=_COUNTERFACTUAL, bounds=SHARE),
    Score("cf_confidence_drop", "cf_confidence_drop", "mean", "counterfactual", False,
          "fall of the target's probability when the spurious region is filled", bounds=(-1.0, 1.0)),
    Score("cf_paste_rate", "cf_paste", "mean", "counterfactual", False,
          "share of images of other classes that the pasted cue turns into its class", headline=True,
          per_class_logged=True, on_card=True, chart=_COUNTERFACTUAL, bounds=SHARE),
    Score("bg_acc_same", "bg_same", "mean", "discovery", None,
          "accuracy with each object moved onto a background of its own class (objects removed first)",
          chart=_BACKGROUND, bounds=SHARE),
    Score("bg_acc_other", "bg_other", "mean", "discovery", None,
          "accuracy with each object moved onto a background of another class (objects removed first)",
          chart=_BACKGROUND, bounds=SHARE),
    Score("bg_gap", "bg_gap", "mean", "discovery", False,
          "bg_acc_same - bg_acc_other: how much the background decides (Xiao et al. 2020)",
          chart=_BACKGROUND, bounds=(-1.0, 1.0)),
    Score("accuracy", "correct", "mean", "behaviour", True, "share of probe samples classified correctly",
          headline=True, bounds=SHARE),
    Score("n_samples", "has_spurious", "count", "count", None, "probe samples audited"),
    Score("n_degenerate", "focus", "degenerate", "count", None,
          "samples without a score (all-zero map or empty region)"),
    Score("n_spurious", "has_spurious", "sum", "count", None, "samples carrying a spurious region"),
    Score("n_cues", "", "cues", "count", None, "candidate cues found off the object (discovery)"),
    Score("n_cues_confirmed", "confirmed", "cues", "count", None,
          "candidate cues the matched counterfactual tests confirm (discovery)"),
)

_BY_SUMMARY = {s.summary: s for s in SCORES}

#: Summary keys every report carries, in report order (NaN where the probe gives no evidence for one).
SUMMARY_KEYS: tuple[str, ...] = tuple(s.summary for s in SCORES)
#: Per-sample columns the pipeline reduces into the summary, each once, in report order.
REDUCED_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(s.column for s in SCORES if s.reduce != "cues"))
#: Per-sample columns that only a discovery audit fills (NaN in an audit without it).
DISCOVERY_COLUMNS: tuple[str, ...] = tuple(
    s.column for s in SCORES if s.evidence == "discovery" and s.per_sample
)
#: Per-sample columns that only the counterfactual tests fill (NaN in an audit without them).
COUNTERFACTUAL_COLUMNS: tuple[str, ...] = tuple(s.column for s in SCORES if s.evidence == "counterfactual")
#: Summary keys printed by ``cam-audit audit``, the demo and the verdict text.
HEADLINE_KEYS: tuple[str, ...] = tuple(s.summary for s in SCORES if s.headline)
#: Summary keys logged per class by the callback.
PER_CLASS_LOGGED_KEYS: tuple[str, ...] = tuple(s.summary for s in SCORES if s.per_class_logged)
#: Per-sample columns shown under each overlay of the HTML page.
CARD_COLUMNS: tuple[str, ...] = tuple(s.column for s in SCORES if s.on_card)
#: TensorBoard custom-scalars charts: title -> the summary keys drawn together, in report order.
CHARTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        title: tuple(s.summary for s in SCORES if s.chart == title)
        for title in dict.fromkeys(s.chart for s in SCORES if s.chart is not None)
    }
)


def score(summary: str) -> Score:
    """The registry entry of a summary key.

    Raises:
        KeyError: no score is called ``summary``; the message lists the valid names.
    """
    try:
        return _BY_SUMMARY[summary]
    except KeyError:
        raise KeyError(f"no score {summary!r}; scores: {', '.join(SUMMARY_KEYS)}") from None


def is_count(summary: str) -> bool:
    """Whether a summary key counts samples (a whole number; False for names not listed here)."""
    entry = _BY_SUMMARY.get(summary)
    return entry is not None and entry.evidence == "count"


def is_discovery(summary: str) -> bool:
    """Whether a summary key is measured by discovery (``bg_*``; the cue counts are counts)."""
    entry = _BY_SUMMARY.get(summary)
    return entry is not None and (entry.evidence == "discovery" or entry.reduce == "cues")


def is_counterfactual(summary: str) -> bool:
    """Whether a summary key is measured by the counterfactual tests (False for names not listed here)."""
    entry = _BY_SUMMARY.get(summary)
    return entry is not None and entry.evidence == "counterfactual"


__all__ = [
    "CARD_COLUMNS",
    "CHARTS",
    "COUNTERFACTUAL_COLUMNS",
    "DISCOVERY_COLUMNS",
    "HEADLINE_KEYS",
    "PER_CLASS_LOGGED_KEYS",
    "REDUCED_COLUMNS",
    "SCORES",
    "SHARE",
    "SUMMARY_KEYS",
    "Evidence",
    "Reduce",
    "Score",
    "is_count",
    "is_counterfactual",
    "is_discovery",
    "score",
]
