"""Behaviour of cam_audit.metrics.functional, checked against plain-Python float64 references."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from cam_audit.errors import CamAuditError
from cam_audit.metrics import functional as F
from cam_audit.metrics import reductions

MAP_SCORES = [F.relevance_mass, F.mass_lift, F.pointing_game, F.relevance_rank]


def box_regions(n: int, h: int, w: int, top: int, left: int, bottom: int, right: int) -> torch.Tensor:
    regions = torch.zeros(n, h, w, dtype=torch.bool)
    regions[:, top:bottom, left:right] = True
    return regions


# ---------------------------------------------------------------- plain-Python float64 references


def reference_relevance_mass(a: np.ndarray, s: np.ndarray) -> float:
    inside = total = 0.0
    for value, member in zip(a.ravel().tolist(), s.ravel().tolist(), strict=True):
        total += value
        inside += value if member else 0.0
    if total == 0.0 or not s.any():
        return math.nan
    return inside / total


def reference_area_fraction(s: np.ndarray) -> float:
    return sum(1 for member in s.ravel().tolist() if member) / s.size


def reference_pointing_game(a: np.ndarray, s: np.ndarray, tolerance: int) -> float:
    if not s.any() or a.max() == 0.0:
        return math.nan
    h, w = a.shape
    peaks = [(i, j) for i in range(h) for j in range(w) if a[i, j] == a.max()]
    members = [(i, j) for i in range(h) for j in range(w) if s[i, j]]
    for pi, pj in peaks:
        for ri, rj in members:
            if max(abs(pi - ri), abs(pj - rj)) <= tolerance:
                return 1.0
    return 0.0


def reference_relevance_rank_without_ties(a: np.ndarray, s: np.ndarray) -> float:
    values = a.ravel().tolist()
    members = s.ravel().tolist()
    k = sum(members)
    if k == 0 or max(values) == 0.0:
        return math.nan
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=True)
    return sum(1 for i in order[:k] if members[i]) / k


def assert_close_with_nan(actual: torch.Tensor, expected: list[float], atol: float = 1e-6) -> None:
    assert actual.dtype == torch.float32
    torch.testing.assert_close(
        actual.double(), torch.tensor(expected, dtype=torch.float64), atol=atol, rtol=0, equal_nan=True
    )


@pytest.fixture
def random_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Six 9x11 maps without ties (one with a zero background) and random boxes, one of them empty."""
    torch.manual_seed(0)
    maps = torch.rand(6, 9, 11) + 1e-3
    maps[2] = torch.relu(torch.randn(9, 11)) + torch.arange(99).reshape(9, 11) * 1e-6  # small ramp: no ties
    regions = torch.zeros(6, 9, 11, dtype=torch.bool)
    for i in range(5):
        top, left = torch.randint(0, 6, (2,)).tolist()
        height, width = torch.randint(1, 5, (2,)).tolist()
        regions[i, top : top + height, left : left + width] = True
    return maps, regions  # regions[5] stays empty


# ---------------------------------------------------------------- brute-force agreement


def test_relevance_mass_matches_float64_reference(random_batch):
    maps, regions = random_batch
    expected = [
        reference_relevance_mass(a, s) for a, s in zip(maps.double().numpy(), regions.numpy(), strict=True)
    ]
    assert_close_with_nan(F.relevance_mass(maps, regions), expected)
    assert math.isnan(expected[5])


def test_area_fraction_matches_reference(random_batch):
    _, regions = random_batch
    assert_close_with_nan(F.area_fraction(regions), [reference_area_fraction(s) for s in regions.numpy()])


def test_mass_lift_matches_float64_reference(random_batch):
    maps, regions = random_batch
    expected = [
        reference_relevance_mass(a, s) / reference_area_fraction(s) if s.any() else math.nan
        for a, s in zip(maps.double().numpy(), regions.numpy(), strict=True)
    ]
    assert_close_with_nan(F.mass_lift(maps, regions), expected, atol=1e-5)


@pytest.mark.parametrize("tolerance", [0, 1, 3, 7])
def test_pointing_game_matches_brute_force(random_batch, tolerance):
    maps, regions = random_batch
    expected = [
        reference_pointing_game(a, s, tolerance)
        for a, s in zip(maps.double().numpy(), regions.numpy(), strict=True)
    ]
    assert_close_with_nan(F.pointing_game(maps, regions, tolerance=tolerance), expected)


def test_relevance_rank_matches_sorted_reference_without_ties(random_batch):
    maps, regions = random_batch
    assert all(len(torch.unique(m)) == m.numel() for m in maps)
    expected = [
        reference_relevance_rank_without_ties(a, s)
        for a, s in zip(maps.double().numpy(), regions.numpy(), strict=True)
    ]
    assert_close_with_nan(F.relevance_rank(maps, regions), expected)


