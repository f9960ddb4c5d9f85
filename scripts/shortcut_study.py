"""Evidence for the ``ShortcutPolicy`` defaults: how often does the default policy catch a shortcut model,
and how often does it cry wolf on a model that has none?

Small ``SceneClassifier`` models are trained on the synthetic scenes over several seeds, in these
conditions (``--quick`` runs a small subset as a smoke test):

- ``clean-random``: a tag in a random corner of every image (it carries no information);
- ``clean-none``: no tag at all (the probe still carries tags, which the model has never seen);
- ``corner-<c>``: the tag's corner gives the label away on a share ``c`` of the training images;
- ``single-1.0``: a tag on every image of class 0 (``disc``) and on no other: presence is the cue, the
  Clever Hans case;

each with a global-average-pooling and a global-max-pooling head. Every model is audited after every
epoch (for ``focus_lift``'s history) and, at the end, with the counterfactual test on a probe drawn from
its own training distribution, and judged by the default :class:`~cam_audit.ShortcutPolicy`.

A model is a **shortcut model** by its behaviour, not by how it was trained: its accuracy falls by more
than ``--shortcut-drop`` (10 points) when the cue is removed (``SceneData.without_watermark``) or moved
(the tag in another class's corner; for the single-class cue, a tag on every class). Run it with::

    .venv/bin/python scripts/shortcut_study.py            # the full study (about 10-25 min on 2 cores)
    .venv/bin/python scripts/shortcut_study.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import torch

from cam_audit import ShortcutPolicy, audit
from cam_audit.lightning.scenes import SceneClassifier
from cam_audit.report import AuditReport
from cam_audit.synthetic import SceneData, make_scenes

Pool = Literal["avg", "max"]

#: Which policy rules are which kind of evidence.
EVIDENCE = {
    "min_focus_lift": "attribution",
    "max_spurious_lift": "attribution",
    "max_flip_rate": "counterfactual",
    "max_paste_rate": "counterfactual",
    "max_focus_drop": "history",
    "inconclusive": "no evidence",
}
#: Columns of the per-model table, in print order.
MODEL_COLUMNS = (
    "condition",
    "pool",
    "seed",
    "acc_cue",
    "acc_removed",
    "acc_moved",
    "shortcut",
    "focus_lift",
    "spurious_lift",
    "cf_flip_rate",
    "cf_paste_rate",
    "min_class_focus_lift",
    "max_class_spurious_lift",
    "max_class_flip_rate",
    "max_class_paste_rate",
    "focus_drop",
    "flagged",
    "fired",
)


@dataclass(frozen=True)
class Condition:
    """How the training scenes carry (or do not carry) the watermark cue.

    Attributes:
        name: the label printed in the tables.
        watermark: ``make_scenes``'s watermark mode.
        correlation: share of training images whose tag follows the label.
        cue_classes: classes that carry the tag (presence cue), or None for the corner cue.
    """

    name: str
    watermark: Literal["none", "random", "correlated"]
    correlation: float = 1.0
    cue_classes: tuple[int, ...] | None = None

    @property
    def clean(self) -> bool:
        return self.watermark != "correlated"

    def scenes(self, n: int, seed: int, image_size: int) -> SceneData:
        """Scenes from this condition's training distribution (``clean-none``: tags in random corners,
        so the probe and the moved-cue test still show the model a tag)."""
        watermark = "random" if self.watermark == "none" else self.watermark
        return make_scenes(
            n,
            image_size=image_size,
            watermark=watermark,
            correlation=self.correlation,
            cue_classes=self.cue_classes,
            seed=seed,
        )

    def seen_scenes(self, n: int, seed: int, image_size: int) -> SceneData:
        """Held-out scenes as the model met them in training (``clean-none``: without tags)."""
        if self.watermark == "none":
            return make_scenes(n, image_size=image_size, watermark="none", seed=seed)
        return self.scenes(n, seed, image_size)

    def moved_scenes(self, n: int, seed: int, image_size: int) -> SceneData:
        """Scenes where the cue lies: every tag in another class's corner (corner cue), or a tag on every
        class (presence cue); a tag in a random corner for the clean controls."""
        if self.watermark == "correlated" and self.cue_classes is None:
            return make_scenes(n, image_size=image_size, watermark="correlated", correlation=0.0, seed=seed)
        return make_scenes(n, image_size=image_size, watermark="random", seed=seed)


def conditions(quick: bool) -> list[Condition]:
    if quick:
        return [
            Condition("clean-random", "random"),
            Condition("corner-1.0", "correlated", 1.0),
            Condition("single-1.0", "correlated", 1.0, (0,)),
        ]
    return [
        Condition("clean-random", "random"),
        Condition("clean-none", "none"),
        Condition("corner-1.0", "correlated", 1.0),
        Condition("corner-0.9", "correlated", 0.9),
        Condition("corner-0.7", "correlated", 0.7),
        Condition("single-1.0", "correlated", 1.0, (0,)),
    ]


def accuracy(model: torch.nn.Module, scenes: SceneData) -> float:
    """Share of ``scenes`` the model (in eval mode) classifies correctly."""
    model.eval()
    with torch.inference_mode():
        return float((model(scenes.images).argmax(1) == scenes.labels).float().mean())


def worst(report: AuditReport, key: str, policy: ShortcutPolicy, lowest: bool = False) -> float:
    """The class value of ``key`` the per-class rules would judge worst (NaN when no class is judged)."""
    table = report.per_class
    judged = table[table["n_scored"] >= policy.min_class_samples][key].dropna()
    if judged.empty:
        return math.nan
    return float(judged.min() if lowest else judged.max())


def measure(condition: Condition, pool: Pool, seed: int, args: argparse.Namespace) -> AuditReport:
    """Train one model, measure its accuracy with the cue, without it and with it moved, and audit it.

    Returns:
        The final audit's report; its ``meta`` also carries the condition, the accuracies and the best
        ``focus_lift`` of the earlier epochs' audits.
    """
    size = args.image_size
    train = condition.seen_scenes(args.n_train, seed, size)  # the training distribution itself
    probe = condition.scenes(args.n_probe, seed + 20_000, size).to_probe()
    torch.manual_seed(seed)
    model = SceneClassifier(num_classes=3, width=args.width, pool=pool)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.hparams.lr)
    generator = torch.Generator().manual_seed(seed)
    history: list[float] = []
    policy = ShortcutPolicy()
    for _ in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(train), generator=generator).split(args.batch_size):
            loss = torch.nn.functional.cross_entropy(model(train.images[batch]), train.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if len(history) < args.epochs - 1:  # the last epoch's audit is the full one below
            focus = audit(model, probe, target_layer="features", counterfactual=False, policy=policy)
            history.append(focus.summary["focus_lift"])
    report = audit(model, probe, target_layer="features", policy=policy)
    test = condition.seen_scenes(args.n_test, seed + 30_000, size)
    moved = condition.moved_scenes(args.n_test, seed + 40_000, size)
    report.meta.update(
        condition=condition.name,
        clean=condition.clean,
        pool=pool,
        seed=seed,
        best_focus_lift=max((h for h in history if not math.isnan(h)), default=None),
        acc_cue=accuracy(model, test),
        acc_removed=accuracy(model, test.without_watermark()),
        acc_moved=accuracy(model, moved),
    )
    return report


def judge(report: AuditReport, policy: ShortcutPolicy, shortcut_drop: float) -> dict[str, object]:
    """One row of the per-model table: behaviour, audit numbers, and ``policy``'s verdict on them."""
    meta = report.meta
    best = meta["best_focus_lift"]
    report = report.with_verdict(policy, best_focus_lift=best)
    fired = sorted({f.rule for f in report.verdict.findings})
    summary = report.summary
    focus_lift = summary["focus_lift"]
    acc_cue, acc_removed, acc_moved = meta["acc_cue"], meta["acc_removed"], meta["acc_moved"]
    return {
        "condition": meta["condition"],
        "clean": meta["clean"],
        "pool": meta["pool"],
        "seed": meta["seed"],
        "acc_cue": acc_cue,
        "acc_removed": acc_removed,
        "acc_moved": acc_moved,
        "shortcut": max(acc_cue - acc_removed, acc_cue - acc_moved) > shortcut_drop,
        "focus_lift": focus_lift,
        "spurious_lift": summary["spurious_lift"],
        "cf_flip_rate": summary["cf_flip_rate"],
        "cf_paste_rate": summary["cf_paste_rate"],
        "min_class_focus_lift": worst(report, "focus_lift", policy, lowest=True),
        "max_class_spurious_lift": worst(report, "spurious_lift", policy),
        "max_class_flip_rate": worst(report, "cf_flip_rate", policy),
        "max_class_paste_rate": worst(report, "cf_paste_rate", policy),
        "focus_drop": 1 - focus_lift / best if best and not math.isnan(best) else math.nan,
        "flagged": not report.verdict.passed,
        "fired": ",".join(_short(rule) for rule in fired) or "-",
        "evidence": sorted({EVIDENCE[rule] for rule in fired}),
        "flag_scopes": sorted({f.scope for f in report.verdict.findings}),
        "attribution_seconds": report.meta["attribution_seconds"],
        "counterfactual_seconds": report.meta["counterfactual_seconds"],
    }


