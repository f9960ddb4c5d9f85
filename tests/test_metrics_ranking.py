"""The top-K count behind relevance_rank on maps large enough for the bracketed selection, against a full
sort in float64, and the per-image region count against torch's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cam_audit.metrics import functional as F
from cam_audit.metrics import ranking, reductions


def sorted_hits(a: np.ndarray, s: np.ndarray, k: int) -> float:
    """|top_k ∩ region| with ties shared in proportion, from a full sort in float64."""
    values = a.ravel().astype(np.float64)
    members = s.ravel()
    kth = np.sort(values)[::-1][k - 1]
    above, equal = values > kth, values == kth
    return float((above & members).sum() + (k - above.sum()) * (equal & members).sum() / equal.sum())


def cam_like(n: int, size: int, seed: int) -> torch.Tensor:
    """Upsampled coarse ReLU maps: smooth, with exact zeros over much of the image."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.relu(torch.randn(n, 1, 7, 7, generator=generator))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").squeeze(1)


def random_boxes(n: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    regions = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        top, left = torch.randint(0, size - 4, (2,), generator=generator).tolist()
        height, width = torch.randint(1, size, (2,), generator=generator).tolist()
        regions[i, top : top + height, left : left + width] = True
    return regions


BATCHES = {
    "peaked": lambda: torch.rand(12, 48, 48, generator=torch.Generator().manual_seed(1)) ** 4,
    "cam": lambda: cam_like(12, 48, 2),
    "coarse levels": lambda: (cam_like(12, 48, 3) * 4).round() / 4,  # zeros and many ties
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
@pytest.mark.parametrize("batch", sorted(BATCHES))
def test_top_k_hits_match_a_full_sort_for_every_k(batch, dtype):
    maps = BATCHES[batch]().to(dtype)
    regions = random_boxes(len(maps), 48, 4)
    pixels = 48 * 48
    assert pixels >= ranking.MIN_BRACKETED_PIXELS  # the bracketed selection runs
    for k in (1, 2, 17, 230, 1000, pixels // 2, pixels - 300, pixels - 1, pixels):
        ks = torch.full((len(maps),), k)
        expected = [sorted_hits(a, s, k) for a, s in zip(maps.numpy(), regions.numpy(), strict=True)]
        got = ranking.top_k_hits(maps, regions, ks)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-9, err_msg=f"k={k}")


def test_a_small_region_is_counted_among_the_values_above_a_bound(monkeypatch):
    """``K`` at most an eighth of the map: the shorter way runs (a spy sees it give the values), and its
    counts equal a full sort's, ties included (peaked maps of 9 levels; no spatial pattern misleads the
    sample)."""
    maps = ((torch.rand(6, 64, 64, generator=torch.Generator().manual_seed(11)) ** 4) * 8).round() / 8
    regions = random_boxes(6, 64, 12)
    k = 64 * 64 // ranking.CANDIDATE_SHARE
    found = []
    spy = ranking._top_candidates
    monkeypatch.setattr(ranking, "_top_candidates", lambda *args: found.append(spy(*args)) or found[-1])
    got = ranking.top_k_hits(maps, regions, torch.full((6,), k))
    expected = [sorted_hits(a, s, k) for a, s in zip(maps.numpy(), regions.numpy(), strict=True)]
    assert len(found) == 6 and all(f is not None and k <= f[0].size for f in found)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-9)


def test_the_cpu_selection_equals_the_topk_selection_used_elsewhere():
    maps = (cam_like(16, 64, 5) * 8).round() / 8
    regions = random_boxes(16, 64, 6)
    k = reductions.count(regions)
    values, members = maps.reshape(16, -1), regions.reshape(16, -1)
    assert torch.equal(ranking.top_k_hits(maps, regions, k), ranking._hits_torch(values, members, k))


def test_the_bracket_is_narrow_on_ordinary_maps_and_the_whole_map_when_the_sample_misleads():
    pixels = 64 * 64
    masks = [np.empty(pixels, dtype=bool) for _ in range(3)]
    row = (torch.rand(pixels, generator=torch.Generator().manual_seed(7)) ** 4).numpy()
    band, greater = ranking._bracket(row, 400, masks)
    assert 0 < band.size <= ranking.BAND_PIXELS and greater < 400 <= greater + band.size
    # every sampled pixel is larger than every other pixel: the sample says nothing about the rest
    tricky = np.linspace(0.0, 1.0, pixels, dtype=np.float32)
    tricky[:: ranking.SAMPLE_STRIDE] += 2.0
    band, greater = ranking._bracket(tricky, 400, masks)
    assert band.size == tricky.size and greater == 0  # the whole map
    regions = np.zeros(pixels, dtype=bool)
    regions[-400:] = True  # the largest unsampled values, and 25 sampled ones
    expected = sorted_hits(tricky, regions, 400)
    maps, members = torch.from_numpy(tricky)[None, None], torch.from_numpy(regions)[None, None]
    hits = ranking.top_k_hits(maps, members, torch.tensor([400]))
    assert float(hits[0]) == expected and 0 < expected < 400


def test_relevance_rank_on_large_maps_matches_the_full_sort_reference():
    maps = (cam_like(10, 64, 8) * 16).round() / 16
    regions = random_boxes(10, 64, 9)
    regions[3] = False
    maps[4] = 0.0
    expected = []
    for a, s in zip(maps.numpy(), regions.numpy(), strict=True):
        k = int(s.sum())
        expected.append(math.nan if k == 0 or a.max() == 0 else sorted_hits(a, s, k) / k)
    np.testing.assert_allclose(F.relevance_rank(maps, regions).double().numpy(), expected, atol=1e-7)


@pytest.mark.parametrize("shape", [(5, 40, 40), (3, 7, 200), (4, 3, 5), (0, 40, 40), (2, 0, 40)])
def test_region_counts_per_image_equal_torch_sums(shape):
    regions = torch.rand(shape, generator=torch.Generator().manual_seed(2)) > 0.6
    counted = reductions.count(regions)
    assert counted.dtype == torch.int64
    expected = regions.flatten(1).sum(dim=1) if shape[0] else torch.zeros(0, dtype=torch.int64)
    assert torch.equal(counted, expected)


def test_maps_shared_out_among_threads_give_the_same_counts(monkeypatch):
    maps = (cam_like(9, 48, 10) * 8).round() / 8
    regions = random_boxes(9, 48, 11)
    k = reductions.count(regions)
    alone = ranking.top_k_hits(maps, regions, k)
    monkeypatch.setattr(ranking, "PARALLEL_PIXELS", 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        shared = ranking.top_k_hits(maps, regions, k)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(shared, alone) and int((alone > 0).sum()) >= 5
