"""The shortcut policy and its verdict: thresholds on an audit's summary turned into readable findings.

Torch-free, like the rest of :mod:`cam_audit.report`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType
from typing import Any, NamedTuple

import pandas as pd

from cam_audit.errors import ReportError
from cam_audit.keys import SHARE, score
from cam_audit.report.cues import check_cue_rules, confirm, cue_findings
from cam_audit.report.evidence import INCONCLUSIVE, at_chance, degenerate_share, names_a_cue, unscored
from cam_audit.report.jsonio import from_json_number, number


@dataclass(frozen=True)
class Finding:
    """One failed rule of a policy.

    Attributes:
        rule: the policy field that failed, e.g. ``"max_spurious_lift"``.
        metric: the summary key it reads, e.g. ``"spurious_lift"``.
        value: the measured value.
        threshold: the policy's limit.
        scope: ``"probe"`` for the probe-wide value, or the class name for a per-class finding.
        message: a readable sentence with the numbers.
    """

    rule: str
    metric: str
    value: float
    threshold: float
    scope: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """The outcome of a policy: ``passed`` and one readable flag per failed rule."""

    passed: bool
    findings: tuple[Finding, ...] = ()

    @property
    def flags(self) -> list[str]:
        """Readable sentences, one per failed rule, with the measured numbers."""
        return [f.message for f in self.findings]

    @property
    def inconclusive(self) -> bool:
        """Whether the verdict failed for want of evidence (an ``"inconclusive"`` finding), not on a cue."""
        return any(f.rule == INCONCLUSIVE for f in self.findings)

    @property
    def outcome(self) -> str:
        """``"pass"``, ``"inconclusive"`` (failed for want of evidence) or ``"shortcut"`` (failed on it)."""
        if self.passed:
            return "pass"
        return "inconclusive" if self.inconclusive else "shortcut"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "inconclusive": self.inconclusive,
            "flags": self.flags,
            "findings": [asdict(f) for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """The verdict of :meth:`to_dict`.

        Raises:
            ReportError: ``data`` is not a verdict: ``passed`` is not a bool, ``findings`` not a list of
                findings with exactly the fields of :class:`Finding`.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("passed"), bool):
            raise ReportError("a verdict is an object whose 'passed' is true or false")
        raw = data.get("findings")
        if not isinstance(raw, list) or not all(isinstance(f, Mapping) for f in raw):
            raise ReportError("a verdict's 'findings' is a list of objects")
        names = [f.name for f in fields(Finding)]
        for position, finding in enumerate(raw):
            if sorted(finding) != sorted(names):
                raise ReportError(f"findings[{position}] has the fields {sorted(finding)}, expected {names}")
        findings = tuple(Finding(**{k: from_json_number(v) for k, v in f.items()}) for f in raw)
        return cls(passed=data["passed"], findings=findings)