def test_relevance_rank_with_ties_is_the_mean_over_random_tie_orders():
    """Ties are shared out: the score equals the average of Quantus-style top-K over random tie orders."""
    torch.manual_seed(1)
    maps = torch.randint(0, 4, (1, 6, 6)).float()  # four levels: many ties
    regions = box_regions(1, 6, 6, 1, 1, 4, 5)
    a = maps[0].numpy().ravel()
    s = regions[0].numpy().ravel()
    k = int(s.sum())
    rng = random.Random(0)
    draws = []
    for _ in range(4000):
        noise = [rng.random() for _ in a]  # a random order among equal values
        order = sorted(range(len(a)), key=lambda i: (a[i], noise[i]), reverse=True)
        draws.append(sum(1 for i in order[:k] if s[i]) / k)
    monte_carlo = sum(draws) / len(draws)
    assert abs(float(F.relevance_rank(maps, regions)[0]) - monte_carlo) < 0.01
    assert min(draws) < monte_carlo < max(draws)  # the tie order matters for this map


# ---------------------------------------------------------------- documented behaviour


@pytest.mark.parametrize("score", MAP_SCORES, ids=lambda f: f.__name__)
def test_focus_is_nan_for_empty_region(score):
    maps = torch.rand(2, 8, 8) + 0.1
    regions = box_regions(2, 8, 8, 2, 2, 5, 5)
    regions[1] = False
    out = score(maps, regions)
    assert not math.isnan(float(out[0]))
    assert math.isnan(float(out[1]))


@pytest.mark.parametrize("score", MAP_SCORES, ids=lambda f: f.__name__)
def test_focus_is_nan_for_all_zero_map(score):
    maps = torch.rand(2, 8, 8) + 0.1
    maps[1] = 0.0
    out = score(maps, box_regions(2, 8, 8, 2, 2, 5, 5))
    assert not math.isnan(float(out[0]))
    assert math.isnan(float(out[1]))


def test_uniform_map_gives_lift_one_and_mass_equal_to_area():
    regions = torch.stack([box_regions(1, 10, 10, 0, 0, 3, 3)[0], box_regions(1, 10, 10, 2, 1, 9, 7)[0]])
    maps = torch.full((2, 10, 10), 0.37)
    torch.testing.assert_close(F.mass_lift(maps, regions), torch.ones(2))
    torch.testing.assert_close(F.relevance_mass(maps, regions), torch.tensor([0.09, 0.42]))
    torch.testing.assert_close(F.relevance_rank(maps, regions), torch.tensor([0.09, 0.42]))
    assert F.pointing_game(maps, regions).tolist() == [1.0, 1.0]  # every pixel is a maximum


def test_map_entirely_inside_region_gives_mass_one():
    torch.manual_seed(2)
    regions = box_regions(3, 12, 12, 3, 4, 9, 10)
    maps = torch.rand(3, 12, 12) * regions
    torch.testing.assert_close(F.relevance_mass(maps, regions), torch.ones(3))
    torch.testing.assert_close(F.mass_lift(maps, regions), torch.full((3,), 144 / 36))
    assert F.pointing_game(maps, regions).tolist() == [1.0, 1.0, 1.0]


def test_full_region_gives_mass_one_and_lift_one():
    maps = torch.rand(2, 5, 7)
    regions = torch.ones(2, 5, 7, dtype=torch.bool)
    torch.testing.assert_close(F.relevance_mass(maps, regions), torch.ones(2))
    torch.testing.assert_close(F.mass_lift(maps, regions), torch.ones(2))
    torch.testing.assert_close(F.relevance_rank(maps, regions), torch.ones(2))


@pytest.mark.parametrize("score", MAP_SCORES, ids=lambda f: f.__name__)
def test_scores_are_invariant_to_map_scale(score, random_batch):
    maps, regions = random_batch
    torch.testing.assert_close(score(maps * 7, regions), score(maps, regions), equal_nan=True)


def test_pointing_game_tolerance_uses_square_dilation():
    regions = box_regions(1, 9, 9, 2, 2, 4, 4)  # rows and columns 2..3
    maps = torch.zeros(1, 9, 9)
    maps[0, 6, 6] = 1.0  # 3 rows and 3 columns from the box corner (3, 3): Chebyshev distance 3
    results = [float(F.pointing_game(maps, regions, tolerance=t)[0]) for t in range(5)]
    assert results == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("direction", [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])
