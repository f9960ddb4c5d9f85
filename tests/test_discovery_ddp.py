"""Discovery on two real processes (torch.distributed, gloo) finds the single process's cues and rates.

Each rank scores its own whole batches of the probe; the candidates are gathered before they are
grouped, each rank tests the members it scored, and the outcomes are gathered again, so the cue table
and ``bg_gap`` must equal those of one process auditing the whole probe.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cam_audit import ShortcutPolicy, audit
from cam_audit.cam import CamEngine
from cam_audit.pipeline import AuditRun
from cam_audit.probe import ProbeSet
from cam_audit.report import AuditReport
from cam_audit.synthetic import SceneNet, make_scenes
from helpers.models import trained_scene_net

WORLD_SIZE = 2
BATCH_SIZE = 16

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
]


class GlooCollectives:
    """The pipeline's collectives over an initialised process group."""

    def __init__(self) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def gather(self, value):
        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def run_step(self, step, work):
        return work()


def probe() -> ProbeSet:
    """72 scenes whose tag corner follows the label (9 batches: the ranks hold 5 and 4), objects only."""
    scenes = make_scenes(72, image_size=32, watermark="correlated", seed=2)
    return ProbeSet.from_tensors(scenes.images, scenes.labels, masks=scenes.object_masks)


def run_rank(rank: int, store: str, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        model = SceneNet(num_classes=3, width=8)
        model.load_state_dict(torch.load(Path(folder) / "model.pt"))
        model.eval()
        run = AuditRun(CamEngine(model, "features"), probe(), ShortcutPolicy(), batch_size=BATCH_SIZE,
                       collectives=GlooCollectives(), discover=True)  # fmt: skip
        run().to_json(Path(folder) / f"rank{rank}.json")
    finally:
        dist.destroy_process_group()


def test_two_ranks_give_the_single_process_cues_and_rates(tmp_path):
    train = make_scenes(900, image_size=32, watermark="correlated", seed=1)
    model = trained_scene_net(train, "avg", epochs=6)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    mp.spawn(run_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    single = audit(model, probe(), target_layer="features", batch_size=BATCH_SIZE, discover=True)
    assert single.summary["n_cues_confirmed"] >= 1  # the comparison is made on a model with a cue
    for rank in range(WORLD_SIZE):
        report = AuditReport.from_json(tmp_path / f"rank{rank}.json")
        assert report.meta["world_size"] == WORLD_SIZE
        pd.testing.assert_frame_equal(report.cues, single.cues, check_exact=False, rtol=1e-12)
        for key in ("bg_gap", "bg_acc_same", "bg_acc_other", "n_cues", "n_cues_confirmed"):
            assert report.summary[key] == pytest.approx(single.summary[key], abs=1e-12), key
        columns = ["index", "cue", "bg_same", "bg_other"]
        pd.testing.assert_frame_equal(report.samples[columns], single.samples[columns])
        assert report.verdict.flags == single.verdict.flags
