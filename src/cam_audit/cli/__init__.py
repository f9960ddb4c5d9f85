"""The ``cam-audit`` command: ``audit``, ``gate`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cam_audit.cli.stdout import drop_stdout


class _Parser(argparse.ArgumentParser):
    """Bad arguments end in one line on stderr and exit code 2, never a usage dump or a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cam-audit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser(
        "demo", help="train a clean and a watermark-shortcut model and compare their audits"
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for logs and reports")
    demo.add_argument("--epochs", type=int, default=6)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-train", type=int, default=1536, help="training scenes per model")

    # `audit` is parsed by jsonargparse (its config keys are typed); listed here for --help
    sub.add_parser(
        "audit",
        add_help=False,
        help="audit a checkpoint offline: --config configs/audit.yaml [--ckpt PATH] [--out DIR]; "
        "exit 0 pass, 1 fail, 2 bad input",
    )

    from cam_audit.cli.gate import add_gate_arguments

    add_gate_arguments(
        sub.add_parser("gate", help="exit 0 if a report passes the policy (with --baseline: if it may "
                       "replace the champion), 1 if not, 2 on bad input")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cam-audit``; returns the exit code.

    Each command prints its result through :func:`~cam_audit.cli.stdout.emit`, so a reader that leaves
    early (``| head -1``) leaves the exit code as the command decided it. A closed stdout met anywhere else
    ends the command quietly with exit code 1: never a traceback, never a pass that was not decided.
    """
    try:
        return _run(argv)
    except BrokenPipeError:
        drop_stdout()
        return 1


def _run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:
        from cam_audit.cli.audit_cmd import main as audit_main

        return audit_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "gate":
        from cam_audit.cli.gate import run_gate

        return run_gate(args)
    if args.command == "demo":
        from cam_audit.cli.demo import run_demo

        try:
            run_demo(args.out, epochs=args.epochs, seed=args.seed, n_train=args.n_train)
        except BrokenPipeError:  # the summary is printed after every file is written: the demo is done
            drop_stdout()
        return 0
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
