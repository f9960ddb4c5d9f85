"""Discovery's bookkeeping on pandas tables: who is pasted into whom, whose background whose object
lands on, and the cue table counted from the tested pairs (no tensors: every process computes the same
partners from the same gathered table)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cam_audit.report.cues import describe_location, empty_cues, exceedance_p, normalise


def cue_partners(members: pd.DataFrame, frame: pd.DataFrame, multilabel: bool = False) -> dict[int, int]:
    """For each member, the first scored sample after it (probe order, cyclically) that is neither
    labelled nor (multiclass, binary) decided as the cue's class and whose object, grown by a map cell,
    stays clear of the candidate's box; absent where none qualifies."""
    order = frame.sort_values("index")
    positions = order["index"].to_numpy(dtype="int64")
    out: dict[int, int] = {}
    for block in range(0, len(members), 256):  # each member against every sample at once, in blocks
        rows = members.iloc[block : block + 256]
        eligible = _eligible(rows, order, multilabel)
        own = rows["index"].to_numpy(dtype="int64")
        # the first eligible sample after the member's own place, else the first of all
        start = np.searchsorted(positions, own, side="right")[:, None]
        after = eligible & (np.arange(len(positions)) >= start)
        first = np.where(after.any(axis=1), after.argmax(axis=1), eligible.argmax(axis=1))
        found = eligible.any(axis=1)
        out.update(zip(own[found].tolist(), positions[first[found]].tolist(), strict=True))
    return out


def _eligible(rows: pd.DataFrame, order: pd.DataFrame, multilabel: bool) -> np.ndarray:
    """bool ``[len(rows), len(order)]``: the samples each member may be pasted into (see
    :func:`cue_partners`)."""
    labels, before = order["label"].to_numpy(), order["before"].to_numpy()
    objects = ("ox_min", "oy_min", "ox_max", "oy_max")
    ox_min, oy_min, ox_max, oy_max = (order[k].to_numpy(dtype=float) for k in objects)
    grow, x_min, y_min, x_max, y_max = (
        rows[k].to_numpy(dtype=float)[:, None] for k in ("stride", "x_min", "y_min", "x_max", "y_max")
    )
    target = rows["target"].to_numpy(dtype="int64")[:, None]
    clear = (
        (ox_min - grow >= x_max) | (ox_max + grow <= x_min)
        | (oy_min - grow >= y_max) | (oy_max + grow <= y_min)
    )  # fmt: skip
    other = labels != target
    if not multilabel:
        other &= before != target
    return clear & other & ~np.isnan(ox_min)


#: Most samples whose objects are moved onto other backgrounds (evenly spread over the probe): ``bg_gap``
#: is a mean of paired differences, and its noise falls slowly beyond this many pairs.
MAX_SWAPS = 256


def background_partners(frame: pd.DataFrame, limit: int = MAX_SWAPS) -> dict[int, tuple[int, int]]:
    """For up to ``limit`` samples with an object, evenly spread in probe order: the next sample after it
    (cyclically) of the same class, and the next of another class, both with an object; absent where
    either is missing."""
    order = frame[frame["ox_min"].notna()].sort_values("index")
    positions = order["index"].to_numpy(dtype="int64")
    labels = order["label"].to_numpy(dtype="int64")
    out = {}
    n = len(positions)
    chosen = sorted(set(np.linspace(0, n - 1, min(n, limit)).round().astype(int).tolist())) if n else []
    for i in chosen:
        ahead = [(i + k) % n for k in range(1, n)]
        same = next((j for j in ahead if labels[j] == labels[i]), None)
        other = next((j for j in ahead if labels[j] != labels[i]), None)
        if same is not None and other is not None:
            out[int(positions[i])] = (int(positions[same]), int(positions[other]))
    return out


def cue_table(members: pd.DataFrame, pairs: pd.DataFrame, class_names: Sequence[str], height: int,
              width: int) -> pd.DataFrame:  # fmt: skip
    """One row per cue: place, rates, their controls and the discordant counts behind the p-values."""
    # on numpy columns: filtering the frames once per cue cost more than the rest of discovery's tables
    cue = members["cue"].to_numpy(dtype="int64")
    place, target = members["place"].to_numpy(dtype="int64"), members["target"].to_numpy(dtype="int64")
    boxes = members[["x_min", "y_min", "x_max", "y_max"]].to_numpy(dtype=float)
    tested = pairs["cue"].to_numpy(dtype="int64")
    outcomes = {k: pairs[k].to_numpy(dtype=float) for k in ("flip", "control_flip", "moved", "control_moved")}
    rows: list[dict[str, Any]] = []
    for number in np.unique(cue).tolist():
        group, outcome = cue == number, {k: v[tested == number] for k, v in outcomes.items()}
        main = boxes[group & (place == 0)]
        x_min, y_min, x_max, y_max = (_median(main[:, i]) for i in range(4))
        box = (x_min, y_min, x_max, y_max)
        where = describe_location(box, width, height)
        others = int(place[group].max())
        if others:
            where += f", and {others} other place{'s' if others > 1 else ''}"
        label = int(target[group][0])
        row: dict[str, Any] = {"cue": number, "class": class_names[label], "label": label,
                               "n_samples": int(group.sum()), "x_min": box[0], "y_min": box[1],
                               "x_max": box[2], "y_max": box[3], "where": where}  # fmt: skip
        for arm, control, prefix, rate in (("flip", "control_flip", "fill", "flip_rate"),
                                           ("moved", "control_moved", "paste", "paste_rate")):  # fmt: skip
            _count(row, outcome[arm], outcome[control], prefix, rate)
        rows.append(row)
    return normalise(pd.DataFrame(rows)) if rows else empty_cues()


def _median(values: np.ndarray) -> float:
    """The median of the values that are not NaN (NaN without any), as pandas takes it."""
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else math.nan


def _count(row: dict[str, Any], arm: np.ndarray, control: np.ndarray, prefix: str, rate: str) -> None:
    """One test's columns of a cue's row, from its pairs' outcomes (pairs with a NaN are left out)."""
    both = ~np.isnan(arm) & ~np.isnan(control)
    arm, control = arm[both], control[both]
    only, control_only = int(((arm == 1) & (control == 0)).sum()), int(((arm == 0) & (control == 1)).sum())
    row[f"n_{prefix}"] = len(arm)
    row[rate] = float(arm.mean()) if len(arm) else math.nan
    row[f"control_{rate}"] = float(control.mean()) if len(arm) else math.nan
    row[f"{prefix}_only"], row[f"control_{prefix}_only"] = only, control_only
    row[f"{prefix}_p_value"] = exceedance_p(only, control_only) if len(arm) else math.nan


__all__ = ["MAX_SWAPS", "background_partners", "cue_partners", "cue_table"]
