"""``AuditReport``: what one audit found, and its exact JSON round trip."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cam_audit.errors import ReportError
from cam_audit.report.jsonio import clean, frame_from_json, frame_to_json, from_json_number, to_json_number
from cam_audit.report.policy import ShortcutPolicy, Verdict

if TYPE_CHECKING:
    from cam_audit.report.compare import Comparison

#: Summary keys every report carries (NaN where the probe gives no evidence for one).
SUMMARY_KEYS = (
    "focus",
    "focus_lift",
    "pointing_game",
    "relevance_rank",
    "spurious_mass",
    "spurious_lift",
    "cf_flip_rate",
    "cf_confidence_drop",
    "cf_paste_rate",
    "accuracy",
    "n_samples",
    "n_degenerate",
    "n_spurious",
)

REPORT_FORMAT = "cam_audit.report/1"



@dataclass
class AuditReport:
    """What one audit found.

    Attributes:
        summary: probe-wide numbers, keys as in :data:`SUMMARY_KEYS` (NaN where there is no evidence).
        samples: one row per probe sample (``sample_id``, ``label``, ``target``, ``prediction``,
            ``focus``, ``focus_lift``, ...).
        per_class: one row per class (index: class name) with the summary keys.
        verdict: the policy's :class:`Verdict`.
        policy: the :class:`ShortcutPolicy` that produced it.
        meta: epoch, step, target layer, method, fingerprints, versions.
    """

    summary: dict[str, float]
    samples: pd.DataFrame
    per_class: pd.DataFrame
    verdict: Verdict
    policy: ShortcutPolicy
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "summary": {k: to_json_number(v) for k, v in self.summary.items()},
            "verdict": clean(self.verdict.to_dict()),
            "policy": self.policy.to_dict(),
            "meta": clean(self.meta),
            "per_class": frame_to_json(self.per_class),
            "samples": frame_to_json(self.samples),
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON (NaN written as ``null``); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        # one top-level field per line, each written compactly: json's C encoder only runs without
        # ``indent``, and the per-sample table of a large probe took most of an audit's report time
        fields = (
            f"{json.dumps(key)}: {json.dumps(value, allow_nan=False, separators=(',', ':'))}"
            for key, value in self.to_dict().items()
        )
        tmp.write_text("{\n" + ",\n".join(fields) + "\n}\n")
        tmp.replace(path)
        return path

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-sample table as CSV; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.samples.to_csv(path, index=False)
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditReport:
        if data.get("format") != REPORT_FORMAT:
            raise ReportError(
                f"not a cam_audit report (format {data.get('format')!r}, expected {REPORT_FORMAT!r}); "
                "write reports with AuditReport.to_json or `cam-audit audit`"
            )
        try:
            return cls(
                summary={k: from_json_number(v) for k, v in data["summary"].items()},
                samples=frame_from_json(data["samples"]),
                per_class=frame_from_json(data["per_class"]),
                verdict=Verdict.from_dict(data["verdict"]),
                policy=ShortcutPolicy.from_dict(data["policy"]),
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError) as err:
            raise ReportError(f"report is missing or has a malformed field: {err}") from err

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> AuditReport:
        """Read a report written by :meth:`to_json`.

        Raises:
            ReportError: the file is missing, is not JSON, or is not a cam_audit report.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise ReportError(f"report file {path} does not exist") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReportError(f"report file {path} is not readable JSON: {err}") from err
        if not isinstance(data, dict):
            raise ReportError(f"report file {path} holds a JSON {type(data).__name__}, not a report object")
        try:
            return cls.from_dict(data)
        except ReportError as err:
            raise ReportError(f"{path}: {err}") from err

    def compare(
        self,
        baseline: AuditReport,
        max_regression: float = 0.05,
        scores: Sequence[str] = ("focus_lift",),
        level: float = 0.01,
        **options: Any,
    ) -> Comparison:
        """This report (the candidate) against ``baseline`` (the champion) audited on the same probe.

        See :func:`cam_audit.report.compare.compare` for the rules and ``options`` (``policy``,
        ``confidence``, ``resamples``, ``seed``).
        """
        from cam_audit.report.compare import compare

        return compare(self, baseline, max_regression, scores, level, **options)

    def with_verdict(self, policy: ShortcutPolicy, best_focus_lift: float | None = None) -> AuditReport:
        """The same report judged by another policy."""
        verdict = policy.evaluate(self.summary, self.per_class, best_focus_lift)
        return AuditReport(self.summary, self.samples, self.per_class, verdict, policy, dict(self.meta))


__all__ = ["REPORT_FORMAT", "SUMMARY_KEYS", "AuditReport"]
