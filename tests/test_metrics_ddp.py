"""Two real processes (torch.distributed, gloo): synced results equal a single process on all the data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cam_audit.metrics import MeanScore, PointingGame, RelevanceMass

WORLD_SIZE = 2
NUM_CLASSES = 3


def probe_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eleven maps (odd, so the ranks hold different numbers of samples), two degenerate, and free scores."""
    torch.manual_seed(0)
    maps = torch.relu(torch.randn(11, 8, 8))
    regions = torch.zeros(11, 8, 8, dtype=torch.bool)
    for i in range(11):
        top, left = torch.randint(0, 5, (2,)).tolist()
        regions[i, top : top + 3, left : left + 4] = True
    regions[3] = False
    maps[6] = 0.0
    labels = torch.tensor([0, 1, 2, 0, 0, 1, 2, 2, 0, 1, 0])  # class 1 only on odd ranks' samples 1, 5, 9
    scores = torch.rand(11)
    scores[[2, 7]] = float("nan")
    return maps, regions, labels, scores


def results(metrics: dict[str, MeanScore]) -> dict[str, torch.Tensor]:
    out = {}
    for name, metric in metrics.items():
        out[f"{name}.compute"] = metric.compute()
        out[f"{name}.per_class"] = metric.compute_per_class()
        out[f"{name}.degenerate"] = metric.compute_degenerate()
        out[f"{name}.count"] = metric.compute_count()
    return out


def audit_metrics(maps, regions, labels, scores) -> dict[str, MeanScore]:
    metrics = {
        "mass": RelevanceMass(num_classes=NUM_CLASSES),
        "pointing": PointingGame(tolerance=1, num_classes=NUM_CLASSES),
        "scores": MeanScore(num_classes=NUM_CLASSES),
    }
    for start in range(0, len(maps), 3):  # several batches per rank
        batch = slice(start, start + 3)
        metrics["mass"].update(maps[batch], regions[batch], labels[batch])
        metrics["pointing"].update(maps[batch], regions[batch], labels[batch])
        metrics["scores"].update(scores[batch], labels[batch])
    return metrics


def run_rank(rank: int, store_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        maps, regions, labels, scores = probe_data()
        shard = slice(rank, None, WORLD_SIZE)  # probe[rank::world_size], as the callback splits it
        metrics = audit_metrics(maps[shard], regions[shard], labels[shard], scores[shard])
        synced = results(metrics)
        local_degenerate = {name: metric.degenerate.clone() for name, metric in metrics.items()}
        torch.save({"synced": synced, "local_degenerate": local_degenerate}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_agree_with_one_process(tmp_path):
    torch.manual_seed(0)
    mp.spawn(run_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected = results(audit_metrics(*probe_data()))
    assert int(expected["mass.degenerate"]) == 2 and int(expected["scores.degenerate"]) == 2
    maps, regions, labels, scores = probe_data()
    for rank in range(WORLD_SIZE):
        saved = torch.load(tmp_path / f"rank{rank}.pt")
        for key, value in expected.items():
            torch.testing.assert_close(saved["synced"][key], value, equal_nan=True, msg=f"rank {rank}: {key}")
        # after syncing, each rank keeps accumulating its own states, not the world's
        local = audit_metrics(maps[rank::2], regions[rank::2], labels[rank::2], scores[rank::2])
        for name, metric in local.items():
            assert int(saved["local_degenerate"][name]) == int(metric.degenerate), f"rank {rank}: {name}"
    assert not math.isnan(float(expected["mass.compute"]))
