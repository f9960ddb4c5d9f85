"""How many of a map's ``K`` largest values lie in its region, ``K`` the region's size: the count behind
``relevance_rank``, found without sorting the map.

Ties at the ``K``-th largest value are shared out in proportion: with ``G`` values strictly above it
(``G_in`` of them in the region) and ``E`` equal to it (``E_in`` in the region), the count is
``G_in + (K - G)·E_in / E``.

On a CPU NumPy takes one map at a time, so each map stays in the cache for all its steps:

1. a bracket ``[lo, hi)`` for the ``K``-th value, from every :data:`SAMPLE_STRIDE`-th pixel of the map,
   sorted: the sample's values :data:`BRACKET_SPREAD` standard deviations of a sample rank either side of
   where the ``K``-th value would fall in it;
2. two counts check it, ``#(map >= hi) < K <= #(map >= lo)``; where they fail (a few maps in a hundred,
   or maps that a regular sample misrepresents) the bracket is the whole map, so the result never depends
   on the sample, only the time does. While more than :data:`BAND_PIXELS` values lie in it, the bracket
   is halved on the sample's values by one more count (cheaper than copying the values out);
3. the values in the bracket are copied out and the ``K``-th is selected among them (NumPy's
   introselect), which also gives ``G`` and ``E``;
4. one more pass counts the region's pixels at or above it (and, with ties, strictly above it).

A region of at most ``1 / CANDIDATE_SHARE`` of its map takes a shorter way: the values at or above the
sample's lower bound (a few more than ``K``) are copied out with whether each lies in the region, and the
``K``-th value and both counts come from them alone (where fewer than ``K`` lie above the bound, the steps
above run instead).

``torch.topk`` and ``torch.kthvalue`` carry an index with every value on a CPU and take about ten times
longer; elsewhere (and for dtypes NumPy lacks) ``torch.topk`` selects the ``K``-th value.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

#: One pixel in this many is sampled to bracket the ``K``-th value.
SAMPLE_STRIDE = 16
#: Half-width of the bracket, in standard deviations of the ``K``-th value's rank in the sample.
BRACKET_SPREAD = 2.0
#: Maps with fewer pixels than this are selected from whole (the sample would be too small to help).
MIN_BRACKETED_PIXELS = 64 * SAMPLE_STRIDE
#: Values of a bracket worth copying out; wider brackets are halved by counting first.
BAND_PIXELS = 512
#: A region of at most ``1 / CANDIDATE_SHARE`` of its map is counted among the values above a bound of
#: its ``K``-th (a few more than ``K``) instead of bracketing the ``K``-th value between two bounds.
CANDIDATE_SHARE = 8
#: Pixels of a batch from which its maps are shared out among threads.
PARALLEL_PIXELS = 2**21

_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def top_k_hits(maps: Tensor, regions: Tensor, k: Tensor) -> Tensor:
    """``|top_K(map) ∩ region|`` per sample with ties shared in proportion, float64 ``[N]``.

    Args:
        maps: float ``[N, H, W]``, finite (checked by the caller).
        regions: bool ``[N, H, W]``.
        k: int64 ``[N]``, how many of the largest values to take (``0 <= k <= H·W``); the region's size.

    Returns:
        float64 ``[N]``; ``0`` where ``k`` is ``0``.

    Example:
        >>> maps = torch.tensor([[[4.0, 3.0], [2.0, 2.0]]])
        >>> regions = torch.tensor([[[True, False], [True, False]]])
        >>> top_k_hits(maps, regions, torch.tensor([3]))  # 4 (in), 3 (out), then one of two tied 2s (one in)
        tensor([1.5000], dtype=torch.float64)
    """
    n = maps.shape[0]
    if maps.numel() == 0:
        return torch.zeros(n, dtype=torch.float64, device=maps.device)
    values, members = maps.reshape(n, -1), regions.reshape(n, -1)
    if values.device.type == "cpu" and values.dtype in _NUMPY_FLOATS:
        return _hits_numpy(values.numpy(), members.numpy(), k.tolist())
    return _hits_torch(values, members, k)


def _hits_numpy(values: np.ndarray, members: np.ndarray, ks: list[int]) -> Tensor:
    """The counts of every map, the maps shared out among ``torch.get_num_threads()`` threads when the batch
    is large (NumPy releases the interpreter lock in the comparisons, counts and selections)."""
    hits = np.zeros(len(ks))
    workers = min(torch.get_num_threads(), len(ks)) if values.size >= PARALLEL_PIXELS else 1
    if workers <= 1:
        _hits_of_rows(values, members, ks, hits, range(len(ks)))
        return torch.from_numpy(hits)
    bounds = np.linspace(0, len(ks), workers + 1).astype(int).tolist()
    with ThreadPoolExecutor(workers) as pool:
        parts = [
            pool.submit(_hits_of_rows, values, members, ks, hits, range(start, stop))
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        for part in parts:
            part.result()
    return torch.from_numpy(hits)


def _hits_of_rows(
    values: np.ndarray, members: np.ndarray, ks: list[int], hits: np.ndarray, rows: range
) -> None:
    masks = [np.empty(values.shape[1], dtype=bool) for _ in range(3)]
    for i in rows:
        if ks[i] > 0:
            hits[i] = _row_hits(values[i], members[i], ks[i], masks)


def _row_hits(row: np.ndarray, member: np.ndarray, k: int, masks: list[np.ndarray]) -> float:
    """The count for one map; ``masks`` are three work buffers of the row's length."""
    found = _top_candidates(row, member, k, masks[0]) if k * CANDIDATE_SHARE <= row.size else None
    if found is not None:  # a small region: the values above a bound of the k-th hold every count
        values, members = found
        kth, greater, equal = _select(values.copy(), k, 0)
    else:
        values, members = row, member
        band, above = _bracket(row, k, masks)
        kth, greater, equal = _select(band, k, above)
    scratch = masks[0][: values.size]
    np.logical_and(np.greater_equal(values, kth, out=scratch), members, out=scratch)
    in_at_least = np.count_nonzero(scratch)
    if equal == k - greater:  # every value equal to the K-th is in the top K (always so without ties)
        return float(in_at_least)
    np.logical_and(np.greater(values, kth, out=scratch), members, out=scratch)
    in_above = np.count_nonzero(scratch)
    return in_above + (k - greater) * (in_at_least - in_above) / equal


