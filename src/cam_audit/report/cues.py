"""The cue table of a discovery audit: where each candidate cue sits and what the interventions on it did.

Torch-free, like the rest of :mod:`cam_audit.report`: the gate re-judges a saved table with another
policy. A row's ``confirmed`` is decided here, from the counts the audit measured, by the policy's cue
rules (:func:`confirm`): a cue is confirmed when filling it flips the model's decision, or pasting it
into images of other classes moves them to its class, clearly more often than the same intervention
on its matched control region, by an exact one-sided test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cam_audit.errors import ReportError
from cam_audit.report.evidence import binomial_tail

#: The columns of ``report.cues``, in order (DESIGN.md's contract first, then the counts behind it).
CUE_COLUMNS: tuple[str, ...] = (
    "cue", "class", "label", "n_samples", "x_min", "y_min", "x_max", "y_max", "where",
    "flip_rate", "control_flip_rate", "paste_rate", "control_paste_rate", "confirmed",
    "n_fill", "fill_only", "control_fill_only", "fill_p_value",
    "n_paste", "paste_only", "control_paste_only", "paste_p_value",
)  # fmt: skip
_INTEGER = ("cue", "label", "n_samples", "n_fill", "fill_only", "control_fill_only", "n_paste", "paste_only",
            "control_paste_only")  # fmt: skip
_TEXT = ("class", "where")


def empty_cues() -> pd.DataFrame:
    """A cue table without rows (an audit without discovery, or one that found nothing)."""
    return pd.DataFrame({column: np.empty(0, dtype=_dtype(column)) for column in CUE_COLUMNS})


def _dtype(column: str) -> type | str:
    """The dtype of a column of :data:`CUE_COLUMNS`."""
    if column in _TEXT:
        return object
    return bool if column == "confirmed" else "int64" if column in _INTEGER else "float64"


def normalise(cues: pd.DataFrame) -> pd.DataFrame:
    """``cues`` with the columns of :data:`CUE_COLUMNS` in order and their dtypes (a table read back from
    JSON has lost them)."""
    cues = cues.reindex(columns=list(CUE_COLUMNS)).reset_index(drop=True)
    # built in one go: assigning the columns one by one cost more than the rest of a small cue table
    return pd.DataFrame({column: _typed(cues[column], column) for column in CUE_COLUMNS}, index=cues.index)


def _typed(values: pd.Series, column: str) -> pd.Series | np.ndarray:
    """One column of :func:`normalise`; columns that already have their dtype are taken as they are."""
    kind, dtype = values.dtype.kind, _dtype(column)
    if dtype is object:
        return values.astype(object)  # a Series: an object array would be read as strings
    if dtype is bool:
        if kind == "b":
            return values.to_numpy()
        return values.astype(object).where(values.notna(), False).astype(bool).to_numpy()
    if dtype == "int64":
        if kind in "iu":
            return values.to_numpy(dtype="int64")
        return pd.to_numeric(values).fillna(0).astype("int64").to_numpy()
    if kind in "iuf":
        return values.to_numpy(dtype="float64")
    return pd.to_numeric(values).astype("float64").to_numpy()


def exceedance_p(only: int, control_only: int) -> float:
    """One-sided exact McNemar test: the chance of ``only`` or more of the ``only + control_only``
    discordant pairs going the cue's way if the cue and its control were alike (1.0 with no pairs).

    >>> round(exceedance_p(9, 1), 4), exceedance_p(0, 0)
    (0.0107, 1.0)
    """
    n = only + control_only
    return 1.0 if n == 0 else binomial_tail(only, n, 0.5)


def describe_location(box: tuple[float, float, float, float], width: float, height: float) -> str:
    """Where a box lies in an image, in words: ``"bottom-right corner, about 7x7 px"``.

    >>> describe_location((56, 57, 63, 64), 64, 64)
    'bottom-right corner, about 7x7 px'
    >>> describe_location((28, 0, 36, 6), 64, 64)
    'top edge, about 8x6 px'
    """
    x_min, y_min, x_max, y_max = box
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    column = "left" if cx < width / 3 else "right" if cx > 2 * width / 3 else ""
    row = "top" if cy < height / 3 else "bottom" if cy > 2 * height / 3 else ""
    if row and column:
        place = f"{row}-{column} corner"
    elif row or column:
        place = f"{row or column} edge"
    else:
        place = "centre"
    return f"{place}, about {round(x_max - x_min)}x{round(y_max - y_min)} px"


def confirm(cues: pd.DataFrame, min_excess: float | None, alpha: float, min_samples: int) -> pd.Series:
    """Which cues the interventions confirm (bool, one per row).

    A cue is confirmed when it has at least ``min_samples`` samples and, for the fill test or the paste
    test, its rate exceeds its control's by at least ``min_excess`` with a one-sided p-value of at most
    ``alpha`` divided by the number of tests in the table (Bonferroni: each cue is tested twice, and a
    class can have several cues). ``min_excess=None`` confirms nothing.
    """
    if min_excess is None or cues.empty:
        return pd.Series(False, index=cues.index, dtype=bool)
    needed = ("n_samples", "n_fill", "n_paste", "flip_rate", "control_flip_rate", "fill_p_value",
              "paste_rate", "control_paste_rate", "paste_p_value")  # fmt: skip
    column = {k: cues[k].to_numpy(dtype=float) for k in needed}
    tests = int((column["n_fill"] > 0).sum() + (column["n_paste"] > 0).sum())
    level = alpha / max(tests, 1)

    def passes(rate: str, control: str, p_value: str) -> np.ndarray:
        return (column[rate] - column[control] >= min_excess) & (column[p_value] <= level)

    enough = column["n_samples"] >= min_samples
    fill = passes("flip_rate", "control_flip_rate", "fill_p_value")
    paste = passes("paste_rate", "control_paste_rate", "paste_p_value")
    return pd.Series(enough & (fill | paste), index=cues.index, dtype=bool)  # numpy: a tiny table


def cue_message(row: Mapping[Any, Any]) -> str:
    """The verdict's sentence for a confirmed cue, with the rates and their controls."""
    parts = []
    if int(row["n_fill"]):
        parts.append(
            f"filling it flips {row['flip_rate']:.0%} of {int(row['n_fill'])} predictions (control "
            f"{row['control_flip_rate']:.0%}, {_p(row['fill_p_value'])})"
        )
    if int(row["n_paste"]):
        parts.append(
            f"pasting it into images of other classes moves {row['paste_rate']:.0%} of {int(row['n_paste'])} "
            f"to '{row['class']}' (control {row['control_paste_rate']:.0%}, {_p(row['paste_p_value'])})"
        )
    return (
        f"class '{row['class']}' relies on an unannotated cue at the {row['where']} "
        f"({int(row['n_samples'])} samples): " + "; ".join(parts)
    )