def test_pointing_game_tolerance_is_the_same_in_every_direction(direction):
    """A one-pixel region at the centre; the peak exactly `distance` pixels away in each of 8 directions."""
    regions = box_regions(1, 11, 11, 5, 5, 6, 6)
    for distance in (1, 2, 4):
        maps = torch.zeros(1, 11, 11)
        maps[0, 5 + direction[0] * distance, 5 + direction[1] * distance] = 1.0
        assert float(F.pointing_game(maps, regions, tolerance=distance)[0]) == 1.0
        assert float(F.pointing_game(maps, regions, tolerance=distance - 1)[0]) == 0.0


def test_pointing_game_tolerance_reaches_across_the_image_border():
    regions = box_regions(1, 4, 4, 0, 0, 1, 1)
    maps = torch.zeros(1, 4, 4)
    maps[0, 3, 3] = 2.0
    assert float(F.pointing_game(maps, regions, tolerance=2)[0]) == 0.0
    assert float(F.pointing_game(maps, regions, tolerance=3)[0]) == 1.0
    assert float(F.pointing_game(maps, regions, tolerance=100)[0]) == 1.0


def test_pointing_game_tie_is_a_hit_if_any_maximum_is_inside():
    regions = box_regions(1, 6, 6, 0, 0, 2, 2)
    maps = torch.zeros(1, 6, 6)
    maps[0, 5, 5] = 1.0
    maps[0, 1, 1] = 1.0
    assert float(F.pointing_game(maps, regions)[0]) == 1.0
    maps[0, 1, 1] = 0.999
    assert float(F.pointing_game(maps, regions)[0]) == 0.0


def test_empty_batch_gives_empty_scores():
    maps = torch.zeros(0, 4, 4)
    regions = torch.zeros(0, 4, 4, dtype=torch.bool)
    for score in [*MAP_SCORES]:
        out = score(maps, regions)
        assert out.shape == (0,) and out.dtype == torch.float32
    assert F.area_fraction(regions).shape == (0,)


