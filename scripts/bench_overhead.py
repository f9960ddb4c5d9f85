"""Wall-time overhead of CamAudit on the demo's training run, on this machine's CPU.

Trains the demo model (``SceneClassifier`` on ``SceneDataModule`` scenes with the correlated watermark)
with and without a ``CamAudit`` on a 256-image probe that audits every epoch (Grad-CAM++, counterfactuals,
overlay grid, TensorBoard and report files: the defaults). Runs alternate plain / audited so drifting
load on a shared machine hits both alike; the median of each is compared:

    python scripts/bench_overhead.py                      # 3 epochs, 3 repeats of each
    python scripts/bench_overhead.py --epochs 5 --repeats 5 --threads 2
    python scripts/bench_overhead.py --counterfactual-every-n-audits 5      # maps every epoch
    python scripts/bench_overhead.py --no-counterfactual --every-n-epochs 2   # cheaper settings
    python scripts/bench_overhead.py --epochs 10 --max-overhead 0.05   # adds a third arm: a 5% budget

Prints one line per run, then the medians and ``overhead = audited / plain - 1``. Seeds are fixed, so
both arms train on the same batches; only the audit differs. Both arms also time the floor: one plain
no-grad forward of the model over the probe at every validation end (excluded from the fit times). No
audit that computes maps can cost less than that forward (Grad-CAM++ needs it; the counterfactual tests
add about one more each). A shared machine's speed drifts between runs, so the audits' and the floor's
shares are also given within each run, against the training time of that same run.

With ``--max-overhead`` a third arm runs the same fit with ``CamAudit(max_overhead=...)``; for each
audited fit the script prints the callback's share by its own clock (every hook, from the fit's start),
the epochs it audited (``full``: with the counterfactual tests, ``maps``: without) and whether the last
audit still flags the watermark shortcut.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from cam_audit import CamAudit
from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from cam_audit.synthetic import make_scenes


class FloorForward(pl.Callback):
    """Times one plain no-grad eval forward of the model over the probe's images at every validation end,
    in both arms: the floor, measured in the same run and at the same moment as the audit it bounds."""

    def __init__(self, images: list[torch.Tensor]) -> None:
        self.images = images
        self.seconds = 0.0

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        was_training = pl_module.training
        pl_module.eval()  # eval BatchNorm and no RNG: training is not disturbed
        started = time.perf_counter()
        with torch.no_grad():
            for batch in self.images:
                pl_module(batch)
        self.seconds += time.perf_counter() - started
        pl_module.train(was_training)


@dataclass
class Fit:
    """One fit: wall and process CPU seconds, the callback's share of them and the floor forwards'."""

    wall: float
    cpu: float
    floor: float
    audit_wall: float = 0.0
    share: float = 0.0
    audits: int = 0
    epochs: str = ""
    flagged: bool = False
    decisions: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def training(self) -> float:
        """Wall seconds of the fit less the audits and the floor forwards."""
        return self.wall - self.floor - self.audit_wall


def fit(
    root: Path, args: argparse.Namespace, audited: bool, epochs: int | None = None, budget: bool = False
) -> Fit:
    """One seeded fit of the demo model, with or without the audit (and its budget)."""
    pl.seed_everything(0, workers=True, verbose=False)
    probe = make_scenes(args.probe_size, watermark="correlated", seed=2024).to_probe()
    floor = FloorForward([batch.images for batch in probe.batches(64)])
    callbacks: list[pl.Callback] = [floor]
    if audited:
        callbacks.append(
            CamAudit(
                probe,
                target_layer="features",
                every_n_epochs=args.every_n_epochs,
                counterfactual=not args.no_counterfactual,
                counterfactual_every_n_audits=args.counterfactual_every_n_audits,
                log_images=not args.no_images,
                max_images=12,
                max_overhead=args.max_overhead if budget else None,
            )
        )
    trainer = pl.Trainer(
        max_epochs=epochs or args.epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(root, name="tb", version=""),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    data = SceneDataModule(watermark="correlated", n_train=args.n_train)
    started, started_cpu = time.perf_counter(), time.process_time()
    model = SceneClassifier(num_classes=3)
    trainer.fit(model, datamodule=data)
    result = Fit(time.perf_counter() - started, time.process_time() - started_cpu, floor.seconds)
    if audited:
        audit = callbacks[1]
        result.share, result.audit_wall = audit.meter.share(), audit.meter.spent
        result.audits = audit.n_audits
        result.flagged = audit.last_report is not None and not audit.last_report.verdict.passed
        result.epochs = audited_epochs(root / "tb" / "cam_audit" / "history.jsonl")
        result.decisions = list(audit.budget.decisions) if audit.budget is not None else []
    return result


def audited_epochs(history: Path) -> str:
    """The audited epochs from the history the callback writes: ``3 maps, 9 full``."""
    rows = [json.loads(line) for line in history.read_text().splitlines()] if history.is_file() else []
    return ", ".join(f"{row['epoch']} {'maps' if row['cf_flip_rate'] is None else 'full'}" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=1536, help="training scenes (the demo's default)")
    parser.add_argument("--probe-size", type=int, default=256)
    parser.add_argument("--every-n-epochs", type=int, default=1)
    parser.add_argument("--no-counterfactual", action="store_true", help="skip the fill and paste tests")
    parser.add_argument(
        "--counterfactual-every-n-audits", type=int, default=1, help="run the fill and paste tests this often"
    )
    parser.add_argument("--no-images", action="store_true", help="do not draw the overlay grid")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--max-overhead", type=float, default=None, help="also fit with CamAudit(max_overhead=...), e.g. 0.05"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"# demo model, {args.n_train} training scenes 64x64, {args.epochs} epochs, probe {args.probe_size} "
        f"images audited every {args.every_n_epochs} epoch(s), counterfactual "
        f"{'off' if args.no_counterfactual else f'every {args.counterfactual_every_n_audits} audit(s)'}, "
        f"overlays {'off' if args.no_images else 'on'}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    plain: list[Fit] = []
    audited: list[Fit] = []
    budgeted: list[Fit] = []
    with tempfile.TemporaryDirectory() as tmp:
        warmup = argparse.Namespace(**{**vars(args), "n_train": 128, "probe_size": 16})
        fit(Path(tmp) / "warmup", warmup, audited=True, epochs=1)  # imports and thread pools warm
        for repeat in range(args.repeats):
            plain.append(fit(Path(tmp) / f"plain{repeat}", args, audited=False))
            audited.append(fit(Path(tmp) / f"audit{repeat}", args, audited=True))
            p, a = plain[-1], audited[-1]
            print(
                f"run {repeat + 1}: without {p.wall:6.2f} s wall {p.cpu:6.2f} s CPU | with {a.wall:6.2f} s "
                f"wall {a.cpu:6.2f} s CPU, of which {a.audit_wall:.2f} s in the callback ({a.audits} audits) "
                f"| floor forwards {p.floor:.2f} s / {a.floor:.2f} s"
            )
            if args.max_overhead is not None:
                budgeted.append(fit(Path(tmp) / f"budget{repeat}", args, audited=True, budget=True))
                b = budgeted[-1]
                print(
                    f"       with max_overhead={args.max_overhead:g}: {b.wall:6.2f} s wall "
                    f"{b.cpu:6.2f} s CPU, of which {b.audit_wall:.2f} s in the callback"
                )
            for name, run in [("no budget", a)] + ([("budget", budgeted[-1])] if budgeted else []):
                print(
                    f"       {name}: callback share {run.share:.1%} by its own clock; {run.audits} audits at "
                    f"epochs {run.epochs}; last audit {'flags' if run.flagged else 'passes'} the model"
                )
            for epoch, kind, reason in budgeted[-1].decisions if budgeted and repeat == 0 else []:
                print(f"         epoch {epoch}: {kind:5s} {reason}")

    median = statistics.median
    # fit against fit: both arms less their floor forwards (instrumentation, not audit)
    base = median([run.wall - run.floor for run in plain])
    with_audit = median([run.wall - run.floor for run in audited])
    base_cpu, with_cpu = median([run.cpu for run in plain]), median([run.cpu for run in audited])
    print(f"median fit without CamAudit: {base:.2f} s wall, {base_cpu:.2f} s CPU (floor forwards excluded)")
    print(f"median fit with CamAudit:    {with_audit:.2f} s wall, {with_cpu:.2f} s CPU")
    print(
        f"overhead, fit against fit:   {with_audit / base - 1:+.1%} wall, {with_cpu / base_cpu - 1:+.1%} CPU "
        "(CPU includes the floor forwards in both arms)"
    )
    # within each audited run: the audits against the training they rode along with
    share = median([run.audit_wall / run.training for run in audited])
    per_audit = median([run.audit_wall / run.audits for run in audited])
    in_floors = median([run.audit_wall / run.floor for run in audited])
    print(
        f"callback, same run: {share:+.1%} of that run's training time ({per_audit:.3f} s per audit, "
        f"{in_floors:.1f}x the floor forwards timed beside them)"
    )
    if budgeted:
        with_budget = median([run.wall - run.floor for run in budgeted])
        print(
            f"with max_overhead={args.max_overhead:g}: median fit {with_budget:.2f} s wall, "
            f"{with_budget / base - 1:+.1%} against the fit without CamAudit; callback share by its own "
            f"clock {median([run.share for run in budgeted]):.1%} (no budget: "
            f"{median([run.share for run in audited]):.1%})"
        )
    floor_share = median([run.floor / run.training for run in plain + audited])
    print(
        f"floor, same run: one no-grad forward over the {args.probe_size}-image probe per epoch is "
        f"{floor_share:+.1%} of the training time"
    )


if __name__ == "__main__":
    main()