@dataclass(frozen=True)
class ShortcutPolicy:
    """Thresholds that turn an audit summary into a :class:`Verdict`. ``None`` switches a rule off.

    A rule reads a summary key and fails when the value is on the wrong side of its threshold. NaN
    values (no evidence, e.g. no spurious regions in the probe) never fail a rule. With ``per_class``,
    every rule is applied to each class that has at least ``min_class_samples`` scored samples as
    well, so a shortcut confined to one class is caught even when the probe-wide mean looks fine.

    Args:
        min_focus_lift: fail when ``focus_lift`` (object mass / object area) is below this.
        max_spurious_lift: fail when ``spurious_lift`` (spurious mass / spurious area) is above this.
        max_flip_rate: fail when the share of predictions that change once the spurious region is
            filled (``cf_flip_rate``) is above this.
        max_paste_rate: fail when pasting the cue into images of other classes moves the prediction
            to the cue's class (``cf_paste_rate``) more often than this.
        max_focus_drop: fail when ``focus_lift`` fell by more than this fraction of its best value in
            the run (needs the run's history; ``audit()`` alone has none).
        per_class: also apply the rules per class.
        min_class_samples: fewest scored samples for a class to be judged on its own.
        max_degenerate_share: the verdict is inconclusive (fails) when more than this share of the
            samples is degenerate (all-zero map or empty region: ``n_degenerate / n_samples``), probe-wide
            and, with ``per_class``, in any class of at least ``min_class_samples`` samples.
        min_accuracy_p: the verdict is inconclusive (fails) unless the probe accuracy is clearly above
            chance: the number correct (``accuracy * n_samples``) is tested one-sided against a binomial
            at the majority-class rate (the largest class's share of the probe, what always answering that
            class scores), and the model counts as above chance when the p-value is at most this. At 0.01,
            a balanced 3-class probe of 12 samples needs 9 correct (75%), one of 96 needs 44 (46%). Needs the
            class sizes (``per_class["n_samples"]``, which every audit writes); a summary judged alone is not
            tested. When this rule fires no cue is named: the spurious and counterfactual findings are
            dropped, since the maps and interventions of a model at chance say nothing about what it
            relies on.
        max_bg_gap: fail when ``bg_gap`` (accuracy with the objects on backgrounds of their own class minus
            on backgrounds of another class, a discovery audit's background test) is above this.
        min_cue_excess: a candidate cue of a discovery audit (``report.cues``) is confirmed, and fails the
            verdict, when filling it flips, or pasting it moves, at least this share more samples than
            the same intervention on its matched control, significantly (below); None confirms none.
        cue_alpha: the one-sided significance level of that excess (exact McNemar test), divided by the
            number of tests in the cue table (Bonferroni).
        min_cue_samples: fewest samples a cue needs to be confirmed.

    No verdict without evidence: whatever the thresholds, the verdict fails with an ``"inconclusive"``
    finding when no sample could be scored (``n_samples`` 0 or missing, or every score NaN), and under
    the two rules above (``None`` switches each off).

    The defaults come from ``scripts/shortcut_study.py``, which trains scene classifiers with and without
    a watermark shortcut: each threshold lies beyond the worst value of the study's clean controls. The
    README's table gives those values and what the defaults detect. Attribution alone is a weak witness
    (a model can put heatmap mass on a tag it never relies on), so the counterfactual rules matter.
    The valid range of each threshold is that of the score it bounds (:data:`cam_audit.keys.SCORES`).

    >>> policy = ShortcutPolicy(max_spurious_lift=2.0)
    >>> summary = {"focus_lift": 2.0, "spurious_lift": 3.1, "spurious_mass": 0.42, "accuracy": 0.9,
    ...            "n_samples": 40, "n_degenerate": 0}
    >>> policy.evaluate(summary).flags
    ['spurious_lift 3.10 > 2.00: 42% of heatmap mass sits on 13.5% of the image marked spurious']
    >>> sizes = pd.DataFrame({"n_samples": [20, 20]}, index=["cat", "dog"])
    >>> verdict = policy.evaluate({**summary, "accuracy": 0.6}, sizes)
    >>> [f.rule for f in verdict.findings], verdict.flags[0][:62]
    (['inconclusive'], 'accuracy 0.60 (24 of 40 correct) is not clearly above the majo')
    """

    min_focus_lift: float | None = 1.5
    max_spurious_lift: float | None = 5.0
    max_flip_rate: float | None = 0.5
    max_paste_rate: float | None = 0.2
    max_focus_drop: float | None = 0.3
    per_class: bool = True
    min_class_samples: int = 4
    max_degenerate_share: float | None = 0.5
    min_accuracy_p: float | None = 0.01
    max_bg_gap: float | None = 0.2
    min_cue_excess: float | None = 0.3
    cue_alpha: float = 0.01
    min_cue_samples: int = 5

    def __post_init__(self) -> None:
        for name, (bounded, (low, high)) in _RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ReportError(f"ShortcutPolicy.{name} must be a number or None, got {value!r}")
            if not low <= value <= high:
                values = f">= {low:g}" if math.isinf(high) else f"in [{low:g}, {high:g}]"
                raise ReportError(f"ShortcutPolicy.{name} bounds {bounded}, which is {values}; got {value!r}")
        if self.min_accuracy_p is not None and not 0 < self.min_accuracy_p < 1:
            raise ReportError(
                f"ShortcutPolicy.min_accuracy_p is a significance level in (0, 1), e.g. 0.01, or None to "
                f"switch the chance test off; got {self.min_accuracy_p!r}"
            )
        check_cue_rules(self.cue_alpha, self.min_cue_samples)
        if not isinstance(self.per_class, bool):
            raise ReportError(f"ShortcutPolicy.per_class must be true or false, got {self.per_class!r}")
        if isinstance(self.min_class_samples, bool) or not isinstance(self.min_class_samples, int):
            raise ReportError(
                f"ShortcutPolicy.min_class_samples must be an integer, got {self.min_class_samples!r}"
            )
        if self.min_class_samples < 1:
            raise ReportError(f"ShortcutPolicy.min_class_samples must be >= 1, got {self.min_class_samples}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShortcutPolicy:
        if not isinstance(data, Mapping):
            raise ReportError(f"a ShortcutPolicy is an object of its fields, got a {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ReportError(f"unknown ShortcutPolicy field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**dict(data))

    def evaluate(
        self,
        summary: Mapping[str, float],
        per_class: pd.DataFrame | None = None,
        best_focus_lift: float | None = None,
        *,
        cues: pd.DataFrame | None = None,
    ) -> Verdict:
        """Judge an audit summary.

        Args:
            summary: probe-wide numbers (keys as in :data:`cam_audit.keys.SUMMARY_KEYS`).
            per_class: one row per class name with the same keys and ``n_samples``; optional.
            best_focus_lift: the best ``focus_lift`` seen earlier in this run, for ``max_focus_drop``.
            cues: a discovery audit's cue table (``report.cues``); each cue this policy confirms
                (:meth:`confirmed`) is a finding.

        Returns:
            A :class:`Verdict`; ``passed`` is False when any rule failed or the evidence is missing (an
            ``"inconclusive"`` finding, listed first).
        """
        gaps = self._missing_evidence(summary, per_class)
        findings = self._failed_rules(summary, per_class, best_focus_lift)
        if cues is not None and not cues.empty:
            confirmed = cues[self.confirmed(cues)]
            findings += [Finding(*f) for f in cue_findings(confirmed, float(self.min_cue_excess or 0))]
        if any(gap.metric == "accuracy" for gap in gaps):  # a model at chance: no cue may be named
            findings = [f for f in findings if not names_a_cue(f.metric)]
        findings = [Finding(INCONCLUSIVE, *gap) for gap in gaps] + findings
        return Verdict(passed=not findings, findings=tuple(findings))

    def confirmed(self, cues: pd.DataFrame) -> pd.Series:
        """Which rows of a cue table this policy confirms (see ``min_cue_excess``)."""
        return confirm(cues, self.min_cue_excess, self.cue_alpha, self.min_cue_samples)

    def _missing_evidence(self, summary: Mapping[str, Any], per_class: pd.DataFrame | None) -> list:
        """The :class:`~cam_audit.report.evidence.Gap` of each missing piece of evidence."""
        gap = unscored(summary)
        if gap is not None:
            return [gap]
        gaps = []
        if self.max_degenerate_share is not None:
            n = number(summary.get("n_samples"))
            scored = n - number(summary.get("n_degenerate"))
            gaps.append(degenerate_share(n, scored, self.max_degenerate_share, "probe"))
            if self.per_class and per_class is not None and "n_scored" in per_class:
                for name, row in per_class.iterrows():
                    n, scored = number(row.get("n_samples")), number(row.get("n_scored"))
                    if n >= self.min_class_samples:
                        gaps.append(degenerate_share(n, scored, self.max_degenerate_share, str(name)))
        if self.min_accuracy_p is not None:
            gaps.append(at_chance(summary, per_class, self.min_accuracy_p))
        return [gap for gap in gaps if gap is not None]

    def _failed_rules(
        self, summary: Mapping[str, Any], per_class: pd.DataFrame | None, best_focus_lift: float | None
    ) -> list[Finding]:
        findings = list(self._check(summary, "probe"))
        if self.per_class and per_class is not None:
            for name, row in per_class.iterrows():
                if number(row.get("n_scored", row.get("n_samples"))) >= self.min_class_samples:
                    findings.extend(self._check({str(k): v for k, v in row.items()}, str(name)))
        if self.max_focus_drop is not None and best_focus_lift is not None:
            current = number(summary.get("focus_lift"))
            if best_focus_lift > 0 and current < best_focus_lift * (1 - self.max_focus_drop):
                drop = 1 - current / best_focus_lift
                findings.append(
                    Finding(
                        "max_focus_drop",
                        "focus_lift",
                        drop,
                        self.max_focus_drop,
                        "probe",
                        f"focus_lift fell {drop:.0%} from its best {best_focus_lift:.2f} to {current:.2f} "
                        f"(allowed: {self.max_focus_drop:.0%})",
                    )
                )
        return findings

    def _check(self, values: Mapping[str, Any], scope: str) -> list[Finding]:
        where = "" if scope == "probe" else f" for class '{scope}'"
        findings = []
        for rule in _THRESHOLD_RULES:
            threshold = getattr(self, rule.name)
            value = number(values.get(rule.key))
            if threshold is not None and rule.fails(value, threshold):  # NaN fails no comparison
                message = rule.describe(value, threshold, where, values)
                findings.append(Finding(rule.name, rule.key, value, threshold, scope, message))
        return findings


class _ThresholdRule(NamedTuple):
    """A policy field (``name``) compared with one summary ``key``, and the sentence a failure reads as."""

    name: str
    key: str
    fails: Callable[[float, float], bool]
    describe: Callable[[float, float, str, Mapping[str, Any]], str]

    @property
    def help(self) -> str:
        """One line: which side of the threshold passes, the summary key, and its registry description."""
        side = "min" if self.fails is operator.lt else "max"
        return f"{side} {self.key} ({score(self.key).description})"


def _focus_message(lift: float, threshold: float, where: str, values: Mapping[str, Any]) -> str:
    focus = number(values.get("focus"))
    return (
        f"focus_lift {lift:.2f} < {threshold:.2f}{where}: only {focus:.0%} of heatmap mass falls on the "
        "object"
    )


def _spurious_message(lift: float, threshold: float, where: str, values: Mapping[str, Any]) -> str:
    mass = number(values.get("spurious_mass"))
    area = mass / lift if lift > 0 else math.nan
    return (
        f"spurious_lift {lift:.2f} > {threshold:.2f}{where}: {mass:.0%} of heatmap mass sits on {area:.1%} "
        "of the image marked spurious"
    )


def _flip_message(flip: float, threshold: float, where: str, values: Mapping[str, Any]) -> str:
    drop = number(values.get("cf_confidence_drop"))
    return (
        f"cf_flip_rate {flip:.2f} > {threshold:.2f}{where}: filling the spurious region changes {flip:.0%} "
        f"of predictions (target probability falls by {drop:.2f} on average)"
    )


def _bg_message(gap: float, threshold: float, where: str, values: Mapping[str, Any]) -> str:
    same, other = number(values.get("bg_acc_same")), number(values.get("bg_acc_other"))
    return (
        f"bg_gap {gap:.2f} > {threshold:.2f}{where}: the objects are recognised {same:.0%} of the time on "
        f"backgrounds of their own class and {other:.0%} on backgrounds of another class"
    )


def _paste_message(paste: float, threshold: float, where: str, values: Mapping[str, Any]) -> str:
    return (
        f"cf_paste_rate {paste:.2f} > {threshold:.2f}{where}: pasting the cue into images of other classes "
        f"turns {paste:.0%} of them into the cue's class"
    )


_THRESHOLD_RULES = (
    _ThresholdRule("min_focus_lift", "focus_lift", operator.lt, _focus_message),
    _ThresholdRule("max_spurious_lift", "spurious_lift", operator.gt, _spurious_message),
    _ThresholdRule("max_flip_rate", "cf_flip_rate", operator.gt, _flip_message),
    _ThresholdRule("max_paste_rate", "cf_paste_rate", operator.gt, _paste_message),
    _ThresholdRule("max_bg_gap", "bg_gap", operator.gt, _bg_message),
)
_FOCUS_DROP = "relative drop of focus_lift from its best value in the run"

#: The summary key each threshold field of :class:`ShortcutPolicy` is compared with, in field order.
THRESHOLD_KEYS: Mapping[str, str] = MappingProxyType({rule.name: rule.key for rule in _THRESHOLD_RULES})

#: What each threshold field bounds, and the values it may take (those of the score, from the registry).
_RANGES: dict[str, tuple[str, tuple[float, float]]] = {
    **{rule.name: (rule.key, score(rule.key).bounds) for rule in _THRESHOLD_RULES},
    "max_focus_drop": (f"the {_FOCUS_DROP}", SHARE),
    "max_degenerate_share": ("the share of degenerate samples", SHARE),
    "min_accuracy_p": ("the p-value of the chance test", SHARE),
    "min_cue_excess": ("the excess of a cue's rate over its control's", SHARE),
}

#: One help line per threshold field of :class:`ShortcutPolicy` (the gate's flags), in field order.
_HELP = {
    **{rule.name: rule.help for rule in _THRESHOLD_RULES},
    "max_focus_drop": f"max {_FOCUS_DROP}",
    "max_degenerate_share": "max share of samples without a score before the verdict is inconclusive",
    "min_accuracy_p": "p-value the probe accuracy must beat against the majority class (chance test)",
    "min_cue_excess": "min excess of a discovered cue's flip or paste rate over its matched control's "
    "for the cue to be confirmed",
}
RULE_HELP: Mapping[str, str] = MappingProxyType(
    {f.name: _HELP[f.name] for f in fields(ShortcutPolicy) if f.name in _HELP}
)
#: One help line per setting of :class:`ShortcutPolicy` that is not a threshold but a count or a level.
SETTING_HELP: Mapping[str, str] = MappingProxyType({
    "min_class_samples": "fewest scored samples for a class to be judged on its own",
    "cue_alpha": "one-sided significance level of a discovered cue's excess (divided by the number of tests)",
    "min_cue_samples": "fewest samples a discovered cue needs to be confirmed (at least the audit's own: "
    "smaller cues were not tested)",
})


__all__ = ["RULE_HELP", "SETTING_HELP", "THRESHOLD_KEYS", "Finding", "ShortcutPolicy", "Verdict"]
