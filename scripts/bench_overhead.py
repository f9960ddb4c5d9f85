"""Wall-time overhead of CamAudit on the demo's training run, on this machine's CPU.

Trains the demo model (``SceneClassifier`` on ``SceneDataModule`` scenes with the correlated watermark)
with and without a ``CamAudit`` on a 256-image probe that audits every epoch (Grad-CAM++, counterfactuals,
overlay grid, TensorBoard and report files: the defaults). Runs alternate plain / audited so drifting
load on a shared machine hits both alike; the median of each is compared:

    python scripts/bench_overhead.py                      # 3 epochs, 3 repeats of each
    python scripts/bench_overhead.py --epochs 5 --repeats 5 --threads 2
    python scripts/bench_overhead.py --counterfactual-every-n-audits 5      # maps every epoch
    python scripts/bench_overhead.py --no-counterfactual --every-n-epochs 2   # cheaper settings

Prints one line per run, then the medians and ``overhead = audited / plain - 1``. Seeds are fixed, so
both arms train on the same batches; only the audit differs. Last, it prints the floor: the time of one
plain no-grad forward pass over the probe, once per audit, as a share of the plain fit. No audit that
computes maps can cost less than that (Grad-CAM++ needs that forward; the counterfactual tests add about
one more each).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from cam_audit import CamAudit
from cam_audit.cli.scenes import SceneClassifier, SceneDataModule
from cam_audit.probe import make_scenes


class TimedCamAudit(CamAudit):
    """CamAudit that adds up the wall and process CPU time of its audits (scoring, logging, files)."""

    seconds = 0.0
    cpu_seconds = 0.0

    def _audit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            super()._audit(trainer, pl_module)
        finally:
            self.seconds += time.perf_counter() - started
            self.cpu_seconds += time.process_time() - started_cpu


@dataclass
class Fit:
    """One fit: wall and process CPU seconds, and how much of each was spent inside the audits."""

    wall: float
    cpu: float
    audit_wall: float = 0.0
    audit_cpu: float = 0.0
    audits: int = 0
    model: SceneClassifier | None = None


def fit(root: Path, args: argparse.Namespace, audited: bool, epochs: int | None = None) -> Fit:
    """One seeded fit of the demo model, with or without the audit."""
    pl.seed_everything(0, workers=True, verbose=False)
    callbacks = []
    if audited:
        probe = make_scenes(args.probe_size, watermark="correlated", seed=2024).to_probe()
        callbacks.append(
            TimedCamAudit(
                probe,
                target_layer="features",
                every_n_epochs=args.every_n_epochs,
                counterfactual=not args.no_counterfactual,
                counterfactual_every_n_audits=args.counterfactual_every_n_audits,
                log_images=not args.no_images,
                max_images=12,
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
    result = Fit(time.perf_counter() - started, time.process_time() - started_cpu, model=model)
    if callbacks:
        audit = callbacks[0]
        result.audit_wall, result.audit_cpu, result.audits = audit.seconds, audit.cpu_seconds, audit.n_audits
    return result


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
    with tempfile.TemporaryDirectory() as tmp:
        warmup = argparse.Namespace(**{**vars(args), "n_train": 128, "probe_size": 16})
        fit(Path(tmp) / "warmup", warmup, audited=True, epochs=1)  # imports and thread pools warm
        for repeat in range(args.repeats):
            plain.append(fit(Path(tmp) / f"plain{repeat}", args, audited=False))
            audited.append(fit(Path(tmp) / f"audit{repeat}", args, audited=True))
            p, a = plain[-1], audited[-1]
            print(
                f"run {repeat + 1}: without {p.wall:6.2f} s wall {p.cpu:6.2f} s CPU | with "
                f"{a.wall:6.2f} s wall {a.cpu:6.2f} s CPU, of which {a.audit_wall:.2f} s wall "
                f"{a.audit_cpu:.2f} s CPU in {a.audits} audits"
            )

    def median(runs: list[Fit], field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs)

    base_wall, base_cpu = median(plain, "wall"), median(plain, "cpu")
    with_wall, with_cpu = median(audited, "wall"), median(audited, "cpu")
    audit_wall, audit_cpu = median(audited, "audit_wall"), median(audited, "audit_cpu")
    audits = audited[0].audits
    print(f"median fit without CamAudit: {base_wall:.2f} s wall, {base_cpu:.2f} s CPU")
    print(f"median fit with CamAudit:    {with_wall:.2f} s wall, {with_cpu:.2f} s CPU")
    print(
        f"overhead, fit against fit:   {with_wall / base_wall - 1:+.1%} wall, "
        f"{with_cpu / base_cpu - 1:+.1%} CPU"
    )
    print(
        f"time inside the {audits} audits: {audit_wall / base_wall:+.1%} of the plain fit's wall time, "
        f"{audit_cpu / base_cpu:+.1%} of its CPU time ({audit_wall / audits:.3f} s wall per audit)"
    )
    forward = probe_forward_seconds(audited[-1].model, args.probe_size)
    print(
        f"floor: one no-grad forward over the {args.probe_size}-image probe takes {forward:.3f} s; "
        f"{audits} of them are {audits * forward / base_wall:+.1%} of the plain fit's wall time"
    )


def probe_forward_seconds(model: SceneClassifier, probe_size: int, repeats: int = 7) -> float:
    """Median seconds of a plain no-grad eval forward of the trained model over the probe, batch 64."""
    model.eval()
    probe = make_scenes(probe_size, watermark="correlated", seed=2024).to_probe()
    images = [batch.images for batch in probe.batches(64)]
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            for batch in images:
                model(batch)
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


if __name__ == "__main__":
    main()
