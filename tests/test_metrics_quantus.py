"""Value-for-value agreement with Quantus 0.6.0, read from tests/data/quantus_reference.json.

Correspondence (Quantus metric -> ours), on maps >= 0:

- ``RelevanceMassAccuracy`` (any normalisation)     -> ``relevance_mass``
- ``AttributionLocalisation`` (weighted=False)      -> ``relevance_mass`` (it is the same ratio)
- ``Focus`` on a 2x2 mosaic                         -> ``relevance_mass`` with the target quadrants as region
- ``RelevanceMassAccuracy`` / area fraction         -> ``mass_lift`` (Quantus has no lift)
- ``PointingGame`` (weighted=False)                 -> ``pointing_game`` with tolerance 0
- ``RelevanceRankAccuracy``                         -> ``relevance_rank``
- ``AttributionLocalisation(weighted=True)``        -> none: it multiplies by the region size (last test)

Where Quantus is known to be wrong (tests/data/README.md) or where we chose a different,
documented rule, the test asserts our value and that Quantus's differs, citing the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from cam_audit.errors import CamAuditError
from cam_audit.metrics import functional as F

ORACLE = Path(__file__).resolve().parent / "data" / "quantus_reference.json"
TOLERANCE = 1e-6
NAN = math.nan

REFERENCE = json.loads(ORACLE.read_text())

CASES = {case["name"]: case for case in REFERENCE["cases"]}
MODES = ("batched", "single")

# Faults of Quantus 0.6.0 listed in tests/data/README.md, and our documented values instead.
EMPTY_MASK_POINTING = (
    NAN,
    "Quantus PointingGame gives 1.0 for an empty mask (README); nothing to point at: NaN",
)
ZERO_MAP_POINTING = (NAN, "Quantus PointingGame scores an all-zero map as a hit; nothing was pointed at: NaN")
ZERO_MAP_LOCALISATION = (
    NAN,
    "Quantus AttributionLocalisation gives 0.0 for an all-zero map, RelevanceMassAccuracy NaN (README)",
)
# Quantus RelevanceRankAccuracy breaks ties by np.argsort order, i.e. by pixel position. We share tied pixels
# out in proportion (the expected score over random tie orders), see relevance_rank's docstring.
UNIFORM_RANK = (256 / 1024, "all 1024 pixels tie: the expected share of a random top-256 in a 256-pixel box")
# tied_max_one_in_one_out: the two non-zero pixels tie at the max, one inside the 256-pixel box; the other
# 254 of the top 256 come from the 1022 zero pixels, 255 of which lie in the box.
TIED_MAX_RANK = ((1 + 254 * 255 / 1022) / 256, "254 slots shared among 1022 tied zeros, 255 of them inside")
ZERO_MAP_RANK = (
    NAN,
    "Quantus RelevanceRankAccuracy gives 0.0 for an all-zero map; no pixel is relevant: NaN",
)


@dataclass(frozen=True)
class Correspondence:
    """How one Quantus configuration maps onto one of our functions."""

    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    # Quantus took |a| (abs=True) or max(a, 0) before scoring. We refuse signed maps; the user makes the
    # same choice explicitly, and then we must agree with Quantus. None: we refuse and do not compare.
    signed_choice: Callable[[torch.Tensor], torch.Tensor] | None = None
    faults: dict[str, tuple[float, str]] = field(default_factory=dict)


MASS_FAULTS = {"zero_map": ZERO_MAP_LOCALISATION}
POINTING_FAULTS = {"empty_mask": EMPTY_MASK_POINTING, "zero_map": ZERO_MAP_POINTING}
CORRESPONDENCES = {
    "RelevanceMassAccuracy": Correspondence(F.relevance_mass),
    "RelevanceMassAccuracy_nonorm": Correspondence(F.relevance_mass),
    "RelevanceMassAccuracy_abs": Correspondence(F.relevance_mass, signed_choice=torch.abs),
    "AttributionLocalisation_default_abs": Correspondence(F.relevance_mass, torch.abs, MASS_FAULTS),
    "AttributionLocalisation_default_positive": Correspondence(F.relevance_mass, torch.abs, MASS_FAULTS),
    "AttributionLocalisation_noabs": Correspondence(F.relevance_mass, None, MASS_FAULTS),
    "AttributionLocalisation_noabs_positive": Correspondence(
        F.relevance_mass, lambda a: a.clamp(min=0), MASS_FAULTS
    ),
    "PointingGame": Correspondence(F.pointing_game, None, POINTING_FAULTS),
    "PointingGame_abs": Correspondence(F.pointing_game, torch.abs, POINTING_FAULTS),
    "RelevanceRankAccuracy": Correspondence(
        F.relevance_rank,
        None,
        {"uniform": UNIFORM_RANK, "tied_max_one_in_one_out": TIED_MAX_RANK, "zero_map": ZERO_MAP_RANK},
    ),
}
# Not compared: PointingGame_weighted raises inside Quantus for every case (README), TopKIntersection uses a
# fixed k (we have no fixed-k score), AUC and the concept variants have no counterpart here.


def case_tensors(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The map (the exact float32 values Quantus received) and the 0/1 mask as a region, both [1, H, W]."""
    return torch.tensor(case["a"], dtype=torch.float32)[None], torch.tensor(case["s"]).bool()[None]


