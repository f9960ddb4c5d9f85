"""No verdict without evidence: unscored probes, degenerate maps and models at chance fail as inconclusive."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy.stats import binomtest

from cam_audit.errors import ReportError
from cam_audit.report import ShortcutPolicy, Verdict
from cam_audit.report.evidence import binomial_tail, names_a_cue, upper_tails


def _summary(**overrides) -> dict[str, float]:
    base = dict(focus=0.6, focus_lift=3.0, spurious_mass=0.02, spurious_lift=0.8, cf_flip_rate=0.0,
                cf_confidence_drop=0.0, cf_paste_rate=0.0, accuracy=0.95, n_samples=12.0, n_degenerate=0.0)
    base.update(overrides)
    return base


def _sizes(**classes: float) -> pd.DataFrame:
    """A per-class table with only the class sizes (every sample scored)."""
    frame = pd.DataFrame({"n_samples": classes, "n_scored": classes})
    frame.index.name = "class"
    return frame


BALANCED = dict(disc=4.0, square=4.0, triangle=4.0)


@pytest.mark.parametrize("n", [1, 5, 12, 40, 97, 500, 3000])
@pytest.mark.parametrize("p", [0.05, 1 / 3, 0.5, 0.9])
def test_binomial_tail_matches_scipy_binomtest(n, p):
    for k in sorted({0, 1, n // 3, n // 2, int(n * p), int(n * p) + 1, (3 * n) // 4, n - 1, n}):
        expected = binomtest(k, n, p, alternative="greater").pvalue if k > 0 else 1.0
        assert binomial_tail(k, n, p) == pytest.approx(expected, rel=1e-9, abs=1e-300), (k, n, p)


def test_binomial_tails_at_the_edges():
    assert upper_tails(4, 0.0) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert upper_tails(4, 1.0) == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert binomial_tail(0, 10, 0.3) == 1.0 and binomial_tail(11, 10, 0.3) == 0.0
    assert binomial_tail(2000, 2000, 0.5) == pytest.approx(0.5**2000, rel=1e-9)  # no underflow to 0 early
    with pytest.raises(ValueError, match="0 <= p <= 1"):
        upper_tails(3, 1.5)


@pytest.mark.parametrize(
    ("correct", "inconclusive"), [(4, True), (8, True), (9, False), (12, False)], ids=lambda v: str(v)
)
def test_accuracy_must_be_clearly_above_the_majority_class_rate(correct, inconclusive):
    verdict = ShortcutPolicy().evaluate(_summary(accuracy=correct / 12), _sizes(**BALANCED))
    assert verdict.inconclusive is inconclusive and verdict.passed is not inconclusive
    if inconclusive:
        (finding,) = verdict.findings
        p_value = binomtest(correct, 12, 1 / 3, alternative="greater").pvalue
        assert (finding.rule, finding.metric, finding.value) == ("inconclusive", "accuracy", correct / 12)
        assert finding.threshold == 9 / 12  # the fewest correct that would be significant at 0.01
        assert finding.message.startswith(
            f"accuracy {correct / 12:.2f} ({correct} of 12 correct) is not clearly above the majority-class "
            f"rate 0.33 (always answering 'disc'): one-sided binomial p = {p_value:.2g} > min_accuracy_p 0.01"
        )


def test_chance_is_the_largest_class_not_one_over_the_number_of_classes():
    # 30 cats and 10 dogs: answering "cat" always scores 0.75, so 0.75 is chance, not skill
    sizes = _sizes(cat=30.0, dog=10.0)
    at_majority = ShortcutPolicy().evaluate(_summary(accuracy=0.75, n_samples=40.0), sizes)
    assert at_majority.inconclusive and "rate 0.75 (always answering 'cat')" in at_majority.flags[0]
    assert ShortcutPolicy().evaluate(_summary(accuracy=0.95, n_samples=40.0), sizes).passed


def test_a_model_at_chance_names_no_cue_but_keeps_the_focus_finding():
    cue = dict(focus=0.1, focus_lift=1.2, spurious_lift=9.0, spurious_mass=0.3, cf_flip_rate=0.9,
               cf_paste_rate=1.0)
    trained = ShortcutPolicy().evaluate(_summary(**cue), _sizes(**BALANCED))
    assert [f.rule for f in trained.findings] == [
        "min_focus_lift", "max_spurious_lift", "max_flip_rate", "max_paste_rate"
    ]
    at_chance = ShortcutPolicy().evaluate(_summary(accuracy=5 / 12, **cue), _sizes(**BALANCED))
    assert [f.rule for f in at_chance.findings] == ["inconclusive", "min_focus_lift"]
    assert at_chance.flags[0].endswith("so no cue is named")
    assert not any("spurious" in flag or "cf_" in flag for flag in at_chance.flags)


def test_a_probe_of_one_class_cannot_show_a_model_above_chance():
    verdict = ShortcutPolicy().evaluate(_summary(accuracy=1.0), _sizes(disc=12.0))
    assert verdict.inconclusive
    assert "add samples of other classes, or set min_accuracy_p=None" in verdict.flags[0]
    assert verdict.findings[0].threshold == math.inf


def test_the_chance_test_can_be_switched_off_and_needs_the_class_sizes():
    assert ShortcutPolicy(min_accuracy_p=None).evaluate(_summary(accuracy=0.3), _sizes(**BALANCED)).passed
    assert ShortcutPolicy().evaluate(_summary(accuracy=0.3)).passed  # no per-class table: not tested
    missing = ShortcutPolicy().evaluate(_summary(accuracy=math.nan), _sizes(**BALANCED))
    assert missing.flags[0].startswith("accuracy is missing, so the model cannot be shown to be above chance")


@pytest.mark.parametrize(
    ("summary", "metric", "first_words"),
    [
        (dict(n_samples=0.0), "n_samples", "no probe sample was scored (n_samples is 0)"),
        (dict(n_samples=math.nan), "n_samples", "no probe sample was scored (n_samples is missing)"),
        (dict(n_degenerate=12.0, focus=math.nan, focus_lift=math.nan), "n_degenerate",
         "none of the 12 probe samples could be scored: every map is all-zero"),
        (dict(n_degenerate=math.nan, focus=math.nan, focus_lift=math.nan, spurious_mass=math.nan,
              spurious_lift=math.nan), "n_degenerate", "none of the 12 probe samples could be scored"),
    ],
    ids=["no-samples", "n-samples-missing", "every-map-all-zero", "every-score-null"],
)
def test_a_probe_without_a_single_score_is_inconclusive(summary, metric, first_words):
    verdict = ShortcutPolicy().evaluate(_summary(**summary), _sizes(**BALANCED))
    assert not verdict.passed and verdict.inconclusive
    assert (verdict.findings[0].metric, verdict.findings[0].scope) == (metric, "probe")
    assert verdict.flags[0].startswith(first_words)


def test_an_all_null_summary_is_inconclusive_whatever_the_thresholds():
    summary = dict.fromkeys(_summary(), math.nan)
    off = ShortcutPolicy(min_focus_lift=None, max_spurious_lift=None, max_flip_rate=None, max_paste_rate=None,
                         max_focus_drop=None, max_degenerate_share=None, min_accuracy_p=None)
    for policy in (ShortcutPolicy(), off):
        verdict = policy.evaluate(summary)
        assert [f.rule for f in verdict.findings] == ["inconclusive"] and not verdict.passed


@pytest.mark.parametrize(("degenerate", "fails"), [(6.0, False), (7.0, True)])
def test_more_than_half_degenerate_is_inconclusive(degenerate, fails):
    verdict = ShortcutPolicy().evaluate(_summary(n_degenerate=degenerate), _sizes(**BALANCED))
    assert verdict.passed is not fails
    if fails:
        assert verdict.findings[0].value == pytest.approx(7 / 12)
        assert verdict.flags[0] == (
            "7 of 12 samples (58%) are degenerate (all-zero map or empty region), more than "
            "max_degenerate_share 50%; the scores rest on 5 samples"
        )
    assert ShortcutPolicy(max_degenerate_share=None).evaluate(_summary(n_degenerate=11.0)).passed


def test_a_class_whose_maps_are_mostly_degenerate_is_named():
    sizes = _sizes(**BALANCED, horse=6.0)
    sizes.loc["horse", "n_scored"] = 2.0  # 4 of its 6 samples have no score
    verdict = ShortcutPolicy().evaluate(_summary(n_samples=18.0, n_degenerate=4.0, accuracy=1.0), sizes)
    assert [(f.rule, f.scope) for f in verdict.findings] == [("inconclusive", "horse")]
    assert verdict.flags[0].startswith("4 of 6 samples of class 'horse' (67%) are degenerate")
    small = _sizes(**BALANCED, horse=3.0)
    small.loc["horse", "n_scored"] = 0.0  # below min_class_samples: not judged alone
    assert ShortcutPolicy().evaluate(_summary(n_samples=15.0, n_degenerate=3.0, accuracy=1.0), small).passed


def test_inconclusive_round_trips_and_reads_in_the_verdict_json():
    verdict = ShortcutPolicy().evaluate(_summary(accuracy=0.25), _sizes(**BALANCED))
    data = verdict.to_dict()
    assert data["inconclusive"] is True and data["passed"] is False
    assert Verdict.from_dict(data) == verdict


def test_names_a_cue():
    assert [names_a_cue(m) for m in ("focus_lift", "focus", "accuracy", "n_degenerate")] == [False] * 4
    cues = ("spurious_lift", "cf_flip_rate", "cf_paste_rate", "bg_gap")
    assert [names_a_cue(m) for m in cues] == [True] * 4


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("min_accuracy_p", 0.0, "ShortcutPolicy.min_accuracy_p is a significance level in (0, 1)"),
        ("min_accuracy_p", 1.0, "ShortcutPolicy.min_accuracy_p is a significance level in (0, 1)"),
        ("min_accuracy_p", "0.01", "ShortcutPolicy.min_accuracy_p must be a number or None"),
        ("max_degenerate_share", 1.5,
         "ShortcutPolicy.max_degenerate_share bounds the share of degenerate samples, which is in [0, 1]"),
        ("max_degenerate_share", True, "ShortcutPolicy.max_degenerate_share must be a number or None"),
        ("min_class_samples", "4", "ShortcutPolicy.min_class_samples must be an integer"),
        ("per_class", "yes", "ShortcutPolicy.per_class must be true or false"),
    ],
)
def test_policy_refuses_bad_evidence_settings(field, value, words):
    with pytest.raises(ReportError) as caught:
        ShortcutPolicy(**{field: value})
    assert str(caught.value).startswith(words)
