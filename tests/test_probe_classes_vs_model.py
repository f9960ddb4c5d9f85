"""A probe's classes against the model's outputs, checked before anything is scored.

Class names sorted from a probe's files shift when a name has a typo (one class too many) or when the
probe has no sample of a class (one too few): the first is an error naming the classes, the second a
warning saying how to pin the order.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from cam_audit import audit
from cam_audit.errors import CamAuditError
from cam_audit.probe import ProbeSet


def _three_class_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


def _probe(labels: list[int], classes: list[str] | None) -> ProbeSet:
    images = torch.rand(len(labels), 3, 16, 16, generator=torch.Generator().manual_seed(1))
    boxes = [torch.tensor([[2.0, 2.0, 10.0, 10.0]]) for _ in labels]
    return ProbeSet.from_tensors(images, labels, boxes=boxes, classes=classes)


def test_a_probe_with_a_class_too_many_is_refused_naming_its_classes():
    # a case typo made a fourth class; the first sample is of class 3, which the model lacks
    probe = _probe([3, 0, 1, 2], ["Triangle", "disc", "square", "triangle"])
    with pytest.raises(CamAuditError) as raised:
        audit(_three_class_model(), probe, target_layer="0", counterfactual=False)
    message = str(raised.value)
    assert "the probe has 4 classes (Triangle, disc, square, triangle)" in message
    assert "classes=[...]" in message
    assert "targets[" not in message  # not a bad label: the probe's classes are what is wrong


def test_a_named_probe_with_a_class_too_few_warns_how_to_pin_the_order():
    probe = _probe([0, 1, 0, 1], ["disc", "triangle"])  # no 'square' sample: 'triangle' became class 1
    with pytest.warns(UserWarning, match=r"the probe has 2 classes \(disc, triangle\) but the model decides "
                      r"among 3.*pass classes=\[\.\.\.\]"):  # fmt: skip
        report = audit(_three_class_model(), probe, target_layer="0", counterfactual=False)
    assert report.summary["n_samples"] == 4  # a warning: a probe of the model's first classes is fine


@pytest.mark.parametrize(
    ("labels", "classes"), [([0, 1, 2, 0], ["disc", "square", "triangle"]), ([0, 1, 1, 0], None)]
)
def test_no_warning_when_the_classes_match_or_the_labels_are_indices(labels, classes):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        report = audit(_three_class_model(), _probe(labels, classes), target_layer="0", counterfactual=False)
    assert report.summary["n_samples"] == 4