def _top_candidates(
    row: np.ndarray, member: np.ndarray, k: int, scratch: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The values of ``row`` at or above a lower bound of its ``k``-th largest, and whether each is in the
    region (None where the sample gives no bound that holds)."""
    bounds = _sample_bounds(row, k)
    if bounds is None or bounds[1] < 0:
        return None
    sample, low, _ = bounds
    at = np.flatnonzero(np.greater_equal(row, sample[low], out=scratch))
    return (row[at], member[at]) if at.size >= k else None


def _sample_bounds(row: np.ndarray, k: int) -> tuple[np.ndarray, int, int] | None:
    """Every :data:`SAMPLE_STRIDE`-th value of ``row``, sorted, and the positions in it :data:`BRACKET_SPREAD`
    standard deviations below and above where the ``k``-th largest value would fall (None for a map too
    small to sample)."""
    if row.size < MIN_BRACKETED_PIXELS:
        return None
    sample = np.sort(row[::SAMPLE_STRIDE])
    fraction = (row.size - k) / row.size  # of the values below the k-th largest
    centre = fraction * sample.size
    spread = BRACKET_SPREAD * math.sqrt(sample.size * fraction * (1 - fraction))
    return sample, math.floor(centre - spread - 1), math.ceil(centre + spread + 1)


def _select(band: np.ndarray, k: int, greater: int) -> tuple[float, int, int]:
    """The ``k``-th largest value of a map from ``band`` (reordered in place), which holds it and every value
    equal to it, with ``greater`` values of the map above ``band``; and how many of the map's values lie
    above it and equal it."""
    position = band.size - (k - greater)
    band.partition(position)
    kth = band[position]
    greater += int(np.count_nonzero(band[position + 1 :] > kth))
    return kth, greater, int(np.count_nonzero(band == kth))


def _bracket(row: np.ndarray, k: int, masks: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """A copy of the values of ``row`` in ``[lo, hi)``, two bounds of its ``k``-th largest value, and how
    many lie at or above ``hi`` (all values and 0 where the sample gives no bracket that holds)."""
    bounds = _sample_bounds(row, k)
    if bounds is None:
        return row.copy(), 0
    sample, low, high = bounds
    if low < 0 or high >= sample.size:  # the k-th value is near the top or bottom: no narrow bracket
        return row.copy(), 0
    scratch, at_low, at_high = masks
    above_high = int(np.count_nonzero(np.greater_equal(row, sample[high], out=at_high)))
    above_low = int(np.count_nonzero(np.greater_equal(row, sample[low], out=at_low)))
    if not above_high < k <= above_low:
        return row.copy(), 0
    # halve the bracket on the sample's values, by counting, while that is cheaper than copying it out
    while above_low - above_high > BAND_PIXELS and high - low > 1:
        middle = (low + high) // 2
        above = int(np.count_nonzero(np.greater_equal(row, sample[middle], out=scratch)))
        if above >= k:
            low, above_low, scratch, at_low = middle, above, at_low, scratch
        else:
            high, above_high, scratch, at_high = middle, above, at_high, scratch
    masks[:] = scratch, at_low, at_high
    return row[np.flatnonzero(np.not_equal(at_low, at_high, out=scratch))], above_high


def _hits_torch(values: Tensor, members: Tensor, k: Tensor) -> Tensor:
    kth = kth_largest(values, k.clamp(min=1))[:, None]
    above, equal = values > kth, values == kth
    slots_left = (k - above.sum(dim=1)).to(torch.float64)
    in_equal = (equal & members).sum(dim=1)
    return (above & members).sum(dim=1) + slots_left * in_equal / equal.sum(dim=1)


def kth_largest(values: Tensor, k: Tensor) -> Tensor:
    """The ``k[i]``-th largest value of each row of ``values`` ``[N, P]`` (``1 <= k[i] <= P``), ``[N]``.

    ``torch.topk`` reads rows whose ``k`` lies in the upper half from their largest values and the others as
    the ``(P - k + 1)``-th smallest, so neither selection is longer than half a row.
    """
    pixels = values.shape[1]
    kth = torch.empty(values.shape[0], dtype=values.dtype, device=values.device)
    from_bottom = k > pixels // 2
    for rows_here, largest, rank in ((~from_bottom, True, k), (from_bottom, False, pixels - k + 1)):
        if not bool(rows_here.any()):
            continue
        chosen, wanted = (values, rank) if bool(rows_here.all()) else (values[rows_here], rank[rows_here])
        best = chosen.topk(int(wanted.max()), dim=1, largest=largest, sorted=True).values
        kth[rows_here] = best.gather(1, (wanted - 1)[:, None])[:, 0]
    return kth


__all__ = [
    "BAND_PIXELS",
    "BRACKET_SPREAD",
    "CANDIDATE_SHARE",
    "MIN_BRACKETED_PIXELS",
    "PARALLEL_PIXELS",
    "SAMPLE_STRIDE",
    "kth_largest",
    "top_k_hits",
]
