"""``cam-audit gate``: pass or fail a report against a policy, for CI pipelines.

Exit codes: 0 the report passes, 1 it fails (one line per failed rule), 2 the report is unreadable or
the arguments are bad (a one-line message, never a traceback). ``--json`` prints the decision as JSON.
Missing evidence fails: a report whose samples could not be scored, or of a model at chance, fails with
an ``inconclusive`` finding (exit 1); a summary value that is not a number or null, or a table of the
wrong shape, makes the report unreadable (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from cam_audit.errors import CamAuditError
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.report.policy import RULE_HELP

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2

#: ShortcutPolicy threshold field (flag ``--min-focus-lift`` for ``min_focus_lift``) -> its help line
RULE_FLAGS = RULE_HELP


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", type=Path, help="report.json written by the callback or `cam-audit audit`")
    parser.add_argument("--policy", type=Path, help="YAML or JSON file of ShortcutPolicy fields")
    for field, text in RULE_FLAGS.items():
        parser.add_argument("--" + field.replace("_", "-"), type=float, default=None, metavar="X", help=text)
    parser.add_argument("--no-per-class", action="store_true", help="judge probe-wide numbers only")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")


def gate_policy(report: AuditReport, args: argparse.Namespace) -> ShortcutPolicy:
    """The report's own policy, overridden by ``--policy FILE``, then by each rule flag given."""
    policy = report.policy
    if args.policy is not None:
        policy = ShortcutPolicy.from_dict(_read_mapping(args.policy))
    overrides = {f: getattr(args, f) for f in RULE_FLAGS if getattr(args, f) is not None}
    if args.no_per_class:
        overrides["per_class"] = False
    return replace(policy, **overrides)


def run_gate(args: argparse.Namespace) -> int:
    try:
        report = AuditReport.from_json(args.report)
        policy = gate_policy(report, args)
    except CamAuditError as err:
        print(f"cam-audit gate: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    best = report.meta.get("best_focus_lift")
    verdict = policy.evaluate(
        report.summary, report.per_class, best if isinstance(best, (int, float)) else None
    )
    task = report.meta.get("task")
    shown = f" ({task})" if task else ""
    if args.json:
        print(
            json.dumps(
                {"report": str(args.report), "task": task, "policy": policy.to_dict(), **verdict.to_dict()},
                indent=1,
            )
        )
    elif verdict.passed:
        print(
            f"PASS {args.report}{shown}: focus_lift {report.summary.get('focus_lift', float('nan')):.2f}, "
            f"spurious_lift {report.summary.get('spurious_lift', float('nan')):.2f}"
        )
    else:
        print(f"FAIL {args.report}{shown}: {len(verdict.findings)} rule(s) failed")
        for finding in verdict.findings:
            print(f"  {finding.rule}: {finding.message}")
    return EXIT_PASS if verdict.passed else EXIT_FAIL


def _read_mapping(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as err:
        raise CamAuditError(f"--policy file {path} cannot be read: {err.strerror or err}") from err
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception as err:  # yaml.YAMLError and friends: report them as bad input
        raise CamAuditError(f"--policy file {path} is not valid YAML/JSON: {err}") from err
    if not isinstance(data, dict):
        raise CamAuditError(f"--policy file {path} must hold a mapping of ShortcutPolicy fields")
    return data.get("policy", data)
