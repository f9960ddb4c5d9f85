"""A candidate's audit against the champion's: pairing, the paired statistics, and the promotion decision."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cam_audit import keys
from cam_audit.errors import CamAuditError, ReportError
from cam_audit.report import AuditReport, Comparison, ShortcutPolicy, paired_deltas
from cam_audit.report.compare import TABLE_COLUMNS, check_options, compare
from cam_audit.report.paired import EXACT_MAX_PAIRS, bootstrap_ci, holm, sign_flip_p
from cam_audit.report.pairing import comparable_scores
from helpers.compare import audited, changed, with_class_value


@pytest.fixture(scope="module")
def champion(scene_probe) -> AuditReport:
    """The real audit of an untrained scene model on 24 scenes (8 per class); tests change copies."""
    return audited(scene_probe)


def _row(comparison: Comparison, score: str, scope: str = "probe") -> pd.Series:
    table = comparison.table
    return table[(table["score"] == score) & (table["scope"] == scope)].iloc[0]


# --- the decision ---------------------------------------------------------------------------------------


def test_a_score_only_one_report_measured_keeps_its_row_without_data(champion):
    """bg_gap of a candidate audited with discovery against a champion audited without: the row stays,
    so the reader sees the score was not compared, with verdict 'no data'."""
    samples = champion.samples.copy()
    samples["bg_gap"] = 0.5
    summary = {**champion.summary, "bg_gap": 0.5}
    candidate = AuditReport(summary, samples, champion.per_class, champion.verdict, champion.policy,
                            dict(champion.meta))  # fmt: skip
    row = _row(candidate.compare(champion), "bg_gap")
    assert row["verdict"] == "no data" and row["candidate"] == 0.5 and math.isnan(row["baseline"])


def test_identical_reports_compare_as_equal(champion):
    comparison = champion.compare(champion)
    assert comparison.passed and comparison.reasons == [] and comparison.new_flags == ()
    table = comparison.table
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert set(table["scope"]) == {"probe", "disc", "square", "triangle"}
    # every score either audit measured; neither ran discovery, so bg_* have no rows
    measured = [s for s in comparable_scores() if keys.score(s).evidence != "discovery"]
    assert set(table["score"]) == set(measured) and len(measured) < len(comparable_scores())
    scored = table[table["verdict"] != "no data"]
    assert (scored["delta"] == 0).all() and (scored["ci_low"] == 0).all() and (scored["ci_high"] == 0).all()
    assert (scored["p_value"] == 1.0).all() and set(scored["verdict"]) == {"ok"}
    row = _row(comparison, "focus_lift")
    assert row["judged"] and row["baseline"] == row["candidate"] == champion.summary["focus_lift"]
    lift = f"{champion.summary['focus_lift']:.2f}"
    assert comparison.findings == [
        f"focus_lift {lift} vs {lift} (+0%, 95% CI +0% to +0%, p = 1.000): within the 5% allowed"
    ]


def test_focus_lift_lowered_ten_percent_fails_at_five_percent_and_passes_at_twenty(champion):
    candidate = changed(champion, 0.9)
    strict = candidate.compare(champion, max_regression=0.05)
    row = _row(strict, "focus_lift")
    expected = -0.1 * champion.samples["focus_lift"].astype("float64").mean()
    assert row["delta"] == pytest.approx(expected, rel=1e-6)
    assert row["ci_low"] <= row["delta"] <= row["ci_high"] < 0
    # 24 pairs all of one sign: the Monte Carlo test finds no sign pattern as extreme
    assert row["p_value"] == pytest.approx(1 / 10_000)
    assert row["verdict"] == "regression" and not strict.passed
    lifts = f"{candidate.summary['focus_lift']:.2f} vs {champion.summary['focus_lift']:.2f}"
    assert len(strict.reasons) == 1 and strict.reasons[0].startswith(f"focus_lift {lifts} (-10%, 95% CI")
    assert "p < 0.001" in strict.reasons[0] and "more than the 5% allowed" in strict.reasons[0]
    # focus fell as much, but it is reported, not judged
    assert _row(strict, "focus")["verdict"] == "worse" and not _row(strict, "focus")["judged"]

    lenient = candidate.compare(champion, max_regression=0.2)
    assert lenient.passed and _row(lenient, "focus_lift")["verdict"] == "ok"
    assert lenient.findings[0].endswith("within the 20% allowed")


def test_a_large_change_that_is_not_significant_does_not_block(champion):
    # every other sample up 40%, the rest down 60%: the mean falls about 10%, but the signs look random
    candidate = changed(champion, lambda s: pd.Series(np.where(s["index"] % 2 == 0, 1.4, 0.4), index=s.index))
    comparison = candidate.compare(champion, policy=ShortcutPolicy(min_focus_lift=None, min_accuracy_p=None))
    row = _row(comparison, "focus_lift")
    assert row["delta"] / row["baseline"] < -0.05 and row["p_value"] > 0.05
    assert row["verdict"] == "ok" and comparison.passed
    assert "not significant at level 0.01" in comparison.findings[0]


def test_a_lower_is_better_score_regresses_upwards(champion):
    worse = changed(champion, 1.2, scores=("spurious_lift",)).compare(champion, scores=("spurious_lift",))
    assert not worse.passed and _row(worse, "spurious_lift")["verdict"] == "regression"
    assert "lower is better" in worse.reasons[0]
    better = changed(champion, 0.8, scores=("spurious_lift",)).compare(champion, scores=("spurious_lift",))
    assert better.passed and _row(better, "spurious_lift")["verdict"] == "better"
    assert not _row(better, "focus_lift")["judged"]


def test_a_new_flag_fails_and_a_shared_one_still_fails(champion):
    flagged = with_class_value(champion, "spurious_lift", "square", 6.0)
    assert not flagged.passed
    comparison = flagged.compare(champion)
    assert not comparison.passed
    assert [(f.rule, f.scope) for f in comparison.new_flags] == [("max_spurious_lift", "square")]
    assert comparison.reasons == [f"new flag max_spurious_lift: {flagged.verdict.flags[0]}"]
    # the champion already had it: not new, but the candidate still fails its policy
    shared = flagged.compare(flagged)
    assert not shared.passed and shared.new_flags == ()
    flag = flagged.verdict.flags[0]
    assert shared.reasons == [f"fails the policy, like the champion, max_spurious_lift: {flag}"]


def test_the_policy_judges_both_reports(champion):
    strict = ShortcutPolicy(min_focus_lift=100.0, per_class=False, min_accuracy_p=None)
    comparison = champion.compare(champion, policy=strict)
    assert not comparison.passed and comparison.new_flags == ()
    assert not comparison.candidate_verdict.passed and not comparison.baseline_verdict.passed
    assert comparison.reasons[0].startswith("fails the policy, like the champion, min_focus_lift: focus_lift")


def test_a_regression_in_one_class_is_judged_per_class(champion):
    in_square = changed(champion, 0.88, where=lambda s: s["class"] == "square")
    comparison = in_square.compare(champion, level=0.05)
    probe, square = _row(comparison, "focus_lift"), _row(comparison, "focus_lift", "square")
    assert -0.05 < probe["delta"] / probe["baseline"] < 0 and probe["verdict"] == "ok"
    # 8 pairs of one sign: exact test, 2 of 256 sign patterns; Holm's first bound is 0.05 / 4 judged rows
    assert square["p_value"] == pytest.approx(2 / 256)
    assert square["judged"] and square["verdict"] == "regression" and not comparison.passed
    assert "for class 'square'" in comparison.reasons[0]
    # at the default level 0.01 Holm's first bound is 0.0025: 8 samples cannot show it
    assert in_square.compare(champion).passed
    # a policy that does not judge classes does not judge their comparison either
    probe_only = ShortcutPolicy(min_focus_lift=1.0, per_class=False, min_accuracy_p=None)
    unjudged = in_square.compare(champion, level=0.05, policy=probe_only)
    assert unjudged.passed and _row(unjudged, "focus_lift", "square")["verdict"] == "worse"


def test_results_are_reproducible_and_to_dict_is_json(champion):
    candidate = changed(champion, 0.95)
    first, again = candidate.compare(champion), candidate.compare(champion)
    pd.testing.assert_frame_equal(first.table, again.table)
    other_seed = candidate.compare(champion, seed=1)
    assert _row(other_seed, "focus_lift")["ci_low"] != _row(first, "focus_lift")["ci_low"]
    data = json.loads(json.dumps(first.to_dict(), allow_nan=False))
    assert data["passed"] == first.passed and len(data["table"]) == len(first.table)
    assert data["settings"]["n_pairs"] == len(champion.samples) == 24
    assert data["table"][0].keys() == set(TABLE_COLUMNS)


# --- pairing and refusals -------------------------------------------------------------------------------


def test_pairing_survives_reordered_rows(champion):
    candidate = changed(champion, 0.9)
    shuffled = AuditReport(candidate.summary, candidate.samples.sample(frac=1.0, random_state=3),
                           candidate.per_class, candidate.verdict, candidate.policy, dict(candidate.meta))
    assert list(shuffled.samples["index"]) != sorted(shuffled.samples["index"])
    in_order, reordered = candidate.compare(champion), shuffled.compare(champion)
    pd.testing.assert_frame_equal(in_order.table, reordered.table)
    assert list(reordered.pairs["index"]) == list(range(24))
    pairs = reordered.pairs.set_index("sample_id")
    original = champion.samples.set_index("sample_id")["focus_lift"].astype("float64")
    assert np.allclose(pairs["focus_lift_baseline"], original[pairs.index])
    assert np.allclose(pairs["focus_lift_candidate"], 0.9 * original[pairs.index], rtol=1e-6)


def test_reports_of_different_probes_targets_or_tasks_are_refused(champion, scene_probe):
    other = AuditReport(champion.summary, champion.samples, champion.per_class, champion.verdict,
                        champion.policy, {**champion.meta, "probe_fingerprint": "0123456789abcdef"})
    with pytest.raises(ReportError, match="different probes .*0123456789abcdef"):
        other.compare(champion)
    predicted = AuditReport(champion.summary, champion.samples, champion.per_class, champion.verdict,
                            champion.policy, {**champion.meta, "target": "predicted"})
    with pytest.raises(ReportError, match="target is 'predicted' but the baseline's is 'label'"):
        predicted.compare(champion)
    binary = {**champion.meta, "task": "binary"}
    multiclass = {**champion.meta, "task": "multiclass"}
    with pytest.raises(ReportError, match="task"):
        compare(AuditReport(champion.summary, champion.samples, champion.per_class, champion.verdict,
                            champion.policy, binary),
                AuditReport(champion.summary, champion.samples, champion.per_class, champion.verdict,
                            champion.policy, multiclass))
    unmarked = AuditReport(champion.summary, champion.samples, champion.per_class, champion.verdict,
                           champion.policy, {})
    with pytest.raises(ReportError, match="no meta.probe_fingerprint"):
        unmarked.compare(champion)
    assert issubclass(ReportError, CamAuditError)


def test_samples_in_only_one_report_or_twice_in_one_are_an_error(champion):
    fewer = AuditReport(champion.summary, champion.samples.iloc[1:], champion.per_class, champion.verdict,
                        champion.policy, dict(champion.meta))
    with pytest.raises(ReportError, match=r"1 sample\(s\) appear only in the baseline report, e.g. '0'"):
        fewer.compare(champion)
    with pytest.raises(ReportError, match=r"only in the candidate report"):
        champion.compare(fewer)
    twice = AuditReport(champion.summary, pd.concat([champion.samples, champion.samples.iloc[:1]]),
                        champion.per_class, champion.verdict, champion.policy, dict(champion.meta))
    with pytest.raises(ReportError, match="repeated sample"):
        twice.compare(champion)


def test_unknown_scores_and_bad_settings_name_the_fix(champion):
    valid = "scores with a per-sample column: focus, focus_lift"
    with pytest.raises(ReportError, match=f"unknown score\\(s\\) 'focus_lft'; {valid}"):
        champion.compare(champion, scores=("focus_lft",))
    with pytest.raises(ReportError, match="'n_samples'"):  # a count has no per-sample column of its own
        check_options(scores=("n_samples",))
    with pytest.raises(ReportError, match="max_regression"):
        check_options(max_regression=-0.1)
    with pytest.raises(ReportError, match="level"):
        champion.compare(champion, level=1.5)


# --- the statistics against independent computations ---------------------------------------------------


def test_sign_flip_p_equals_brute_force_enumeration():
    rng = np.random.default_rng(7)
    deltas = rng.normal(0.3, 1.0, size=10)
    observed = abs(deltas.sum())
    extreme = sum(
        abs(sum(s * d for s, d in zip(signs, deltas, strict=True))) >= observed - 1e-12
        for signs in itertools.product((-1, 1), repeat=len(deltas))
    )
    assert sign_flip_p(deltas) == pytest.approx(extreme / 2**10, abs=1e-15)
    # ties count as extreme: four equal values, only all-plus and all-minus reach the sum
    assert sign_flip_p([0.1, 0.1, 0.1, 0.1]) == 2 / 16
    assert sign_flip_p([0.0, 0.0, 0.0]) == 1.0 and math.isnan(sign_flip_p([]))


def test_sign_flip_p_agrees_with_scipy_permutation_test():
    rng = np.random.default_rng(11)
    small = rng.normal(0.5, 1.0, size=12)
    reference = stats.permutation_test(
        (small,), np.sum, permutation_type="samples", alternative="two-sided", n_resamples=np.inf
    )
    assert sign_flip_p(small) == pytest.approx(reference.pvalue, rel=1e-9)
    # beyond EXACT_MAX_PAIRS the test is Monte Carlo: compare with an exact enumeration of 2**18 patterns
    large = rng.normal(0.8, 1.0, size=EXACT_MAX_PAIRS + 2)
    bits = (np.arange(2 ** large.size)[:, None] >> np.arange(large.size)) & 1
    exact = np.mean(np.abs((1 - 2 * bits) @ large) >= abs(large.sum()) - 1e-12)
    standard_error = math.sqrt(exact * (1 - exact) / 9999)
    assert 0.01 < exact < 0.5 and abs(sign_flip_p(large) - exact) < 4 * standard_error


def test_bootstrap_ci_agrees_with_scipy_and_the_normal_interval():
    rng = np.random.default_rng(5)
    deltas = rng.normal(-0.4, 0.8, size=60)
    low, high = bootstrap_ci(deltas, confidence=0.95, resamples=20_000, seed=3)
    reference = stats.bootstrap(
        (deltas,), np.mean, confidence_level=0.95, n_resamples=20_000, method="percentile",
        random_state=np.random.default_rng(9),
    ).confidence_interval
    width = high - low
    assert low == pytest.approx(reference.low, abs=0.03 * width)
    assert high == pytest.approx(reference.high, abs=0.03 * width)
    # and the textbook large-sample interval of a mean (plug-in standard deviation)
    half = 1.959964 * deltas.std(ddof=0) / math.sqrt(deltas.size)
    assert low == pytest.approx(deltas.mean() - half, abs=0.05 * width)
    assert high == pytest.approx(deltas.mean() + half, abs=0.05 * width)
    assert bootstrap_ci([0.2, 0.2]) == (0.2, 0.2) and all(map(math.isnan, bootstrap_ci([])))


def test_holm_steps_down_and_stops_at_the_first_acceptance():
    # bounds 0.05/4, 0.05/3, 0.05/2, ...: 0.004 and 0.012 pass theirs, 0.03 does not, 0.2 is not tried
    assert holm([0.004, 0.03, 0.012, 0.2], level=0.05) == [True, False, True, False]
    assert holm([0.02, 0.02], level=0.05) == [True, True]
    assert holm([0.03, 0.02], level=0.05) == [True, True]
    assert holm([0.03, 0.026], level=0.05) == [False, False]
    assert holm([math.nan, 0.001], level=0.01) == [False, True]


# --- paired_deltas: the cheap function a training run can log -------------------------------------------


def test_paired_deltas_of_part_of_the_probe(champion):
    candidate = changed(champion, 0.9).samples
    part = candidate.iloc[[5, 2, 17, 11]]  # one process's share, out of order
    deltas = paired_deltas(part, champion, ["focus_lift", "accuracy"])
    base = champion.samples.set_index("index").loc[[5, 2, 17, 11]]
    assert deltas["focus_lift"] == pytest.approx(-0.1 * base["focus_lift"].astype("float64").mean(), rel=1e-6)
    assert deltas["accuracy"] == 0.0
    everything = paired_deltas(candidate, champion.samples)
    assert set(everything) == set(comparable_scores())
    assert everything["spurious_lift"] == 0.0
    stranger = part.assign(sample_id=[f"elsewhere{i}.png" for i in range(len(part))])
    with pytest.raises(ReportError, match="only in the candidate report"):
        paired_deltas(stranger, champion)
    with pytest.raises(ReportError, match="unknown score"):
        paired_deltas(part, champion, ["focus_lifts"])


def test_worst_samples_are_the_largest_drops_first(champion):
    factors = {7: 0.5, 3: 0.7}
    candidate = changed(champion, lambda s: s["index"].map(factors).fillna(1.0))
    comparison = candidate.compare(champion)
    worst = comparison.worst_samples(2)
    assert set(worst["index"]) == {7, 3} and (worst["focus_lift_delta"] < 0).all()
    assert worst["focus_lift_delta"].is_monotonic_increasing  # the largest drop first
    assert len(comparison.worst_samples(30)) == 24


def test_a_change_many_times_the_champions_value_is_given_as_a_difference():
    from cam_audit.report.compare_text import row_sentence

    settings = {"confidence": 0.95, "max_regression": 0.05, "level": 0.01}
    row = pd.Series({"score": "spurious_mass", "scope": "probe", "baseline": 0.0042, "candidate": 0.124,
                     "delta": 0.1198, "ci_low": 0.117, "ci_high": 0.123, "p_value": 1e-4, "judged": False,
                     "verdict": "worse"})
    assert row_sentence(row, settings) == (
        "spurious_mass 0.124 vs 0.004 (+0.120, 95% CI +0.117 to +0.123, p < 0.001): the candidate is worse "
        "than the champion (lower is better); reported, not judged"
    )
    row = row.copy()
    row.update({"baseline": 0.5, "candidate": 0.6, "delta": 0.1, "ci_low": 0.08, "ci_high": 0.12})
    assert row_sentence(row, settings).startswith("spurious_mass 0.600 vs 0.500 (+20%, 95% CI +16% to +24%")
