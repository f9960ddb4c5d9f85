"""Fit the scene CNN with CamAudit under ``strategy="ddp"`` on two CPU processes (gloo).

Lightning's "ddp" starts the other rank by running this file again, so it must be a script. Usage::

    python tests/ddp_script.py OUT_DIR [--fail-on-rank R] [--max-overhead X] [--discover]

Each rank writes ``OUT_DIR/rank<R>.json`` with the values it logged and the callback's history, and its
last report to ``OUT_DIR/report_rank<R>.json``; rank 0 also saves the final weights to
``OUT_DIR/weights.pt`` for a single-process audit to compare against.
With ``--fail-on-rank R`` the model raises during the audit's forward on rank R only (a rank-local
failure), and each rank records the error it ended with instead. With ``--max-overhead X`` the callback
has that budget, and each rank records the budget's decisions. With ``--discover`` the callback looks for
cues nobody annotated on 64-pixel scenes whose tag is not marked (:data:`DISCOVER_SEED`), trained for
16 steps an epoch on 64-pixel scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cam_audit import CamAudit, ShortcutPolicy  # noqa: E402
from helpers.models import NoisyClassifier  # noqa: E402
from helpers.probes import tiny_probe, unannotated_probe  # noqa: E402
from helpers.trainers import make_trainer, tiny_data  # noqa: E402
from test_happy_path_warnings import ours  # noqa: E402

PROBE_SIZE = 13  # batches of 4: rank 0 audits batches 0 and 2 (8 samples), rank 1 batches 1 and 3 (5)
BATCH_SIZE = 4
DISCOVER_SEED = 5  # the unannotated probe of --discover: 13 scenes of 64 pixels
#: with --discover: cues of 3 samples are tested, so a short fit has galleries to draw
DISCOVER_POLICY = ShortcutPolicy(min_cue_samples=3)


class FailsOnOneRank(NoisyClassifier):
    """Raises inside the audit's forward on one rank only, once training has started.

    The audit is recognised by the engine's forward hook on ``features`` (validation steps have none
    and, with gloo, run under ``no_grad`` rather than inference mode, so the grad mode cannot tell).
    """

    def __init__(self, fail_rank: int) -> None:
        super().__init__()
        self.fail_rank = fail_rank
        self.armed = False

    def on_train_epoch_start(self) -> None:
        self.armed = True  # after the callback's set-up check, which must pass

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        auditing = self.armed and bool(self.features._forward_hooks)
        if auditing and self.global_rank == self.fail_rank:
            raise RuntimeError(f"simulated failure on rank {self.fail_rank}")
        return super().forward(images)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--fail-on-rank", type=int, default=None)
    parser.add_argument("--max-overhead", type=float, default=None)
    parser.add_argument("--discover", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    pl.seed_everything(0, workers=True)
    model = NoisyClassifier() if args.fail_on_rank is None else FailsOnOneRank(args.fail_on_rank)
    audit = CamAudit(
        unannotated_probe(PROBE_SIZE, seed=DISCOVER_SEED) if args.discover else tiny_probe(PROBE_SIZE),
        target_layer="features",
        batch_size=BATCH_SIZE,
        max_images=4,
        max_overhead=args.max_overhead,
        discover=args.discover,
        policy=DISCOVER_POLICY if args.discover else None,
    )
    checkpoint = ModelCheckpoint(dirpath=args.out / "ckpt", monitor="cam_audit/focus_lift", mode="max")
    trainer = make_trainer(
        args.out,
        strategy="ddp",
        devices=2,
        # with --discover, 16 steps an epoch: fewer leave the model deciding every scene as one class,
        # whose flat map is no testable cue
        limit_train_batches=16 if args.discover else 2,
        num_sanity_val_steps=1,
        logger=TensorBoardLogger(args.out, name="tb", version=""),
        callbacks=[audit, checkpoint],
    )
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            size = {"n_train": 512, "image_size": 64} if args.discover else {}
            trainer.fit(model, datamodule=tiny_data(batch_size=8, **size))
        except Exception as exc:  # recorded for the test, which decides what was expected
            error = f"{type(exc).__name__}: {exc}"
    rank = trainer.global_rank
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("cam_audit/")}
    result = {
        "rank": rank,
        "world_size": trainer.world_size,
        "error": error,
        "logged": logged,
        "n_audits": audit.n_audits,
        "best_focus_lift": audit.best_focus_lift,
        "report_samples": None if audit.last_report is None else len(audit.last_report.samples),
        "best_model_path": checkpoint.best_model_path,
        "best_model_score": _number(checkpoint.best_model_score),
        "warnings_from_cam_audit": ours(caught),
        "decisions": None if audit.budget is None else [[e, k] for e, k, _ in audit.budget.decisions],
    }
    if rank == 0 and error is None:
        torch.save(model.state_dict(), args.out / "weights.pt")
    if audit.last_report is not None:
        audit.last_report.to_json(args.out / f"report_rank{rank}.json")
    (args.out / f"rank{rank}.json").write_text(json.dumps(result, indent=2))
    if error is not None:
        sys.exit(3)


def _number(value: torch.Tensor | None) -> float | None:
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
