"""``cam-audit demo``: train a clean and a shortcut model on synthetic scenes and compare their audits.

Both models see the same shapes. In the clean run a watermark tag sits in a random corner (it carries no
information); in the shortcut run the tag's corner gives the label away. The audit should show the second
model's heatmap mass moving onto the tag, and the counterfactual test should confirm that removing the
tag changes its decisions.

A third run, ``unannotated``, audits the shortcut model again on the same probe with the tag not marked
(object regions only) and ``discover=True``: the audit has to find the tag by itself, and confirm it
against matched control regions. The clean model audited the same way shows what no shortcut looks like.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from cam_audit.cam import CamEngine
from cam_audit.keys import HEADLINE_KEYS, score
from cam_audit.lightning import CamAudit
from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule, Watermark
from cam_audit.metrics import functional as F
from cam_audit.pipeline import audit
from cam_audit.render import overlay_grid, save_png
from cam_audit.render.cues_html import cue_lines, cue_order
from cam_audit.report import AuditReport
from cam_audit.synthetic import SceneData, accuracy, make_scenes

RUNS: tuple[tuple[str, Watermark], ...] = (("clean", "random"), ("watermark", "correlated"))
#: The headline scores of each run's audit; the table's accuracy columns are the demo's own (with the cue,
#: without it, and moved), so the probe accuracy is left out.
TABLE_KEYS = tuple(k for k in HEADLINE_KEYS if score(k).evidence != "behaviour")
#: The third run's name: the shortcut model audited with the tag not annotated and ``discover=True``.
UNANNOTATED = "unannotated"


@dataclass
class DemoRun:
    name: str
    model: SceneClassifier
    report: AuditReport
    checkpoint: str
    accuracy_with_cue: float
    accuracy_without_cue: float
    accuracy_moved_cue: float


def train_one(
    name: str,
    watermark: Watermark,
    out: Path,
    epochs: int,
    seed: int,
    probe_scenes: SceneData,
    test_scenes: SceneData,
    moved_scenes: SceneData,
    n_train: int,
) -> DemoRun:
    pl.seed_everything(seed, workers=True, verbose=False)
    model = SceneClassifier(num_classes=3)
    data = SceneDataModule(watermark=watermark, n_train=n_train, seed=seed)
    cam_audit = CamAudit(probe_scenes.to_probe(), target_layer="features", every_n_epochs=1, max_images=12)
    best = ModelCheckpoint(monitor="cam_audit/focus_lift", mode="max", filename="best-focus-{epoch}")
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(out, name=name, version=""),
        callbacks=[cam_audit, best],
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        log_every_n_steps=10,
    )
    trainer.fit(model, datamodule=data)
    assert cam_audit.last_report is not None
    return DemoRun(
        name,
        model,
        cam_audit.last_report,
        best.best_model_path,
        accuracy(model, test_scenes),
        accuracy(model, test_scenes.without_watermark()),
        accuracy(model, moved_scenes),
    )


def summary_table(runs: list[DemoRun]) -> pd.DataFrame:
    rows = {}
    for run in runs:
        row: dict[str, float | str] = {k: run.report.summary[k] for k in TABLE_KEYS}
        row["acc_with_wm"] = run.accuracy_with_cue
        row["acc_without_wm"] = run.accuracy_without_cue
        row["acc_wm_moved"] = run.accuracy_moved_cue
        row.update(_discovery_columns(run.report))
        outcome = run.report.verdict.outcome
        row["verdict"] = outcome if outcome == "pass" else outcome.upper()
        rows[run.name] = row
    return pd.DataFrame(rows).T


def _discovery_columns(report: AuditReport) -> dict[str, float | str]:
    """``bg_gap`` and the cues confirmed of those found (``-`` for an audit without discovery)."""
    if not report.meta.get("discover"):
        return {"bg_gap": "-", "cues": "-"}
    found, confirmed = int(report.summary["n_cues"]), int(report.summary["n_cues_confirmed"])
    return {"bg_gap": report.summary["bg_gap"], "cues": f"{confirmed} of {found}"}


def audit_unannotated(
    model: SceneClassifier, probe_scenes: SceneData, folder: Path | None = None
) -> tuple[AuditReport, dict[int, Path]]:
    """Audit ``model`` on the probe with the tag not annotated (object regions only), ``discover=True``.

    With a ``folder``, write ``report.json`` and each cue's gallery (``cues/cue_<n>.png``) there."""
    probe = probe_scenes.to_probe(spurious=False)
    pictures: dict[int, Path] = {}

    def keep(cues: pd.DataFrame, galleries: dict[int, torch.Tensor]) -> None:
        if folder is not None:
            pictures.update({n: save_png(g, folder / "cues" / f"cue_{n}.png") for n, g in galleries.items()})

    report = audit(model, probe, target_layer="features", discover=True, on_cues=keep)
    if folder is not None:
        report.to_json(folder / "report.json")
    return report, pictures


