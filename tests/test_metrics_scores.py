"""The torchmetrics classes: accumulation over batches and processes, NaN accounting, per-class states."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics import Metric

from cam_audit.errors import CamAuditError
from cam_audit.metrics import MassLift, MeanScore, PointingGame, RelevanceMass, RelevanceRank
from cam_audit.metrics import functional as F

MAP_METRICS = [
    (RelevanceMass, F.relevance_mass),
    (MassLift, F.mass_lift),
    (PointingGame, F.pointing_game),
    (RelevanceRank, F.relevance_rank),
]
STATE_NAMES = ["total", "count", "degenerate", "class_total", "class_count", "class_degenerate"]
NUM_CLASSES = 3


def probe_batch(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random maps and boxes with labels; sample 1 has an empty region and sample 4 an all-zero map."""
    torch.manual_seed(seed)
    maps = torch.relu(torch.randn(n, 10, 10))
    regions = torch.zeros(n, 10, 10, dtype=torch.bool)
    for i in range(n):
        top, left = torch.randint(0, 6, (2,)).tolist()
        regions[i, top : top + 4, left : left + 3] = True
    regions[1] = False
    maps[4] = 0.0
    labels = torch.tensor([i % NUM_CLASSES for i in range(n)])
    labels[0] = 2  # classes of unequal size
    return maps, regions, labels


def nanmean(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)].double()
    return float(finite.mean()) if len(finite) else math.nan


@pytest.mark.parametrize(("metric_class", "score"), MAP_METRICS, ids=lambda x: getattr(x, "__name__", ""))
def test_compute_is_mean_of_finite_per_sample_scores(metric_class, score):
    maps, regions, labels = probe_batch()
    metric = metric_class(num_classes=NUM_CLASSES)
    metric.update(maps, regions, labels)
    per_sample = score(maps, regions)
    assert math.isclose(float(metric.compute()), nanmean(per_sample), rel_tol=1e-6)
    expected_per_class = [nanmean(per_sample[labels == c]) for c in range(NUM_CLASSES)]
    torch.testing.assert_close(
        metric.compute_per_class(), torch.tensor(expected_per_class, dtype=torch.float32), equal_nan=True
    )
    assert int(metric.compute_degenerate()) == 2  # the empty region and the all-zero map
    assert int(metric.compute_count()) == len(maps) - 2


def test_degenerate_samples_are_counted_not_averaged():
    metric = MeanScore(num_classes=2)
    metric.update(torch.tensor([1.0, float("nan"), 0.0, float("nan")]), labels=torch.tensor([0, 0, 1, 1]))
    assert float(metric.compute()) == 0.5  # not 0.25 (NaN as 0) and not NaN
    assert int(metric.compute_degenerate()) == 2
    assert metric.class_degenerate.tolist() == [1, 1]
    assert metric.class_count.tolist() == [1, 1]


def test_compute_is_nan_when_every_sample_is_degenerate():
    metric = MeanScore()
    metric.update(torch.tensor([float("nan"), float("nan")]))
    assert math.isnan(float(metric.compute()))
    assert int(metric.compute_degenerate()) == 2


def test_per_class_is_nan_for_classes_without_finite_samples():
    metric = MeanScore(num_classes=4)
    metric.update(torch.tensor([0.2, float("nan"), 0.6]), labels=torch.tensor([0, 1, 0]))
    out = metric.compute_per_class()
    assert out.shape == (4,) and out.dtype == torch.float32
    assert math.isclose(float(out[0]), 0.4, rel_tol=1e-6)
    assert math.isnan(float(out[1])) and math.isnan(float(out[2])) and math.isnan(float(out[3]))


