"""Paired statistics for comparing two audits of the same probe, sample by sample (numpy only, no torch).

Each function reads the paired differences ``deltas = candidate - baseline`` of one score (one value per
probe sample scored by both models) and is reproducible: every random draw comes from
``numpy.random.default_rng(seed)``.

- :func:`bootstrap_ci`: percentile bootstrap interval of the mean difference (Efron & Tibshirani,
  *An Introduction to the Bootstrap*, 1993, ch. 13).
- :func:`sign_flip_p`: two-sided paired permutation (sign-flip) test of the mean difference (Fisher,
  *The Design of Experiments*, 1935, ch. III, on Darwin's paired plants; Good, *Permutation,
  Parametric, and Bootstrap Tests of Hypotheses*, 3rd ed., 2005). Under the null hypothesis that the
  two models are exchangeable on each sample, every difference is as likely to have either sign, so the
  observed sum is compared with the sums of all ``2**n`` sign patterns (exact, for
  ``n <= EXACT_MAX_PAIRS``) or of ``resamples`` random ones (Monte Carlo, with
  ``p = (1 + hits) / (1 + resamples)``, which never reports 0: Phipson & Smyth, "Permutation p-values
  should never be zero", *Stat. Appl. Genet. Mol. Biol.* 9(1), 2010).
- :func:`relative`: a change as a share of the champion's value (how ``max_regression`` reads it).
- :func:`holm`: Holm's step-down procedure, which keeps the family-wise error rate of several tests at
  ``level`` (Holm, "A simple sequentially rejective multiple test procedure", *Scand. J. Statist.*
  6(2), 1979).

>>> sign_flip_p([0.5, 0.25, 0.75, 1.0])   # all four positive: 2 of the 16 sign patterns are as extreme
0.125
>>> bootstrap_ci([0.2, 0.2, 0.2])
(0.2, 0.2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Up to this many pairs the sign-flip test enumerates all 2**n sign patterns (65,536 for 16).
EXACT_MAX_PAIRS = 16
#: Random draws of the bootstrap and of the Monte Carlo sign-flip test.
DEFAULT_RESAMPLES = 9999
#: Numbers of a draw matrix held in memory at once (rows of ``n`` pairs).
_CHUNK_VALUES = 2_000_000


def bootstrap_ci(
    deltas: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``deltas``.

    Args:
        deltas: paired differences, finite, shape [n].
        confidence: coverage of the interval, in (0, 1).
        resamples: bootstrap resamples of the n pairs (drawn with replacement).
        seed: seed of the random generator.

    Returns:
        ``(low, high)``: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
        resampled means; ``(nan, nan)`` without pairs.
    """
    values = np.asarray(deltas, dtype=np.float64)
    if values.size == 0:
        return (math.nan, math.nan)
    if np.all(values == values[0]):  # every resample has the same mean
        return (float(values[0]), float(values[0]))
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [values[rng.integers(0, values.size, size=(rows, values.size))].mean(axis=1)
         for rows in _chunks(resamples, values.size)]
    )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


def sign_flip_p(
    deltas: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> float:
    """Two-sided p-value of the paired sign-flip test of ``mean(deltas) == 0``.

    The statistic is ``|sum(deltas)|``; a sign pattern counts as extreme when its ``|sum(s * deltas)|``
    reaches the observed one (up to rounding). Exact for ``n <= EXACT_MAX_PAIRS``, else Monte Carlo.

    Args:
        deltas: paired differences, finite, shape [n].
        resamples: random sign patterns of the Monte Carlo test (unused when exact).
        seed: seed of the random generator.

    Returns:
        The p-value in (0, 1]; 1.0 when every difference is 0; NaN without pairs.
    """
    values = np.asarray(deltas, dtype=np.float64)
    if values.size == 0:
        return math.nan
    observed = abs(values.sum())
    # sums of the same numbers in another order differ by rounding; such a tie is as extreme
    slack = 1e-9 * np.abs(values).sum()
    if values.size <= EXACT_MAX_PAIRS:
        bits = (np.arange(2**values.size)[:, None] >> np.arange(values.size)) & 1
        sums = (1 - 2 * bits) @ values
        return float(np.mean(np.abs(sums) >= observed - slack))
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _chunks(resamples, values.size):
        signs = 1 - 2 * rng.integers(0, 2, size=(rows, values.size), dtype=np.int8)
        hits += int(np.count_nonzero(np.abs(signs @ values) >= observed - slack))
    return (1 + hits) / (1 + resamples)


def holm(p_values: Sequence[float], level: float) -> list[bool]:
    """Which of several tests Holm's step-down procedure rejects at family-wise error rate ``level``.

    The smallest p-value is compared with ``level / m``, the next with ``level / (m - 1)``, and so on,
    stopping at the first that is not below its bound. NaN p-values are never rejected.

    >>> holm([0.001, 0.02, 0.004], level=0.01)
    [True, False, True]
    """
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    rejected = [False] * len(p_values)
    for rank, (p, i) in enumerate(order):
        if p >= level / (len(order) - rank):
            break
        rejected[i] = True
    return rejected


def relative(value: float, reference: float) -> float:
    """``value`` as a fraction of ``|reference|`` (±inf for a change from 0, NaN without a reference).

    >>> relative(-0.5, 5.0), relative(0.0, 0.0), relative(0.1, 0.0)
    (-0.1, 0.0, inf)
    """
    if math.isnan(value) or math.isnan(reference):
        return math.nan
    if reference == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return value / abs(reference)


def _chunks(total: int, width: int) -> list[int]:
    """Row counts that add up to ``total``, each block holding at most ``_CHUNK_VALUES`` numbers."""
    step = max(1, _CHUNK_VALUES // max(width, 1))
    return [min(step, total - start) for start in range(0, total, step)]


__all__ = ["DEFAULT_RESAMPLES", "EXACT_MAX_PAIRS", "bootstrap_ci", "holm", "relative", "sign_flip_p"]
