"""AuditScores: all of an audit's per-sample columns in one metric, reduced as MeanScore reduces one."""

from __future__ import annotations

import math

import pytest
import torch

from cam_audit.errors import CamAuditError
from cam_audit.keys import REDUCED_COLUMNS, SCORES
from cam_audit.metrics import MeanScore
from cam_audit.pipeline import AuditScores


def _batches(seed: int, n_classes: int) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Three batches of every column (0/1 columns as 0/1), a share of each column NaN, one batch without
    ``cf_paste`` and one column NaN throughout (nothing measured)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for size in (7, 5, 9):
        labels = torch.randint(0, n_classes, (size,), generator=generator)
        rows = {}
        for column in REDUCED_COLUMNS:
            values = torch.rand(size, generator=generator, dtype=torch.float64)
            if column in ("correct", "cf_flip", "cf_paste", "has_spurious"):
                values = values.round()
            values[torch.rand(size, generator=generator) < 0.3] = math.nan
            rows[column] = values
        rows["spurious_lift"] = torch.full((size,), math.nan, dtype=torch.float64)
        batches.append((rows, labels))
    del batches[1][0]["cf_paste"]
    return batches


def test_summary_and_per_class_table_equal_one_mean_score_per_column():
    n_classes = 3
    scores = AuditScores(num_classes=n_classes)
    singles = {column: MeanScore(num_classes=n_classes) for column in REDUCED_COLUMNS}
    for rows, labels in _batches(0, n_classes):
        scores.update(rows, labels)
        for column, values in rows.items():
            singles[column].update(values, labels)
    summary, per_class = scores.summarise(["a", "b", "c"])
    for entry in SCORES:
        if entry.reduce == "cues":
            continue
        single = singles[entry.column]
        if entry.reduce == "mean":
            expected = float(single.compute())
            assert summary[entry.summary] == pytest.approx(expected, nan_ok=True, rel=1e-6), entry.summary
            assert per_class[entry.summary].tolist() == pytest.approx(
                single.compute_per_class().tolist(), nan_ok=True, rel=1e-6
            ), entry.summary
        elif entry.reduce == "count":
            assert summary[entry.summary] == float(single.compute_count()), entry.summary
        elif entry.reduce == "degenerate":
            assert summary[entry.summary] == float(single.compute_degenerate()), entry.summary
        else:
            count = int(single.compute_count())
            assert summary[entry.summary] == float(round(float(single.compute()) * count)), entry.summary
    assert math.isnan(summary["spurious_lift"])  # a column never measured averages to NaN, not 0
    assert list(per_class.index) == ["a", "b", "c"]


def test_reset_forgets_every_column():
    scores = AuditScores(num_classes=2)
    rows, labels = _batches(1, 2)[0]
    scores.update(rows, labels)
    scores.reset()
    summary, _ = scores.summarise(["a", "b"])
    assert all(
        math.isnan(summary[e.summary]) if e.reduce == "mean" else summary[e.summary] == 0.0
        for e in SCORES
        if e.reduce != "cues"
    )


def test_an_infinite_score_is_refused_with_its_column_and_sample():
    scores = AuditScores(num_classes=2)
    with pytest.raises(CamAuditError, match=r"focus\[1\] is infinite"):
        scores.update({"focus": torch.tensor([0.5, math.inf])}, torch.tensor([0, 1]))


@pytest.mark.parametrize("labels", [torch.tensor([0, 2]), torch.tensor([-1, 0]), torch.tensor([0])])
def test_bad_labels_are_refused_before_any_state_changes(labels):
    scores = AuditScores(num_classes=2)
    with pytest.raises(CamAuditError, match=r"AuditScores\.update: label"):
        scores.update({"focus": torch.tensor([0.5, 0.25])}, labels)
    summary, _ = scores.summarise(["a", "b"])
    assert math.isnan(summary["focus"]) and summary["n_degenerate"] == 0.0