@pytest.mark.parametrize(("metric_class", "score"), MAP_METRICS, ids=lambda x: getattr(x, "__name__", ""))
def test_several_batches_equal_one_batch(metric_class, score):
    maps, regions, labels = probe_batch(n=13)
    whole = metric_class(num_classes=NUM_CLASSES)
    whole.update(maps, regions, labels)
    batched = metric_class(num_classes=NUM_CLASSES)
    for start in range(0, 13, 5):
        batched.update(maps[start : start + 5], regions[start : start + 5], labels[start : start + 5])
    for name in STATE_NAMES:
        torch.testing.assert_close(getattr(batched, name), getattr(whole, name), msg=name)
    torch.testing.assert_close(batched.compute(), whole.compute())
    torch.testing.assert_close(batched.compute_per_class(), whole.compute_per_class(), equal_nan=True)


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")  # states set by hand, no update()
@pytest.mark.parametrize(("metric_class", "score"), MAP_METRICS, ids=lambda x: getattr(x, "__name__", ""))
def test_states_of_two_ranks_summed_equal_one_metric_on_all_data(metric_class, score):
    """What torchmetrics does under DDP (dist_reduce_fx="sum"), done by hand on two 'ranks'."""
    maps, regions, labels = probe_batch(n=12)
    single = metric_class(num_classes=NUM_CLASSES)
    single.update(maps, regions, labels)
    ranks = [metric_class(num_classes=NUM_CLASSES) for _ in range(2)]
    for rank, metric in enumerate(ranks):  # probe[rank::world_size], as the callback splits it
        metric.update(maps[rank::2], regions[rank::2], labels[rank::2])
    summed = metric_class(num_classes=NUM_CLASSES)
    for name in STATE_NAMES:
        assert summed._reductions[name] is not None  # every state is reduced across processes
        setattr(summed, name, getattr(ranks[0], name) + getattr(ranks[1], name))
    merged = metric_class(num_classes=NUM_CLASSES)
    merged.merge_state(ranks[0])
    merged.merge_state(ranks[1])
    for combined in (summed, merged):
        torch.testing.assert_close(combined.compute(), single.compute())
        torch.testing.assert_close(combined.compute_per_class(), single.compute_per_class(), equal_nan=True)
        assert int(combined.compute_degenerate()) == int(single.compute_degenerate()) == 2


def test_forward_returns_the_batch_score_and_keeps_accumulating():
    maps, regions, _ = probe_batch(n=8)
    metric = RelevanceMass()
    first = metric(maps[:4], regions[:4])
    second = metric(maps[4:], regions[4:])
    assert math.isclose(float(first), nanmean(F.relevance_mass(maps[:4], regions[:4])), rel_tol=1e-6)
    assert math.isclose(float(second), nanmean(F.relevance_mass(maps[4:], regions[4:])), rel_tol=1e-6)
    assert math.isclose(float(metric.compute()), nanmean(F.relevance_mass(maps, regions)), rel_tol=1e-6)


def test_reset_clears_every_state():
    maps, regions, labels = probe_batch()
    metric = PointingGame(tolerance=1, num_classes=NUM_CLASSES)
    metric.update(maps, regions, labels)
    metric.reset()
    for name in STATE_NAMES:
        assert not getattr(metric, name).any(), name
    assert metric.class_total.shape == (NUM_CLASSES,)
    metric.update(maps[:3], regions[:3], labels[:3])
    torch.testing.assert_close(
        metric.compute(), torch.tensor(nanmean(F.pointing_game(maps[:3], regions[:3], tolerance=1)))
    )


def test_states_are_float64_sums_and_integer_counts():
    metric = MeanScore(num_classes=2)
    assert metric.total.dtype == torch.float64 and metric.class_total.dtype == torch.float64
    assert metric.count.dtype == torch.int64 and metric.degenerate.dtype == torch.int64
    # float32 accumulation would lose the small values after the large one
    metric.update(
        torch.tensor([1e8] + [1.0] * 1000, dtype=torch.float32), labels=torch.zeros(1001, dtype=int)
    )
    assert float(metric.total) == 1e8 + 1000


def test_metric_declares_torchmetrics_attributes():
    for metric_class, _ in MAP_METRICS:
        assert issubclass(metric_class, MeanScore) and issubclass(metric_class, Metric)
        assert metric_class.higher_is_better is True
        assert metric_class.full_state_update is False
        assert metric_class.is_differentiable is False


