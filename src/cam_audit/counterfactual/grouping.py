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
    # on positions and numpy arrays: pandas lookups and assignments per place were most of the cost
    cue, place = np.full(len(spots), -1, dtype=np.int64), np.full(len(spots), -1, dtype=np.int64)
    vectors = None if features is None else np.asarray(features, dtype=float)
    labels = spots.index.to_numpy()
    ordered = spots.reset_index(drop=True).sort_values(
        ["target", "mass", "index"], ascending=[True, False, True], kind="stable"
    )
    centres = ordered[["cx", "cy"]].to_numpy(dtype=float)
    number = 0
    for _target, rows in ordered.groupby("target", sort=True):
        at = ordered.index.get_indexer(rows.index)  # the class's rows in `ordered`, strongest first
        places = _places(centres[at], rows.index.to_numpy(), radius)
        groups = _merge(places, vectors) if vectors is not None else [[p] for p in places]
        groups = [g for g in groups if sum(len(p) for p in g) >= min_samples]
        groups.sort(key=lambda g: (-sum(len(p) for p in g), min(int(labels[i]) for p in g for i in p)))
        for group in groups[:max_per_class]:
            for rank, members in enumerate(sorted(group, key=lambda p: (-len(p), min(labels[p])))):
                cue[members], place[members] = number, rank
            number += 1
    return pd.DataFrame({"cue": cue, "place": place}, index=spots.index)


def _places(centres: np.ndarray, positions: np.ndarray, radius: float) -> list[np.ndarray]:
    """Clusters of nearby ``centres`` (their ``positions``), strongest spot first."""
    free = np.ones(len(centres), dtype=bool)
    places = []
    for seed in range(len(centres)):
        if not free[seed]:
            continue
        members = _within(centres, centres[seed], radius) & free
        centre = np.median(centres[members], axis=0)  # one refinement around the members' median
        members = (_within(centres, centre, radius) & free) | (np.arange(len(centres)) == seed)
        free &= ~members
        places.append(positions[members])
    return places


def _merge(places: list[np.ndarray], vectors: np.ndarray) -> list[list[np.ndarray]]:
    """Places whose mean feature vectors are alike, joined (single linkage)."""
    means = []
    for members in places:
        # column-major, so numpy sums each column pairwise along memory (its more accurate summation)
        mean = np.asfortranarray(vectors[members]).mean(axis=0)
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
    groups: dict[int, list[np.ndarray]] = {}
    for i, members in enumerate(places):
        groups.setdefault(root(i), []).append(members)
    return list(groups.values())


def _within(centres: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    return np.hypot(centres[:, 0] - centre[0], centres[:, 1] - centre[1]) <= radius


__all__ = ["MAX_PER_CLASS", "MERGE_COSINE", "MIN_CLUSTER", "cluster_radius", "group_spots"]