def rates(models: pd.DataFrame) -> pd.DataFrame:
    """Detection rate (shortcut models) and false-alarm rate (the others) of the policy, by evidence kind."""
    groups = {
        "shortcut models (detection rate)": models[models["shortcut"]],
        "non-shortcut models (false-alarm rate)": models[~models["shortcut"]],
        "  of which clean controls": models[~models["shortcut"] & models["clean"]],
        "  of which cue-trained": models[~models["shortcut"] & ~models["clean"]],
    }
    rows = {}
    for name, group in groups.items():
        row: dict[str, object] = {"n": len(group)}
        for kind in ("attribution", "counterfactual", "history"):
            row[kind] = _share(group["evidence"].map(lambda fired, kind=kind: kind in fired))
        row["any (verdict)"] = _share(group["flagged"])
        rows[name] = row
    return pd.DataFrame(rows).T


def margins(models: pd.DataFrame, policy: ShortcutPolicy) -> pd.DataFrame:
    """For each rule: the clean controls' worst value, the shortcut models' values, the default threshold.

    A threshold is safe when it lies beyond every clean control's worst value; it catches the shortcut
    models whose value lies beyond it.
    """
    specs = (
        ("min_focus_lift", "min_class_focus_lift", "focus_lift", True),
        ("max_spurious_lift", "max_class_spurious_lift", "spurious_lift", False),
        ("max_flip_rate", "max_class_flip_rate", "cf_flip_rate", False),
        ("max_paste_rate", "max_class_paste_rate", "cf_paste_rate", False),
        ("max_focus_drop", "focus_drop", "focus_drop", False),
    )
    clean = models[models["clean"] & ~models["shortcut"]]
    shortcut = models[models["shortcut"]]
    rows = {}
    for rule, per_class, probe_wide, lowest in specs:
        # a model's worst value over the probe and every judged class: what the policy sees
        both = pd.concat([models[per_class], models[probe_wide]], axis=1)
        value = both.min(axis=1) if lowest else both.max(axis=1)
        clean_worst = value[clean.index].min() if lowest else value[clean.index].max()
        threshold = getattr(policy, rule)
        caught = (value[shortcut.index] < threshold) if lowest else (value[shortcut.index] > threshold)
        rows[rule] = {
            "default": threshold,
            "clean worst": clean_worst,
            "shortcut min": value[shortcut.index].min(),
            "shortcut median": value[shortcut.index].median(),
            "shortcut max": value[shortcut.index].max(),
            "shortcut caught": f"{int(caught.sum())}/{len(shortcut)}",
        }
    return pd.DataFrame(rows).T


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few small models: a smoke run")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per condition (default 3; quick 1)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run from here (a held-out check of chosen defaults)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 8; quick 2)")
    parser.add_argument("--n-train", type=int, default=None, help="training scenes (default 1200; quick 300)")
    parser.add_argument("--n-probe", type=int, default=96, help="probe scenes per model")
    parser.add_argument("--n-test", type=int, default=600, help="test scenes for each accuracy")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pools", default="avg,max", help="comma-separated heads: avg, max")
    parser.add_argument("--shortcut-drop", type=float, default=0.10, help="accuracy drop of a shortcut model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="write each model's report.json here")
    parser.add_argument(
        "--from-reports",
        type=Path,
        default=None,
        help="judge the reports an earlier run wrote with --out instead of training again",
    )
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.epochs = args.epochs or (2 if args.quick else 8)
    args.n_train = args.n_train or (300 if args.quick else 1200)
    if args.quick:
        args.n_probe, args.n_test = min(args.n_probe, 48), min(args.n_test, 200)
    if args.threads:
        torch.set_num_threads(args.threads)
    pools = [p.strip() for p in args.pools.split(",")]
    if any(p not in ("avg", "max") for p in pools):
        parser.error(f"--pools takes avg and/or max, got {args.pools!r}")

    started = time.perf_counter()
    policy = ShortcutPolicy()
    if args.from_reports is not None:
        paths = sorted(args.from_reports.glob("*.json"))
        if not paths:
            parser.error(f"--from-reports {args.from_reports} holds no report .json files")
        reports = [AuditReport.from_json(path) for path in paths]
        reports.sort(key=lambda r: (r.meta["order"], r.meta["pool"], r.meta["seed"]))
        settings = reports[0].meta["settings"]
    else:
        reports = []
        keys = ("epochs", "n_train", "image_size", "width", "n_probe")
        settings = {k: getattr(args, k) for k in keys}
        # seeds outermost, so that an interrupted run has covered every condition
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for order, condition in enumerate(conditions(args.quick)):
                for pool in pools:
                    report = measure(condition, pool, seed, args)
                    report.meta.update(order=order, settings=settings)
                    reports.append(report)
                    if args.out is not None:
                        report.to_json(args.out / f"{condition.name}-{pool}-{seed}.json")
                    row = judge(report, policy, args.shortcut_drop)
                    print(
                        f"  {condition.name:<13} {pool} seed {seed}: acc {row['acc_cue']:.2f}/"
                        f"{row['acc_removed']:.2f}/{row['acc_moved']:.2f} flagged={row['flagged']} "
                        f"({row['fired']}) [{time.perf_counter() - started:.0f} s]",
                        file=sys.stderr,
                        flush=True,
                    )
    models = pd.DataFrame([judge(report, policy, args.shortcut_drop) for report in reports])
    cost = models["counterfactual_seconds"].sum() / models["attribution_seconds"].sum()
    with pd.option_context(
        "display.width", 250, "display.max_columns", 40, "display.float_format", "{:.2f}".format
    ):
        s = settings
        print(
            f"shortcut study: {len(models)} models, {models['seed'].nunique()} seed(s), "
            f"{s['epochs']} epochs, "
            f"{s['n_train']} training scenes of {s['image_size']}px, width {s['width']}, "
            f"probe {s['n_probe']}; shortcut = accuracy falls > {args.shortcut_drop:.0%} without or "
            "with a moved cue"
        )
        print("\nper model (acc_* on held-out scenes: with the cue, cue removed, cue moved)")
        print(models[list(MODEL_COLUMNS)].to_string(index=False))
        print(f"\ndefault policy: {policy}")
        print("\ndetection and false-alarm rates of the default policy, by evidence kind")
        print(rates(models).to_string())
        print("\nmargins: each rule's worst value over probe and judged classes")
        print(margins(models, policy).to_string())
        seconds = models[["counterfactual_seconds", "attribution_seconds"]].sum()
        print(
            f"\ncounterfactual cost: {seconds.iloc[0]:.1f} s in fill/paste forwards vs "
            f"{seconds.iloc[1]:.1f} s in Grad-CAM++ ({cost:.2f}x)"
        )
        print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _share(flags: pd.Series) -> str:
    return f"{int(flags.sum())}/{len(flags)}" if len(flags) else "-"


def _short(rule: str) -> str:
    return {
        "min_focus_lift": "focus",
        "max_spurious_lift": "spurious",
        "max_flip_rate": "flip",
        "max_paste_rate": "paste",
        "max_focus_drop": "drop",
        "inconclusive": "inconclusive",
    }[rule]


if __name__ == "__main__":
    sys.exit(main())
