"""resize_bilinear: the CAM maps' and the blur's upsampling, as two matrix products on a CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cam_audit.cam.resize import linear_weights, resize_bilinear


def _interpolate(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(values, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((5, 1, 7, 7), (224, 224)),
        ((4, 3, 16, 16), (64, 64)),
        ((3, 2, 7, 9), (33, 20)),
        ((2, 1, 40, 30), (13, 17)),
    ],
    ids=["cam-7-to-224", "blur-16-to-64", "odd-sizes", "down"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resize_equals_interpolate_up_to_rounding(shape, size, dtype):
    values = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    ours, theirs = resize_bilinear(values, size), _interpolate(values, size)
    assert ours.shape == theirs.shape and ours.dtype == dtype
    tolerance = 1e-6 if dtype == torch.float32 else 1e-14
    assert (ours - theirs).abs().max().item() <= tolerance


def test_each_samples_result_is_the_same_in_any_batch():
    """The audit's scores must not depend on the batch size: a sample resized alone gives the same bits."""
    values = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    together = resize_bilinear(values, (64, 64))
    alone = torch.cat([resize_bilinear(values[i : i + 1], (64, 64)) for i in range(len(values))])
    assert torch.equal(together, alone)


def test_maps_at_or_above_zero_stay_so():
    maps = torch.rand(8, 1, 7, 7, generator=torch.Generator().manual_seed(2)) - 0.5
    maps = maps.clamp(min=0)  # a CAM after its ReLU, many exact zeros
    resized = resize_bilinear(maps, (224, 224))
    assert resized.min().item() >= 0.0
    assert (resized == 0).any()  # a region of zeros stays exactly zero


def test_other_dtypes_and_the_same_size_fall_back_to_a_copy_or_interpolate():
    values = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    same = resize_bilinear(values, (8, 8))
    assert torch.equal(same, values) and same.data_ptr() != values.data_ptr()
    half = values.to(torch.bfloat16)
    assert torch.equal(resize_bilinear(half, (32, 32)), _interpolate(half, (32, 32)))


def test_the_weights_are_interpolates_own():
    weights = linear_weights(2, 4, torch.float32)
    assert weights.tolist() == [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]


def test_matrices_first_built_under_inference_mode_serve_autograd_later():
    """The matrices are cached: one first built inside the counterfactual tests' inference mode must not
    become an inference tensor that a later resize of maps that need gradients cannot use."""
    linear_weights.cache_clear()
    with torch.inference_mode():
        resize_bilinear(torch.rand(1, 1, 5, 5), (13, 11))
    maps = torch.rand(1, 1, 5, 5, requires_grad=True)
    resized = resize_bilinear(maps, (13, 11))
    resized.sum().backward()
    assert maps.grad is not None and not linear_weights(5, 11, torch.float32).is_inference()
