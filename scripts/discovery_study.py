"""Can cam_audit find a shortcut nobody annotated? ``audit(..., discover=True)`` against the annotated audit.

Small ``SceneNet`` models are trained as in ``scripts/shortcut_study.py`` (the same conditions, pools and
seeds give the same models) plus two conditions whose cue no box can mark: a class-specific background
tint (``bg-colour``) and stripe texture (``bg-texture``). Every model is audited on a probe of object
regions only with ``discover=True``, and judged four ways: by attribution alone, by discovery (a
confirmed cue or ``bg_gap``), by both, and, for reference, by the annotated audit (the tags marked as
spurious regions). ShortKit-ML's SpRAy, run on the same Grad-CAM++ maps, is printed beside them when it
is installed (``pip install --no-deps shortkit-ml``; its torch<2.3 pin excludes cam_audit's torch).

A model is a **shortcut model** by its behaviour: its accuracy falls by more than ``--shortcut-drop``
(10 points) when the cue is removed or moved. The held-out seeds (``--held-out``) are reported apart.
Conditions, training, judging and tables live in :mod:`cam_audit.synthetic.study`; this script parses the
arguments, runs them and prints the tables. The full study trains 80 models, about 18 s each on one
core; two processes, one per core, share a folder (``--seeds 0,1,2 --held-out ""`` and ``--seeds ""
--held-out 3,4``) and ``--from-reports`` prints the tables of both. Training depends on torch's thread
count, so pass ``--threads`` for numbers that repeat. Run it with::

    .venv/bin/python scripts/discovery_study.py --threads 1 --out runs/discovery
    .venv/bin/python scripts/discovery_study.py --from-reports runs/discovery   # the tables again
    .venv/bin/python scripts/discovery_study.py --quick                           # a smoke run
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
        pairs = study.saved_pairs(args.from_reports)
        if not pairs:
            parser.error(f"--from-reports {args.from_reports} holds no pair of study reports")
    else:
        pairs = _train(args, pools, policy, started)
    models = study.pair_table(pairs, policy, args.shortcut_drop)
    _print_tables(models, pairs[0][0].meta["settings"], policy, args.shortcut_drop)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _seeds(text: str) -> list[int]:
    return [int(seed) for seed in text.split(",") if seed.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study.add_study_arguments(parser)
    parser.add_argument(
        "--seeds", type=_seeds, default=None, help="comma-separated seeds (default 0,1,2; quick 0)"
    )
    parser.add_argument(
        "--held-out", type=_seeds, default=None, help="seeds reported apart (default 3,4; quick none)"
    )
    parser.add_argument("--no-spray", action="store_true", help="skip ShortKit-ML's SpRAy even if installed")
    parser.add_argument("--out", type=Path, default=None, help="write each model's two reports here")
    return parser


def _train(
    args: argparse.Namespace, pools: list[str], policy: ShortcutPolicy, started: float
) -> list[tuple[AuditReport, AuditReport]]:
    """Train and audit every model of the run, saving its reports (``--out``) with a progress line each."""
    settings = study.settings_from(args)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    held_out = args.held_out if args.held_out is not None else ([] if args.quick else [3, 4])
    spray = not args.no_spray and study.spray_available()
    if not args.no_spray and not spray:
        print(f"SpRAy skipped: ShortKit-ML is not installed ({study.INSTALL_HINT})", file=sys.stderr)
    conditions = study.discovery_conditions(args.quick)
    pairs = []
    for annotated, discovered in study.train_discovery_study(
        conditions, pools, seeds, held_out, settings, audit, spray=spray
    ):
        pairs.append((annotated, discovered))
        if args.out is not None:
            study.save_pair(args.out, annotated, discovered)
        row = study.judge_pair(annotated, discovered, policy, args.shortcut_drop)
        print(
            f"  {row['condition']:<13} {row['pool']} seed {row['seed']}: acc {row['acc_cue']:.2f}/"
            f"{row['acc_removed']:.2f}/{row['acc_moved']:.2f} "
            + " ".join(f"{mode}={row[mode]}" for mode in study.MODES)
            + f" [{time.perf_counter() - started:.0f} s]",
            file=sys.stderr,
            flush=True,
        )
    return pairs


def _print_tables(models: pd.DataFrame, settings: dict, policy: ShortcutPolicy, shortcut_drop: float) -> None:
    s = settings
    with pd.option_context(
        "display.width", 250, "display.max_columns", 40, "display.float_format", "{:.2f}".format
    ):
        seeds = {
            split: sorted(set(models[models["held_out"] == split]["seed"].tolist()))
            for split in (False, True)
        }
        print(
            f"discovery study: {len(models)} models, seeds {seeds[False]} + held-out {seeds[True]}, "
            f"{s['epochs']} epochs, {s['n_train']} training scenes of {s['image_size']}px, "
            f"width {s['width']}, probe {s['n_probe']}; shortcut = accuracy falls > {shortcut_drop:.0%} "
            "without or with a moved cue"
        )
        print("\nper model (acc_* on held-out scenes: with the cue, cue removed, cue moved)")
        print(models[[*study.PAIR_COLUMNS, "held_out"]].to_string(index=False))
        print(f"\npolicy: {policy}")
        for held_out, title in ((False, "seeds"), (True, "held-out seeds")):
            split = models[models["held_out"] == held_out]
            if len(split):
                print(f"\nflagged / models, {title} (attribution, discovery and both without annotations)")
                print(study.detection_rates(split).to_string())
        _print_misses(models)
        print("\nwhere the confirmed cues lie (tag conditions), and bg_gap (accuracy with the object on a")
        print("background of its own class minus on one of another class)")
        print(study.cue_locations(models).to_string())
        _print_spray(models)
        cost = study.cost(models)
        print(
            f"\ncost per model (median): discovery {cost['discovery_seconds']:.2f} s, Grad-CAM++ "
            f"{cost['attribution_seconds']:.2f} s, annotated fill/paste tests "
            f"{cost['counterfactual_seconds']:.2f} s (probes with a tag); discovery / counterfactual "
            f"{cost['discovery / counterfactual']:.1f}x (median of the models' ratios)"
        )


def _print_misses(models: pd.DataFrame) -> None:
    missed = study.missed_without_annotations(models)
    caught = int((models["shortcut"] & models["annotated"]).sum())
    verdict = "yes" if missed.empty else f"no: {len(missed)} of {caught} missed"
    print(f"\nevery shortcut model the annotated verdict catches is caught without annotations: {verdict}")
    if not missed.empty:
        print(missed.to_string(index=False))


def _print_spray(models: pd.DataFrame) -> None:
    if models["spray"].isna().all():
        print(f"\nSpRAy: not run ({study.INSTALL_HINT})")
        return
    print("\nSpRAy (ShortKit-ML, its defaults) on the same Grad-CAM++ maps: flagged / models and its reasons")
    for name, group in (
        ("shortcut models", models[models["shortcut"]]),
        ("clean controls", models[models["clean"] & ~models["shortcut"]]),
    ):
        reasons = group["spray_flags"].str.split(",").explode()
        counts = reasons[reasons != ""].value_counts().to_dict()
        print(f"  {name}: {int(group['spray'].astype(bool).sum())}/{len(group)} {counts or ''}")


if __name__ == "__main__":
    sys.exit(main())