def cue_findings(confirmed: pd.DataFrame, min_excess: float) -> list[tuple[str, str, float, float, str, str]]:
    """The fields of one policy finding per confirmed cue: rule, metric, the larger excess over the
    control, the threshold, the class, and :func:`cue_message`."""
    out = []
    for row in confirmed.to_dict("records"):
        excess = max(
            row["flip_rate"] - row["control_flip_rate"], row["paste_rate"] - row["control_paste_rate"]
        )
        out.append(("min_cue_excess", "cue", float(excess), min_excess, str(row["class"]), cue_message(row)))
    return out


def check_cue_rules(alpha: Any, min_samples: Any) -> None:
    """Raise :class:`~cam_audit.errors.ReportError` unless ``alpha`` is in (0, 1) and ``min_samples`` is an
    integer >= 1 (``ShortcutPolicy.cue_alpha`` and ``min_cue_samples``)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ReportError(
            f"ShortcutPolicy.cue_alpha is a significance level in (0, 1), e.g. 0.01; got {alpha!r}"
        )
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ReportError(f"ShortcutPolicy.min_cue_samples must be an integer >= 1, got {min_samples!r}")


def _p(value: Any) -> str:
    value = float(value)
    if math.isnan(value):
        return "p n/a"
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


__all__ = [
    "CUE_COLUMNS",
    "check_cue_rules",
    "confirm",
    "cue_findings",
    "cue_message",
    "describe_location",
    "empty_cues",
    "exceedance_p",
    "normalise",
]
