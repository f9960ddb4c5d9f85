"""``AuditReport``: what one audit found, and its exact JSON round trip."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cam_audit.errors import ReportError
from cam_audit.keys import SUMMARY_KEYS
from cam_audit.report.atomic import write_atomic
from cam_audit.report.cues import CUE_COLUMNS, empty_cues, normalise
from cam_audit.report.jsonio import clean, frame_from_json, frame_to_json, from_json_number, to_json_number
from cam_audit.report.policy import ShortcutPolicy, Verdict

if TYPE_CHECKING:
    from cam_audit.report.compare import Comparison

REPORT_FORMAT = "cam_audit.report/2"
#: Earlier formats that still load (``cam_audit.report/1`` had no cue table).
READABLE_FORMATS = ("cam_audit.report/1", REPORT_FORMAT)


@dataclass
class AuditReport:
    """What one audit found.

    Attributes:
        summary: probe-wide numbers, keys as in :data:`cam_audit.keys.SUMMARY_KEYS` (NaN where there is
            no evidence).
        samples: one row per probe sample: ``sample_id``, ``label``, ``target``, ``prediction`` and the
            per-sample column of each score in :data:`cam_audit.keys.SCORES`.
        per_class: one row per class (index: class name) with the averaged summary keys, ``n_samples``
            and ``n_scored``.
        verdict: the policy's :class:`Verdict`.
        policy: the :class:`ShortcutPolicy` that produced it.
        meta: epoch, step, target layer, method, fingerprints, versions.
        cues: a discovery audit's candidate cues, one row each (:data:`cam_audit.report.cues.CUE_COLUMNS`);
            no rows without discovery.
    """

    summary: dict[str, float]
    samples: pd.DataFrame
    per_class: pd.DataFrame
    verdict: Verdict
    policy: ShortcutPolicy
    meta: dict[str, Any] = field(default_factory=dict)
    cues: pd.DataFrame = field(default_factory=empty_cues)

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
            "cues": frame_to_json(self.cues),
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON (NaN written as ``null``); returns the path.

        The file is replaced whole (:func:`~cam_audit.report.atomic.write_atomic`): a reader sees the
        old report or the new one, and two processes may write the same path.
        """
        # one top-level field per line, each written compactly: json's C encoder only runs without
        # ``indent``, and a large probe's per-sample table is most of what is written
        fields = (
            f"{json.dumps(key)}: {json.dumps(value, allow_nan=False, separators=(',', ':'))}"
            for key, value in self.to_dict().items()
        )
        return write_atomic(path, "{\n" + ",\n".join(fields) + "\n}\n")

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-sample table as CSV, replaced whole like :meth:`to_json`; returns the path."""
        return write_atomic(path, self.samples.to_csv(index=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditReport:
        """The report of :meth:`to_dict`.

        Raises:
            ReportError: ``data`` is not a cam_audit report, or one of its fields is missing or malformed
                (a summary value that is not a number or null, a table of the wrong shape, ...); the
                message names the field.
        """
        if data.get("format") not in READABLE_FORMATS:
            raise ReportError(
                f"not a cam_audit report (format {data.get('format')!r}, expected {REPORT_FORMAT!r}); "
                "write reports with AuditReport.to_json or `cam-audit audit`"
            )
        per_class = _field(data, "per_class", lambda value: frame_from_json(value, "per_class"))
        _check_numeric(per_class)
        return cls(
            summary=_field(data, "summary", _summary_from_json),
            samples=_field(data, "samples", lambda value: frame_from_json(value, "samples")),
            per_class=per_class,
            verdict=_field(data, "verdict", Verdict.from_dict),
            policy=_field(data, "policy", ShortcutPolicy.from_dict),
            meta=_field({"meta": {}, **data}, "meta", _meta_from_json),
            cues=_field({"cues": None, **data}, "cues", _cues_from_json),
        )

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
        cues = self.cues.assign(confirmed=policy.confirmed(self.cues))
        verdict = policy.evaluate(self.summary, self.per_class, best_focus_lift, cues=cues)
        return AuditReport(self.summary, self.samples, self.per_class, verdict, policy, dict(self.meta), cues)


def _cues_from_json(value: Any) -> pd.DataFrame:
    if value is None:  # a report of format 1
        return empty_cues()
    frame = frame_from_json(value, "cues")
    missing = [c for c in CUE_COLUMNS if c not in frame.columns]
    if missing and len(frame):
        raise ReportError(f"the cue table lacks the columns {missing}")
    return normalise(frame)


def _field(data: Mapping[str, Any], name: str, parse: Callable[[Any], Any]) -> Any:
    """``parse(data[name])``, every failure turned into a :class:`ReportError` naming the field."""
    if name not in data:
        raise ReportError(f"report has no '{name}' field; write reports with AuditReport.to_json")
    try:
        return parse(data[name])
    except ReportError as err:
        text = str(err)
        raise ReportError(text if text.startswith(name) else f"field '{name}': {text}") from err
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ReportError(f"field '{name}' is malformed: {type(err).__name__}: {err}") from err


def _summary_from_json(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ReportError(f"summary must be an object of numbers, got a {type(value).__name__}")
    summary = {}
    for key, number in value.items():
        number = from_json_number(number)
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ReportError(
                f"summary['{key}'] is {number!r:.40} ({type(number).__name__}), not a number or null; "
                "the policy cannot read it"
            )
        summary[key] = number
    return summary


def _meta_from_json(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ReportError(f"meta must be an object, got a {type(value).__name__}")
    return dict(value)


def _check_numeric(per_class: pd.DataFrame) -> None:
    """The per-class columns the policy reads hold numbers (or nulls), not text or lists."""
    for column in per_class.columns:
        if column not in (*SUMMARY_KEYS, "n_scored") or per_class[column].dtype.kind in "fiub":
            continue
        for name, value in per_class[column].items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ReportError(
                    f"per_class['{column}'] of class '{name}' is {value!r:.40}, not a number or null; "
                    "the policy cannot read it"
                )


__all__ = ["REPORT_FORMAT", "SUMMARY_KEYS", "AuditReport"]
