"""``cam-audit gate``: pass or fail a report against a policy, for CI pipelines.

Exit codes: 0 the report passes, 1 it fails (one line per failed rule), 2 the report is unreadable or
the arguments are bad (a one-line message, never a traceback). ``--json`` prints the decision as JSON.
A report of a discovery audit fails on each cue the policy confirms (``--min-cue-excess``), printed with
its class, place and rates, and on ``bg_gap`` above ``--max-bg-gap``. Missing evidence fails: a report
whose samples could not be scored, or of a model at chance, fails with an ``inconclusive`` finding
(exit 1); a summary value that is not a number or null, or a table of the wrong shape, makes the report
unreadable (exit 2).

With ``--baseline CHAMPION.json`` the gate decides a promotion (see :mod:`cam_audit.report.compare`):
exit 0 promote, 1 do not promote (each reason printed: the policy's flags, a new flag, a significant
regression of a judged score beyond ``--max-regression``), 2 an unreadable report, different probes,
targets, tasks or methods, or an unknown score. ``--markdown FILE`` writes the comparison as a table for a
pull-request comment.

A reader that stops early (``cam-audit gate report.json | head -1``) ends the printing, not the decision:
the exit code stands and nothing is printed about the closed pipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from cam_audit.cli.stdout import emit
from cam_audit.errors import CamAuditError
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.report.policy import RULE_HELP, SETTING_HELP

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2

#: ShortcutPolicy threshold field (flag ``--min-focus-lift`` for ``min_focus_lift``) -> its help line
RULE_FLAGS = RULE_HELP
#: The policy's settings that are not thresholds, as flags, with their types.
SETTING_FLAGS: dict[str, type] = {"min_class_samples": int, "cue_alpha": float, "min_cue_samples": int}


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", type=Path, help="report.json written by the callback or `cam-audit audit`")
    parser.add_argument("--policy", type=Path, help="YAML or JSON file of ShortcutPolicy fields")
    for field, text in RULE_FLAGS.items():
        parser.add_argument("--" + field.replace("_", "-"), type=float, default=None, metavar="X", help=text)
    parser.add_argument("--no-per-class", action="store_true", help="judge probe-wide numbers only")
    for field, kind in SETTING_FLAGS.items():
        flag, metavar = "--" + field.replace("_", "-"), "N" if kind is int else "X"
        parser.add_argument(flag, type=kind, default=None, metavar=metavar, help=SETTING_HELP[field])
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    promotion = parser.add_argument_group("promotion against a champion")
    promotion.add_argument("--baseline", type=Path, metavar="CHAMPION.json",
                           help="report of the model the candidate would replace, audited on the same probe")
    promotion.add_argument("--max-regression", type=float, default=None, metavar="X",
                           help="largest tolerated fall of a judged score, as a fraction of the champion's "
                           "(default 0.05)")
    promotion.add_argument("--scores", type=_score_list, default=None, metavar="K,...",
                           help="scores judged against the champion (default focus_lift)")
    promotion.add_argument("--level", type=float, default=None, metavar="A",
                           help="significance level of the paired test (default 0.01)")
    promotion.add_argument("--markdown", type=Path, default=None, metavar="FILE",
                           help="write the comparison as Markdown (for a pull-request comment)")


def gate_policy(report: AuditReport, args: argparse.Namespace) -> ShortcutPolicy:
    """The report's own policy, overridden by ``--policy FILE``, then by each rule flag given."""
    policy = report.policy
    if args.policy is not None:
        policy = ShortcutPolicy.from_dict(_read_mapping(args.policy))
    overrides = {f: getattr(args, f) for f in [*RULE_FLAGS, *SETTING_FLAGS] if getattr(args, f) is not None}
    tested = report.policy.min_cue_samples
    if overrides.get("min_cue_samples", tested) < tested:
        raise CamAuditError(
            f"--min-cue-samples {overrides['min_cue_samples']} is below the audit's own {tested}: cues of "
            f"fewer samples were not tested, so they cannot be confirmed now; audit again with "
            f"min_cue_samples={overrides['min_cue_samples']}, or give at least {tested}"
        )
    if args.no_per_class:
        overrides["per_class"] = False
    return replace(policy, **overrides)


def run_gate(args: argparse.Namespace) -> int:
    try:
        _check_promotion_flags(args)
        report = AuditReport.from_json(args.report)
        policy = gate_policy(report, args)
    except CamAuditError as err:
        print(f"cam-audit gate: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if getattr(args, "baseline", None) is not None:
        return run_promotion(report, policy, args)
    best = report.meta.get("best_focus_lift")
    # the cue table is judged again too: --min-cue-excess decides which cues are confirmed
    verdict = policy.evaluate(
        report.summary, report.per_class, best if isinstance(best, (int, float)) else None, cues=report.cues
    )
    task = report.meta.get("task")
    shown = f" ({task})" if task else ""
    if args.json:
        decision = {"report": str(args.report), "task": task, "policy": policy.to_dict(), **verdict.to_dict()}
        emit(json.dumps(decision, indent=1))
    elif verdict.passed:
        emit(
            f"PASS {args.report}{shown}: focus_lift {report.summary.get('focus_lift', float('nan')):.2f}, "
            f"spurious_lift {report.summary.get('spurious_lift', float('nan')):.2f}"
        )
    else:
        lines = [f"FAIL {args.report}{shown}: {len(verdict.findings)} rule(s) failed"]
        emit("\n".join(lines + [f"  {finding.rule}: {finding.message}" for finding in verdict.findings]))
    return EXIT_PASS if verdict.passed else EXIT_FAIL


def run_promotion(report: AuditReport, policy: ShortcutPolicy, args: argparse.Namespace) -> int:
    """``cam-audit gate CANDIDATE --baseline CHAMPION``: compare, print, write Markdown; the exit code."""
    try:
        try:
            baseline = AuditReport.from_json(args.baseline)
        except CamAuditError as err:
            raise CamAuditError(f"--baseline: {err}") from err
        comparison = report.compare(baseline, policy=policy, **_promotion_settings(args))
        if args.markdown is not None:
            _write_text(args.markdown, comparison.to_markdown(str(args.report), str(args.baseline)))
    except CamAuditError as err:
        print(f"cam-audit gate: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        decision = {"report": str(args.report), "baseline": str(args.baseline), "policy": policy.to_dict(),
                    **comparison.candidate_verdict.to_dict()}
        # "passed" is the promotion; the candidate's own verdict stays under comparison
        decision["passed"] = comparison.passed
        emit(json.dumps({**decision, "comparison": comparison.to_dict()}, indent=1))
    else:
        emit("\n".join(comparison.to_text(str(args.report), str(args.baseline))))
    return EXIT_PASS if comparison.passed else EXIT_FAIL


def _promotion_settings(args: argparse.Namespace) -> dict:
    settings = {"max_regression": args.max_regression, "scores": args.scores, "level": args.level}
    return {k: v for k, v in settings.items() if v is not None}


def _check_promotion_flags(args: argparse.Namespace) -> None:
    if getattr(args, "baseline", None) is not None:
        return
    flags = ("max_regression", "scores", "level", "markdown")
    given = [flag for flag in flags if getattr(args, flag, None) is not None]
    if given:
        named = ", ".join("--" + flag.replace("_", "-") for flag in given)
        raise CamAuditError(f"{named} compare against a champion: add --baseline CHAMPION.json")


def _score_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise CamAuditError(f"--markdown file {path} cannot be written: {err.strerror or err}") from err


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
