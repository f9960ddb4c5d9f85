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
    labels, before = order["label"].to_numpy(), order["before"].to_numpy()
    box = {k: order[k].to_numpy(dtype=float) for k in ("ox_min", "oy_min", "ox_max", "oy_max")}
    has_object = ~np.isnan(box["ox_min"])
    out = {}
    for row in members.to_dict("records"):
        grow, target, position = float(row["stride"]), int(row["target"]), int(row["index"])
        clear = (
            (box["ox_min"] - grow >= row["x_max"]) | (box["ox_max"] + grow <= row["x_min"])
            | (box["oy_min"] - grow >= row["y_max"]) | (box["oy_max"] + grow <= row["y_min"])
        )  # fmt: skip
        other = labels != target
        if not multilabel:
            other &= before != target
        eligible = np.flatnonzero(clear & other & has_object)
        if len(eligible):
            start = int(np.searchsorted(positions, position, side="right"))
            out[position] = int(positions[eligible[int(np.searchsorted(eligible, start)) % len(eligible)]])
    return out


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
    rows: list[dict[str, Any]] = []
    for number, group in members.groupby("cue", sort=True):
        outcome = pairs[pairs["cue"] == number]
        main = group[group["place"] == 0]
        x_min, y_min, x_max, y_max = (float(main[k].median()) for k in ("x_min", "y_min", "x_max", "y_max"))
        box = (x_min, y_min, x_max, y_max)
        where = describe_location(box, width, height)
        others = int(group["place"].max())
        if others:
            where += f", and {others} other place{'s' if others > 1 else ''}"
        label = int(group["target"].iloc[0])
        row: dict[str, Any] = {"cue": int(str(number)), "class": class_names[label], "label": label,
                               "n_samples": len(group), "x_min": box[0], "y_min": box[1], "x_max": box[2],
                               "y_max": box[3], "where": where}  # fmt: skip
        for arm, control, prefix, rate in (("flip", "control_flip", "fill", "flip_rate"),
                                           ("moved", "control_moved", "paste", "paste_rate")):  # fmt: skip
            both = outcome[[arm, control]].dropna()
            only = int(((both[arm] == 1) & (both[control] == 0)).sum())
            control_only = int(((both[arm] == 0) & (both[control] == 1)).sum())
            row[f"n_{prefix}"] = len(both)
            row[rate] = float(both[arm].mean()) if len(both) else math.nan
            row[f"control_{rate}"] = float(both[control].mean()) if len(both) else math.nan
            row[f"{prefix}_only"], row[f"control_{prefix}_only"] = only, control_only
            row[f"{prefix}_p_value"] = exceedance_p(only, control_only) if len(both) else math.nan
        rows.append(row)
    return normalise(pd.DataFrame(rows)) if rows else empty_cues()


__all__ = ["MAX_SWAPS", "background_partners", "cue_partners", "cue_table"]
