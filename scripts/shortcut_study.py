"""Evidence for the ``ShortcutPolicy`` defaults: how often does the default policy catch a shortcut model,
and how often does it cry wolf on a model that has none?

Small ``SceneNet`` models are trained on the synthetic scenes over several seeds, in the conditions of
:func:`cam_audit.synthetic.study.conditions` (``--quick`` runs a small subset as a smoke test), each with
a global-average-pooling and a global-max-pooling head. Every model is audited after every epoch (for
``focus_lift``'s history) and, at the end, with the counterfactual test on a probe drawn from its own
training distribution, and judged by the default :class:`~cam_audit.ShortcutPolicy`.

A model is a **shortcut model** by its behaviour, not by how it was trained: its accuracy falls by more
than ``--shortcut-drop`` (10 points) when the cue is removed or moved. The conditions, the training, the
judging and the tables live in :mod:`cam_audit.synthetic.study`; this script parses the arguments, runs
it and prints the tables. Run it with::

    .venv/bin/python scripts/shortcut_study.py            # the full study (about 10-25 min on 2 cores)
    .venv/bin/python scripts/shortcut_study.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from cam_audit import ShortcutPolicy, audit
from cam_audit.report import AuditReport
from cam_audit.synthetic import study


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pools = [p.strip() for p in args.pools.split(",")]
    if any(p not in ("avg", "max") for p in pools):
        parser.error(f"--pools takes avg and/or max, got {args.pools!r}")

    started = time.perf_counter()
    policy = ShortcutPolicy()
    if args.from_reports is not None:
        reports = study.saved_reports(args.from_reports)
        if not reports:
            parser.error(f"--from-reports {args.from_reports} holds no report .json files")
    else:
        reports = _train(args, pools, policy, started)
    models = study.model_table(reports, policy, args.shortcut_drop)
    _print_tables(models, reports[0].meta["settings"], policy, args.shortcut_drop)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study.add_study_arguments(parser)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per condition (default 3; quick 1)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run from here (a held-out check of chosen defaults)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write each model's report.json here")
    return parser


def _train(
    args: argparse.Namespace, pools: list[str], policy: ShortcutPolicy, started: float
) -> list[AuditReport]:
    """Train and audit every model of the run, saving each report (``--out``) and printing a progress line."""
    settings = study.settings_from(args)
    seeds = range(args.first_seed, args.first_seed + (args.seeds or (1 if args.quick else 3)))
    reports = []
    for report in study.train_study(study.conditions(args.quick), pools, seeds, settings, audit):
        reports.append(report)
        if args.out is not None:
            report.to_json(args.out / study.report_file(report))
        row = study.judge(report, policy, args.shortcut_drop)
        print(
            f"  {row['condition']:<13} {row['pool']} seed {row['seed']}: acc {row['acc_cue']:.2f}/"
            f"{row['acc_removed']:.2f}/{row['acc_moved']:.2f} flagged={row['flagged']} "
            f"({row['fired']}) [{time.perf_counter() - started:.0f} s]",
            file=sys.stderr,
            flush=True,
        )
    return reports


def _print_tables(models: pd.DataFrame, settings: dict, policy: ShortcutPolicy, shortcut_drop: float) -> None:
    s = settings
    with pd.option_context(
        "display.width", 250, "display.max_columns", 40, "display.float_format", "{:.2f}".format
    ):
        print(
            f"shortcut study: {len(models)} models, {models['seed'].nunique()} seed(s), "
            f"{s['epochs']} epochs, "
            f"{s['n_train']} training scenes of {s['image_size']}px, width {s['width']}, "
            f"probe {s['n_probe']}; shortcut = accuracy falls > {shortcut_drop:.0%} without or "
            "with a moved cue"
        )
        print("\nper model (acc_* on held-out scenes: with the cue, cue removed, cue moved)")
        print(models[list(study.MODEL_COLUMNS)].to_string(index=False))
        print(f"\ndefault policy: {policy}")
        print("\ndetection and false-alarm rates of the default policy, by evidence kind")
        print(study.rates(models).to_string())
        print("\nmargins: each rule's worst value over probe and judged classes")
        print(study.margins(models, policy).to_string())
        seconds = models[["counterfactual_seconds", "attribution_seconds"]].sum()
        print(
            f"\ncounterfactual cost: {seconds.iloc[0]:.1f} s in fill/paste forwards vs "
            f"{seconds.iloc[1]:.1f} s in Grad-CAM++ ({seconds.iloc[0] / seconds.iloc[1]:.2f}x)"
        )


if __name__ == "__main__":
    sys.exit(main())