def same(ours: float, expected: float | None, tolerance: float = TOLERANCE) -> bool:
    expected = NAN if expected is None else expected
    if math.isnan(expected) or math.isnan(ours):
        return math.isnan(expected) and math.isnan(ours)
    return abs(ours - expected) <= tolerance


def quantus_refused(value: object) -> bool:
    """Quantus refuses a constant map when run alone ("all equal to one/zero"): no value to compare."""
    return isinstance(value, str) and "are all equal to" in value


PARAMS = [
    pytest.param(config, mode, name, id=f"{config}-{mode}-{name}")
    for config in CORRESPONDENCES
    for mode in MODES
    for name in CASES
]


@pytest.mark.parametrize(("config", "mode", "name"), PARAMS)
def test_matches_quantus(config: str, mode: str, name: str) -> None:
    spec = CORRESPONDENCES[config]
    quantus = REFERENCE["results"][config][mode][name]
    maps, regions = case_tensors(CASES[name])

    if (maps < 0).any():
        with pytest.raises(CamAuditError, match="negative values"):
            spec.score(maps, regions)
        if spec.signed_choice is None:
            if config.startswith("RelevanceMassAccuracy"):
                # README: RelevanceMassAccuracy on signed maps leaves [0, 1] (3.13 on signed_pos_in_neg_out).
                assert not 0.0 <= quantus <= 1.0
            return
        maps = spec.signed_choice(maps)

    ours = float(spec.score(maps, regions)[0])
    if name in spec.faults:
        documented, reason = spec.faults[name]
        assert same(ours, documented), f"ours {ours} != documented {documented} ({reason})"
        assert quantus_refused(quantus) or not same(quantus, documented), f"Quantus now agrees: {reason}"
        return
    if quantus_refused(quantus):
        # Alone, Quantus refuses a constant map; in a batch it scores it. Ours equals its batched value.
        quantus = REFERENCE["results"][config]["batched"][name]
    assert same(ours, quantus), f"{config} {mode} {name}: ours {ours}, Quantus {quantus}"


@pytest.mark.parametrize("name", list(CASES))
def test_mass_lift_is_quantus_relevance_mass_over_area_fraction(name: str) -> None:
    maps, regions = case_tensors(CASES[name])
    quantus_mass = REFERENCE["results"]["RelevanceMassAccuracy_nonorm"]["batched"][name]
    if (maps < 0).any():
        with pytest.raises(CamAuditError, match="meaningless on signed maps"):
            F.mass_lift(maps, regions)
        return
    fraction = sum(map(sum, CASES[name]["s"])) / 1024
    expected = NAN if quantus_mass is None or fraction == 0 else quantus_mass / fraction
    # the lift multiplies the mass's float32 rounding by up to 1024 / 4 (tiny_box_hit)
    assert same(
        float(F.mass_lift(maps, regions)[0]), expected, tolerance=TOLERANCE / fraction if fraction else 0
    )


FOCUS_CASES = {case["name"]: case for case in REFERENCE["focus_cases"]}


@pytest.mark.parametrize("name", list(FOCUS_CASES))
def test_relevance_mass_on_mosaic_quadrants_matches_quantus_focus(name: str) -> None:
    """Quantus Focus: share of relevance in the mosaic quadrants p = [top-left, top-right, bottom-left,
    bottom-right] that hold the target class. The cases use the diagonals [1,0,0,1] and [0,1,1,0], which
    read the same whichever quadrant order Quantus follows."""
    case = FOCUS_CASES[name]
    maps = torch.tensor(case["a"], dtype=torch.float32)[None]
    h, w = maps.shape[1] // 2, maps.shape[2] // 2
    regions = torch.zeros(maps.shape, dtype=torch.bool)
    quadrants = [(slice(0, h), slice(0, w)), (slice(0, h), slice(w, None))]
    quadrants += [(slice(h, None), slice(0, w)), (slice(h, None), slice(w, None))]
    for (rows, cols), holds_target in zip(quadrants, case["p"], strict=True):
        regions[0, rows, cols] = bool(holds_target)
    quantus = REFERENCE["results"]["Focus"]["batched"][name]
    if (maps < 0).any():
        with pytest.raises(CamAuditError, match="negative values"):
            F.relevance_mass(maps, regions)
        return
    assert same(float(F.relevance_mass(maps, regions)[0]), quantus)


def test_quantus_weighted_attribution_localisation_is_not_mass_lift() -> None:
    """AttributionLocalisation(weighted=True) = mass x |region| / 14336 on every case (a size from the wrong
    axis, README): it grows with the region instead of normalising by it, so no score of ours matches."""
    weighted = REFERENCE["results"]["AttributionLocalisation_weighted"]["batched"]
    unweighted = REFERENCE["results"]["AttributionLocalisation_default_abs"]["batched"]
    compared = 0
    for name, case in CASES.items():
        area = sum(map(sum, case["s"]))
        if unweighted[name] in (None, 0.0) or area == 0:
            continue
        assert math.isclose(weighted[name], unweighted[name] * area / 14336, rel_tol=1e-5), name
        maps, regions = case_tensors(case)
        lift = float(F.mass_lift(maps.abs(), regions)[0])
        assert not math.isclose(lift, weighted[name], rel_tol=1e-3), name
        compared += 1
    assert compared >= 10