def test_pointing_game_metric_uses_its_tolerance():
    maps = torch.zeros(1, 7, 7)
    maps[0, 5, 5] = 1.0
    regions = torch.zeros(1, 7, 7, dtype=torch.bool)
    regions[0, 2, 2] = True
    strict, lenient = PointingGame(), PointingGame(tolerance=3)
    strict.update(maps, regions)
    lenient.update(maps, regions)
    assert float(strict.compute()) == 0.0 and float(lenient.compute()) == 1.0


def test_states_sync_through_the_given_gather_and_are_restored_afterwards():
    """compute_per_class/compute_degenerate gather like compute() and leave the local states as they were."""
    calls = []

    def gather_from_two_identical_ranks(tensor, group=None):
        calls.append(tensor.shape)
        return [tensor, tensor.clone()]

    metric = MeanScore(
        num_classes=2, dist_sync_fn=gather_from_two_identical_ranks, distributed_available_fn=lambda: True
    )
    metric.update(torch.tensor([0.5, float("nan"), 1.0]), labels=torch.tensor([0, 1, 1]))
    assert int(metric.compute_degenerate()) == 2  # 1 local + 1 from the other rank
    assert int(metric.compute_count()) == 4
    assert calls, "the gather function was never called"
    calls.clear()
    torch.testing.assert_close(metric.compute_per_class(), torch.tensor([0.5, 1.0]))
    assert calls
    assert int(metric.degenerate) == 1 and metric.class_count.tolist() == [1, 1]  # local states restored
    torch.testing.assert_close(metric.compute(), torch.tensor(0.75))
    with metric.sync_context(
        dist_sync_fn=gather_from_two_identical_ranks
    ):  # already synced by the caller: no second gather
        assert int(metric.compute_degenerate()) == 2
    assert int(metric.degenerate) == 1


# ---------------------------------------------------------------- bad input


def test_labels_are_required_with_num_classes_and_refused_without():
    maps, regions, labels = probe_batch(n=6)
    with pytest.raises(CamAuditError, match=r"num_classes=3 keeps per-class scores.*labels"):
        RelevanceMass(num_classes=3).update(maps, regions)
    with pytest.raises(CamAuditError, match=r"labels were given.*RelevanceMass\(num_classes=C\)"):
        RelevanceMass().update(maps, regions, labels)
    with pytest.raises(CamAuditError, match=r"compute_per_class: per-class scores need num_classes"):
        RelevanceMass().compute_per_class()


def test_out_of_range_label_raises_naming_the_sample():
    with pytest.raises(CamAuditError, match=r"labels\[1\] = 5 is outside \[0, 3\)"):
        MeanScore(num_classes=3).update(torch.rand(3), labels=torch.tensor([0, 5, 1]))


@pytest.mark.parametrize(
    "labels", [torch.tensor([0.0, 1.0]), torch.tensor([0, 1, 1]), torch.tensor([[0, 1]]), [0, 1]]
)
def test_malformed_labels_raise(labels):
    with pytest.raises(
        CamAuditError, match=r"labels must be an integer tensor \[N\] matching scores \(N=2\)"
    ):
        MeanScore(num_classes=3).update(torch.rand(2), labels=labels)


@pytest.mark.parametrize("scores", [torch.rand(2, 2), torch.tensor([1, 0]), [0.5]])
def test_malformed_scores_raise(scores):
    with pytest.raises(CamAuditError, match=r"scores must be a float tensor \[N\]"):
        MeanScore().update(scores)


def test_infinite_score_raises_naming_the_sample():
    with pytest.raises(CamAuditError, match=r"scores\[2\] is infinite"):
        MeanScore().update(torch.tensor([0.1, 0.2, float("inf")]))


@pytest.mark.parametrize("num_classes", [0, -2, 2.0, True])
def test_bad_num_classes_raise(num_classes):
    with pytest.raises(CamAuditError, match="num_classes must be a positive int or None"):
        MeanScore(num_classes=num_classes)


def test_bad_tolerance_raises_at_construction():
    with pytest.raises(CamAuditError, match="tolerance must be a non-negative int"):
        PointingGame(tolerance=-1)


def test_map_errors_reach_the_metric_caller():
    with pytest.raises(CamAuditError, match=r"maps\[0\] has negative values"):
        MassLift().update(-torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
