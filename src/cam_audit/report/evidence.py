"""Whether an audit's numbers are evidence at all: samples scored, degenerate maps, a model above chance.

A verdict needs evidence. An audit in which no sample could be scored (a dead target layer gives all-zero
maps, so every score is NaN), in which most samples are degenerate, or of a model that does no better
than always answering the most common class, says nothing about what the model relies on. Each of these
becomes an ``inconclusive`` finding, which fails the verdict: a release pipeline must not read "no
evidence" as "no shortcut". Torch-free, like the rest of :mod:`cam_audit.report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import pandas as pd

from cam_audit.keys import SUMMARY_KEYS, score
from cam_audit.report.jsonio import number

#: The rule name of every finding that says the evidence is missing.
INCONCLUSIVE = "inconclusive"


class Gap(NamedTuple):
    """Missing evidence: the fields of an ``inconclusive`` finding (rule name left out)."""

    metric: str
    value: float
    threshold: float
    scope: str
    message: str


def upper_tails(n: int, p: float) -> list[float]:
    """``P(X >= k)`` for ``k = 0 .. n + 1`` and ``X ~ Binomial(n, p)``.

    Each term ``C(n, i) p^i (1 - p)^(n - i)`` is taken in log space (``lgamma``), and the tails are
    summed from ``i = n`` down, so neither a large ``n`` nor a tiny tail overflows or underflows early.

    >>> [round(t, 4) for t in upper_tails(3, 0.5)]
    [1.0, 0.875, 0.5, 0.125, 0.0]
    """
    if not 0.0 <= p <= 1.0 or n < 0:
        raise ValueError(f"upper_tails needs n >= 0 and 0 <= p <= 1, got n={n}, p={p}")
    if p in (0.0, 1.0):  # X is n * p for certain
        return [1.0 if k <= n * p else 0.0 for k in range(n + 2)]
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    tails, log_tail = [0.0] * (n + 2), -math.inf
    for i in range(n, -1, -1):
        term = log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        high, low = max(log_tail, term), min(log_tail, term)
        log_tail = high + math.log1p(math.exp(low - high))
        tails[i] = min(1.0, math.exp(log_tail))
    tails[0] = 1.0  # the sum of all terms, exactly
    return tails


def binomial_tail(k: int, n: int, p: float) -> float:
    """One-sided binomial p-value: ``P(X >= k)`` for ``X ~ Binomial(n, p)``.

    The same number as ``scipy.stats.binomtest(k, n, p, alternative="greater").pvalue``.

    >>> round(binomial_tail(9, 12, 1 / 3), 5)
    0.00386
    """
    return upper_tails(n, p)[min(max(k, 0), n + 1)]


def unscored(summary: Mapping[str, Any]) -> Gap | None:
    """A gap when no probe sample has a score: none audited, or every map or region degenerate."""
    n, degenerate = number(summary.get("n_samples")), number(summary.get("n_degenerate"))
    if not n > 0:
        shown = "missing" if math.isnan(n) else f"{n:g}"
        return Gap("n_samples", n, 1.0, "probe",
                   f"no probe sample was scored (n_samples is {shown}), so the report holds no evidence "
                   "for a verdict; audit a probe with samples")
    scored_values = [number(summary.get(key)) for key in SUMMARY_KEYS if score(key).evidence == "attribution"]
    if degenerate >= n or not any(math.isfinite(v) for v in scored_values):
        return Gap("n_degenerate", degenerate, n, "probe",
                   f"none of the {n:g} probe samples could be scored: every map is all-zero or every "
                   "object region empty, so every score is NaN; pick a target_layer on the path to the "
                   "logits (one whose maps are not all zero) and check the probe's regions")
    return None


def degenerate_share(n: float, scored: float, limit: float, scope: str) -> Gap | None:
    """A gap when more than ``limit`` of ``n`` samples have no score (``scored`` of them do)."""
    if not n > 0:
        return None
    where = "" if scope == "probe" else f" of class '{scope}'"
    if math.isnan(scored):
        return Gap("n_degenerate", math.nan, limit, scope,
                   f"the number of degenerate samples{where} is missing, so the share of samples the "
                   "scores rest on is unknown")
    share = (n - scored) / n
    if share <= limit:
        return None
    return Gap("n_degenerate", share, limit, scope,
               f"{n - scored:g} of {n:g} samples{where} ({share:.0%}) are degenerate (all-zero map or empty "
               f"region), more than max_degenerate_share {limit:.0%}; the scores rest on {scored:g} samples")


def at_chance(summary: Mapping[str, Any], per_class: pd.DataFrame | None, alpha: float) -> Gap | None:
    """A gap when the probe accuracy is not clearly above the majority-class rate.

    The number correct, ``round(accuracy * n_samples)``, is tested against ``Binomial(n_samples, rate)``
    with ``rate`` = the largest class's share of the probe (what always answering that class scores):
    one-sided, and the model counts as above chance when ``P(X >= correct) <= alpha``. Needs the class
    sizes (``per_class["n_samples"]``); without them nothing is tested.
    """
    n = number(summary.get("n_samples"))
    if not n > 0 or per_class is None or "n_samples" not in per_class or not len(per_class):
        return None
    sizes = pd.to_numeric(per_class["n_samples"], errors="coerce")
    if not sizes.notna().any():
        return None
    majority, largest = str(sizes.idxmax()), float(sizes.max())
    rate = min(max(largest / n, 0.0), 1.0)
    accuracy = number(summary.get("accuracy"))
    if math.isnan(accuracy):
        return Gap("accuracy", accuracy, alpha, "probe",
                   "accuracy is missing, so the model cannot be shown to be above chance; the maps and "
                   "counterfactual tests of a model at chance say nothing about what it relies on")
    total = round(n)
    tails = upper_tails(total, rate)
    correct = min(max(round(accuracy * total), 0), total)
    p_value = tails[correct]
    if p_value <= alpha:
        return None
    needed = next((k for k in range(total + 1) if tails[k] <= alpha), None)
    needed_text = (
        f"at least {needed} correct needed" if needed is not None
        else "no accuracy can show it: add samples of other classes, or set min_accuracy_p=None"
    )
    return Gap("accuracy", accuracy, (needed if needed is not None else math.inf) / total, "probe",
               f"accuracy {accuracy:.2f} ({correct} of {total} correct) is not clearly above the majority-"
               f"class rate {rate:.2f} (always answering '{majority}'): one-sided binomial "
               f"p = {p_value:.2g} > min_accuracy_p {alpha:g} ({needed_text}); the maps and counterfactual "
               "tests of a model at chance say nothing about what it relies on, so no cue is named")


def names_a_cue(metric: str) -> bool:
    """Whether a finding on ``metric`` points at a cue (spurious mass, a counterfactual test, any score not
    in the registry), rather than at the object (focus) or at missing evidence."""
    try:
        entry = score(metric)
    except KeyError:
        return True
    if entry.evidence in ("count", "behaviour"):  # how many samples, how accurate: no cue
        return False
    return not (entry.evidence == "attribution" and entry.higher_is_better is True)


__all__ = ["INCONCLUSIVE", "Gap", "at_chance", "binomial_tail", "degenerate_share", "names_a_cue",
           "unscored", "upper_tails"]