def print_discovery(found: AuditReport, clean: AuditReport, pictures: dict[int, Path]) -> None:
    """What discovery found in the shortcut model, and in the clean one, with nobody marking the tag."""
    outcome = "passed" if found.passed else f"FLAGGED ({len(found.verdict.findings)} flags)"
    print(f"\n{UNANNOTATED}: {outcome}; the watermark model on the same probe, only the objects marked")
    rows = {int(r["cue"]): r for r in found.cues.to_dict("records")}
    for number in cue_order(found.cues):
        head, tests = cue_lines(rows[number])
        print(f"  - {head}\n      {tests}")
    same, other = found.summary["bg_acc_same"], found.summary["bg_acc_other"]
    print(f"  - bg_gap {found.summary['bg_gap']:.2f}: objects recognised {same:.0%} on backgrounds of their "
          f"own class, {other:.0%} on another class's")
    confirmed = int(clean.summary["n_cues_confirmed"])
    print(f"  the clean model audited the same way: {confirmed} of {int(clean.summary['n_cues'])} candidate "
          f"cues confirmed, bg_gap {clean.summary['bg_gap']:.2f}, {'passed' if clean.passed else 'FLAGGED'}")
    if pictures:
        print(f"  cue galleries: {Path(next(iter(pictures.values()))).parent}/cue_<n>.png")


def side_by_side(runs: list[DemoRun], probe_scenes: SceneData, n: int = 6) -> torch.Tensor:
    """Overlays of every run's model on the same ``n`` probe images, one row per run."""
    images, labels = probe_scenes.images[:n], probe_scenes.labels[:n]
    regions, spurious = probe_scenes.object_masks[:n], probe_scenes.watermark_masks[:n]
    rows = []
    for run in runs:
        maps = CamEngine(run.model, target_layer="features")(images, labels).maps
        captions = [f"{run.name} lift {v:.1f}" for v in F.mass_lift(maps, regions).tolist()]
        rows.append(overlay_grid(images, maps, regions, spurious, captions=captions, ncol=n))
    return torch.cat(rows, dim=1)


def run_demo(out: Path, epochs: int = 6, seed: int = 0, n_train: int = 1536) -> pd.DataFrame:
    """Train both models, print the comparison, write the picture; returns the table."""
    out = Path(out)
    started = time.perf_counter()
    _quiet_lightning()
    probe_scenes = make_scenes(96, watermark="correlated", seed=seed + 20_000)
    test_scenes = make_scenes(512, watermark="correlated", seed=seed + 30_000)
    # the same kind of scenes with every tag in another class's corner: the cue now lies
    moved_scenes = make_scenes(512, watermark="correlated", correlation=0.0, seed=seed + 40_000)
    runs = [
        train_one(name, wm, out, epochs, seed, probe_scenes, test_scenes, moved_scenes, n_train)
        for name, wm in RUNS
    ]
    found, pictures = audit_unannotated(runs[1].model, probe_scenes, out / UNANNOTATED)
    clean_found, _ = audit_unannotated(runs[0].model, probe_scenes)
    runs.append(replace(runs[1], name=UNANNOTATED, report=found))
    table = summary_table(runs)
    picture = save_png(side_by_side(runs[:2], probe_scenes), out / "overlays_clean_vs_watermark.png")
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print("\ncam_audit demo: the same shapes, a watermark that is noise (clean) or gives the label away;")
        print(f"{UNANNOTATED}: the watermark model audited with the tag not annotated (discover=True)")
        print(table.to_string())
    for run in runs[:2]:
        flags = run.report.verdict.flags or ["(no flags)"]
        print(f"\n{run.name}: {'passed' if run.report.verdict.passed else 'FLAGGED'}")
        for flag in flags:
            print(f"  - {flag}")
        print(f"  best checkpoint by cam_audit/focus_lift: {run.checkpoint}")
    clean, marked = (r.report.summary["spurious_lift"] for r in runs[:2])
    ratio = marked / clean if clean and not math.isnan(clean) else math.nan
    print(f"\nspurious_lift: watermark model {marked:.2f} vs clean model {clean:.2f} ({ratio:.1f}x)")
    print_discovery(found, clean_found, pictures)
    print_promotion(runs[:2])
    print(f"overlays: {picture}")
    print(f"reports:  {out}/<run>/cam_audit/latest/report.json")
    print(f"gate:     cam-audit gate {out}/watermark/cam_audit/latest/report.json")
    print(f"cues:     cam-audit gate {out}/{UNANNOTATED}/report.json")
    print(f"promote:  cam-audit gate {out}/watermark/cam_audit/latest/report.json "
          f"--baseline {out}/clean/cam_audit/latest/report.json --markdown promotion.md")
    print(f"look:     tensorboard --logdir {out}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return table


def print_promotion(runs: list[DemoRun]) -> None:
    """The watermark model as a candidate to replace the clean model (the champion), on the same probe."""
    champion, candidate = (run.report for run in runs[:2])
    comparison = candidate.compare(champion)
    print("\npromotion: the watermark model as candidate, the clean model as champion")
    print("\n".join(comparison.to_text("watermark", "clean")))


def _quiet_lightning() -> None:
    """Keep the demo's output to its own table: no device banners, tips or flag warnings per epoch."""
    import logging
    import warnings

    from cam_audit.errors import InconclusiveWarning, ShortcutWarning

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (ShortcutWarning, InconclusiveWarning):  # the demo prints the verdicts itself
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


__all__ = ["run_demo"]
