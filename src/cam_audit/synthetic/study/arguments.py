"""The command-line arguments both study scripts share: the run's sizes, heads, threads and judging."""

from __future__ import annotations

import argparse
from pathlib import Path

from cam_audit.synthetic.study.training import StudySettings


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick``, the sizes of :class:`StudySettings`, ``--pools``, ``--shortcut-drop``, ``--threads`` and
    ``--from-reports``: what ``scripts/shortcut_study.py`` and ``scripts/discovery_study.py`` both take."""
    parser.add_argument("--quick", action="store_true", help="a few small models: a smoke run")
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
    parser.add_argument(
        "--from-reports",
        type=Path,
        default=None,
        help="judge the reports an earlier run wrote with --out instead of training again",
    )


def settings_from(args: argparse.Namespace) -> StudySettings:
    """The run's :class:`StudySettings` from the arguments of :func:`add_study_arguments`."""
    return StudySettings.for_run(
        args.quick,
        epochs=args.epochs,
        n_train=args.n_train,
        n_probe=args.n_probe,
        n_test=args.n_test,
        image_size=args.image_size,
        width=args.width,
        batch_size=args.batch_size,
    )


__all__ = ["add_study_arguments", "settings_from"]