def test_float64_and_grad_maps_are_read_not_changed():
    torch.manual_seed(3)
    maps = torch.rand(2, 6, 6, dtype=torch.float64, requires_grad=True)
    regions = box_regions(2, 6, 6, 1, 1, 3, 4)
    before, version = maps.detach().clone(), maps._version
    for score in MAP_SCORES:
        out = score(maps, regions)
        assert out.dtype == torch.float32 and not out.requires_grad
    assert maps._version == version
    torch.testing.assert_close(maps.detach(), before, rtol=0, atol=0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("score", MAP_SCORES, ids=lambda f: f.__name__)
def test_mismatched_shapes_raise_naming_both_shapes(score):
    with pytest.raises(CamAuditError, match=r"maps \(2, 8, 8\) and regions \(2, 4, 4\)"):
        score(torch.rand(2, 8, 8), torch.zeros(2, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("score", MAP_SCORES, ids=lambda f: f.__name__)
def test_unbatched_map_raises_and_suggests_adding_a_batch_dimension(score):
    with pytest.raises(CamAuditError, match=r"maps must be batched \[N, H, W\].*\(8, 8\).*maps\[None\]"):
        score(torch.rand(8, 8), torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(CamAuditError, match=r"squeeze\(1\)"):
        score(torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.bool))


@pytest.mark.parametrize("score", MAP_SCORES, ids=lambda f: f.__name__)
def test_signed_map_raises_naming_the_sample(score):
    maps = torch.rand(3, 5, 5)
    maps[2, 1, 1] = -0.5
    with pytest.raises(CamAuditError, match=r"maps\[2\] has negative values.*meaningless on signed maps"):
        score(maps, box_regions(3, 5, 5, 0, 0, 2, 2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_map_raises_naming_the_sample(bad):
    maps = torch.rand(3, 5, 5)
    maps[1, 0, 0] = bad
    with pytest.raises(CamAuditError, match=r"maps\[1\] has NaN or infinite values"):
        F.relevance_mass(maps, box_regions(3, 5, 5, 0, 0, 2, 2))


def test_non_bool_regions_raise_with_the_fix():
    with pytest.raises(CamAuditError, match=r"regions must be a bool tensor.*regions > 0.5"):
        F.relevance_mass(torch.rand(1, 4, 4), torch.ones(1, 4, 4))
    with pytest.raises(CamAuditError, match="regions must be a bool tensor"):
        F.area_fraction(torch.ones(1, 4, 4, dtype=torch.uint8))


def test_integer_maps_and_non_tensors_raise():
    with pytest.raises(CamAuditError, match="floating-point"):
        F.relevance_mass(torch.ones(1, 4, 4, dtype=torch.int64), torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(CamAuditError, match="got ndarray"):
        F.relevance_mass(np.ones((1, 4, 4)), torch.ones(1, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("tolerance", [-1, 1.5, True])
def test_pointing_game_rejects_bad_tolerance(tolerance):
    with pytest.raises(CamAuditError, match="tolerance must be a non-negative int"):
        F.pointing_game(torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool), tolerance=tolerance)


def test_errors_are_value_errors_for_callers_that_do_not_know_cam_audit():
    with pytest.raises(ValueError):
        F.relevance_mass(torch.rand(4, 4), torch.ones(4, 4, dtype=torch.bool))


# ---------------------------------------------------------------- fast paths give the reference values


def reference_relevance_rank(a: np.ndarray, s: np.ndarray) -> float:
    """Ties shared out as documented, from a full sort in float64."""
    values, members = a.ravel().astype(np.float64), s.ravel()
    k = int(members.sum())
    if k == 0 or values.max() == 0.0:
        return math.nan
    kth = np.sort(values)[::-1][k - 1]
    above, equal = values > kth, values == kth
    share = (k - above.sum()) * (equal & members).sum() / equal.sum()
    return float(((above & members).sum() + share) / k)


@pytest.fixture
def tied_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """CAM-like maps (a zero background, values on a coarse grid: many ties) and regions from empty to
    full, several larger than half the image."""
    torch.manual_seed(4)
    maps = (torch.relu(torch.randn(7, 12, 10)) * 4).round() / 4  # exact in bfloat16 too
    regions = torch.zeros(7, 12, 10, dtype=torch.bool)
    regions[0, 2:5, 3:6] = True
    regions[1, :, :7] = True  # 84 of 120 pixels
    regions[2] = True
    regions[3, 1:11, 1:9] = True  # 80 of 120
    regions[4, 6:, :] = True
    regions[5, 0, 0] = True  # regions[6] stays empty
    return maps, regions


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_relevance_rank_with_ties_and_large_regions_matches_a_full_sort(tied_batch, dtype):
    maps, regions = tied_batch
    expected = [reference_relevance_rank(a, s) for a, s in zip(maps.numpy(), regions.numpy(), strict=True)]
    assert sum(1 for e in expected if not math.isnan(e) and 0 < e < 1) >= 3
    assert_close_with_nan(F.relevance_rank(maps.to(dtype), regions), expected)


def test_scores_of_large_batches_are_computed_slice_by_slice_with_the_same_values(monkeypatch, random_batch):
    maps, regions = random_batch
    whole = [score(maps, regions) for score in MAP_SCORES]
    monkeypatch.setattr(
        reductions, "WORK_BYTES", 2 * maps[0].numel() * maps.element_size()
    )  # two maps per slice
    for score, expected in zip(MAP_SCORES, whole, strict=True):
        torch.testing.assert_close(score(maps, regions), expected, rtol=0, atol=0, equal_nan=True)


def test_mass_of_finite_maps_whose_row_sums_overflow_float32():
    maps = torch.full((2, 4, 8), 3e38)  # finite, but a row of eight sums past float32's largest value
    maps[1, :, 4:] = 1e38
    regions = box_regions(2, 4, 8, 0, 0, 4, 4)
    torch.testing.assert_close(F.relevance_mass(maps, regions), torch.tensor([0.5, 0.75]))


@pytest.mark.parametrize("tolerance", [0, 2])
@pytest.mark.parametrize("batch", ["random_batch", "tied_batch"])
def test_localisation_equals_each_score_on_its_own(request, batch, tolerance):
    maps, regions = request.getfixturevalue(batch)
    together = F.localisation(maps, regions, tolerance=tolerance)
    alone = {
        "area_fraction": F.area_fraction(regions),
        "relevance_mass": F.relevance_mass(maps, regions),
        "mass_lift": F.mass_lift(maps, regions),
        "pointing_game": F.pointing_game(maps, regions, tolerance=tolerance),
        "relevance_rank": F.relevance_rank(maps, regions),
    }
    assert list(together) == list(F.LOCALISATION_SCORES)
    for name, expected in alone.items():
        torch.testing.assert_close(together[name], expected, rtol=0, atol=0, equal_nan=True)
    only = F.localisation(maps, regions, ("pointing_game",), tolerance=tolerance)
    assert list(only) == ["pointing_game"]
    torch.testing.assert_close(only["pointing_game"], alone["pointing_game"], equal_nan=True)


def test_localisation_names_the_scores_it_knows():
    with pytest.raises(CamAuditError, match="'focus' is not a score; choose from area_fraction"):
        F.localisation(torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool), ("focus",))
