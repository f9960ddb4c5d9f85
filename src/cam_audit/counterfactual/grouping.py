"""Candidate spots into cues: a cue is what many maps of one class put mass on, off the object.

A watermark, a logo or a stamp looks the same in every image, and often sits at the same place; the
hot spots of a clean model wander with whatever each image happens to hold. :func:`group_spots` first
clusters the candidate centres of each class by place (strongest spot first, everything within
``radius`` of the cluster's median joins it), then merges the places of one class whose spots look
alike to the model: the mean of their target-layer feature vectors (each taken at the spot's centre
and scaled to unit length) point the same way, in the spirit of SpRAy (Lapuschkin et al. 2019), which
clusters explanations to find a Clever Hans strategy. A tag in a random corner is one cue at four
places. Groups of at least ``min_samples`` spots are kept, at most ``max_per_class`` per class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Fewest spots a cluster needs to become a candidate cue.
MIN_CLUSTER = 3
#: Most candidate cues per class (the largest clusters), which bounds the cost of their tests.
MAX_PER_CLASS = 4
#: Two places of one class are one cue when the cosine of their mean feature vectors is at least this.
MERGE_COSINE = 0.9


def cluster_radius(stride: int, height: int, width: int) -> float:
    """How far a spot's centre may lie from its cluster's: two map cells, or a tenth of the image."""
    return max(2.0 * stride, 0.1 * max(height, width))


def group_spots(
    spots: pd.DataFrame,
    radius: float,
    features: np.ndarray | None = None,
    min_samples: int = MIN_CLUSTER,
    max_per_class: int = MAX_PER_CLASS,
) -> pd.DataFrame:
    """The cue of each spot and the place within it.

    Args:
        spots: one row per candidate with ``index`` (probe position), ``target`` (the class its map
            explains), ``cx``, ``cy`` (its centre) and ``mass`` (its share of the map).
        radius: pixels from a place's median centre.
        features: float ``[len(spots), C]``, each spot's unit feature vector (None: places are not merged).
        min_samples: fewest spots per cue.
        max_per_class: most cues per class, the largest kept.

    Returns:
        ``cue`` and ``place`` (int64, aligned with ``spots``; -1 outside any cue). Cues are numbered by
        class, then size (largest first), then position; a cue's place 0 is its largest.

    >>> spots = pd.DataFrame({"index": range(5), "target": 0, "cx": [1, 2, 1, 30, 31],
    ...                       "cy": [1, 1, 2, 30, 30], "mass": [.5, .4, .3, .2, .1]})
    >>> group_spots(spots, radius=4, min_samples=2)["cue"].tolist()
    [0, 0, 0, 1, 1]
    >>> alike = np.ones((5, 2)) / np.sqrt(2)
    >>> group_spots(spots, radius=4, features=alike, min_samples=2)["place"].tolist()
    [0, 0, 0, 1, 1]
    """
    out = pd.DataFrame({"cue": -1, "place": -1}, index=spots.index, dtype="int64")
    vectors = None if features is None else pd.DataFrame(np.asarray(features, dtype=float), index=spots.index)
    ordered = spots.sort_values(["target", "mass", "index"], ascending=[True, False, True], kind="stable")
    number = 0
    for _target, rows in ordered.groupby("target", sort=True):
        places = _places(rows, radius)
        groups = _merge(places, vectors) if vectors is not None else [[p] for p in places]
        groups = [g for g in groups if sum(len(p) for p in g) >= min_samples]
        groups.sort(key=lambda g: (-sum(len(p) for p in g), min(int(i) for p in g for i in p)))
        for group in groups[:max_per_class]:
            for place, members in enumerate(sorted(group, key=lambda p: (-len(p), min(p)))):
                out.loc[members, "cue"] = number
                out.loc[members, "place"] = place
            number += 1
    return out


def _places(rows: pd.DataFrame, radius: float) -> list[list]:
    """Clusters of nearby centres (row labels), strongest spot first."""
    centres = rows[["cx", "cy"]].to_numpy(dtype=float)
    free = np.ones(len(rows), dtype=bool)
    places = []
    for seed in range(len(rows)):
        if not free[seed]:
            continue
        members = _within(centres, centres[seed], radius) & free
        centre = np.median(centres[members], axis=0)  # one refinement around the members' median
        members = (_within(centres, centre, radius) & free) | (np.arange(len(rows)) == seed)
        free &= ~members
        places.append(list(rows.index[members]))
    return places


def _merge(places: list[list], vectors: pd.DataFrame) -> list[list[list]]:
    """Places whose mean feature vectors are alike, joined (single linkage)."""
    means = []
    for members in places:
        mean = vectors.loc[members].to_numpy().mean(axis=0)
        means.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    parent = list(range(len(places)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(places)):
        for j in range(i + 1, len(places)):
            if float(means[i] @ means[j]) >= MERGE_COSINE:
                parent[root(j)] = root(i)
    groups: dict[int, list[list]] = {}
    for i, members in enumerate(places):
        groups.setdefault(root(i), []).append(members)
    return list(groups.values())


def _within(centres: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    return np.hypot(centres[:, 0] - centre[0], centres[:, 1] - centre[1]) <= radius


__all__ = ["MAX_PER_CLASS", "MERGE_COSINE", "MIN_CLUSTER", "cluster_radius", "group_spots"]
