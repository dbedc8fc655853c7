"""The statistics of randomized comparisons, and the champion/challenger split of real performance."""

from __future__ import annotations

from datetime import date
from functools import partial

import numpy as np
import pandas as pd

from monitoring.campaign_stats import cuped, difference, sample_ratio
from monitoring.performance import MEMBERS, by_variant, joined_performance, list_precision, taken_items
from training.metrics import qini_coefficient, uplift_at


def test_the_difference_of_means_and_its_interval_are_welchs() -> None:
    treated, control = np.array([1.0, 0, 1, 1, 0, 1]), np.array([0.0, 0, 1, 0, 0, 1])
    d = difference(treated, control)
    se = np.sqrt(treated.var(ddof=1) / 6 + control.var(ddof=1) / 6)
    assert d.difference == treated.mean() - control.mean()
    assert (d.low, d.high) == (d.difference - 1.959963984540054 * se, d.difference + 1.959963984540054 * se)
    assert d.relative == d.difference / control.mean()


def test_cuped_keeps_the_effect_and_narrows_its_interval() -> None:
    # given: spend that depends on pre-period spend, a planted effect of +5 in a randomized split
    rng = np.random.default_rng(3)
    covered, narrower = 0, 0
    for _ in range(40):
        pre = rng.gamma(2.0, 50.0, 4000)
        treated = rng.random(4000) < 0.5
        spend = 0.8 * pre + rng.normal(0, 30, 4000) + 5.0 * treated
        raw = difference(spend[treated], spend[~treated])
        adjusted = cuped(spend[treated], spend[~treated], pre[treated], pre[~treated])
        covered += adjusted.estimate.low <= 5.0 <= adjusted.estimate.high
        narrower += (adjusted.estimate.high - adjusted.estimate.low) < (raw.high - raw.low) / 2
    # then: the adjusted interval covers the truth about 95% of the time, and is less than half as wide
    assert covered >= 35
    assert narrower == 40


def test_a_skewed_split_is_a_sample_ratio_mismatch_and_a_planned_one_is_not() -> None:
    planned = {"control": 0.2, "coupon": 0.8}
    assert not sample_ratio({"control": 1985, "coupon": 8015}, planned).mismatch
    skewed = sample_ratio({"control": 1800, "coupon": 8200}, planned)
    assert skewed.mismatch and skewed.p_value < 0.001


def test_qini_is_zero_for_random_targeting_and_positive_for_the_responders_first() -> None:
    rng = np.random.default_rng(0)
    responds = rng.random(20_000) < 0.3
    treated = rng.random(20_000) < 0.5
    converted = (rng.random(20_000) < 0.1 + 0.4 * (responds & treated)).astype(float)
    assert abs(qini_coefficient(np.zeros(20_000), treated, converted)) < 1e-12  # one tie: exactly random
    # responders first: the curve climbs to the whole effect (0.3 x 0.4 = 0.12 per treated member) by 30% targeted,
    # then stays: the area above the diagonal is 0.12 x (0.3 / 2 + 0.7) - 0.12 / 2 = 0.042
    assert abs(qini_coefficient(responds.astype(float), treated, converted) - 0.042) < 0.006
    assert abs(qini_coefficient(-responds.astype(float), treated, converted) + 0.042) < 0.006
    # the lift among the top 30% is the responders' (0.4), against ~0.12 on average
    assert abs(uplift_at(responds.astype(float), treated, converted, 0.3) - 0.4) < 0.03
    assert abs(uplift_at(np.zeros(20_000), treated, converted, 0.3) - 0.12) < 0.02


def test_real_performance_is_split_by_variant_with_intervals() -> None:
    # given: logged churn answers of two variants; the challenger ranks better
    rng = np.random.default_rng(1)
    n = 2000
    churned = rng.random(n) < 0.3
    variant = np.where(rng.random(n) < 0.2, "challenger", "champion")
    noise = np.where(variant == "challenger", 0.7, 1.4)
    predicted = 1 / (1 + np.exp(-(2 * churned - 1 + rng.normal(0, noise, n))))
    members = pd.DataFrame({"member": [f"m{i}" for i in range(n)], "churn_probability": predicted, "variant": variant})
    outcomes = pd.DataFrame({"member": members["member"], "churned": churned})
    # when
    joined = members.merge(outcomes, on="member")
    points = by_variant(date(2025, 1, 1), MEMBERS, joined, joined_performance, samples=60)
    # then: one point per variant, its members, and an interval around each figure
    by = {p.model: p for p in points}
    assert set(by) == {"members (challenger)", "members (champion)"}
    assert by["members (challenger)"].members == int((variant == "challenger").sum())
    for point in points:
        low, high = point.intervals["churn_roc_auc"]
        assert low < point.metrics["churn_roc_auc"] < high < 1
    assert (
        by["members (challenger)"].intervals["churn_roc_auc"][0]
        > by["members (champion)"].intervals["churn_roc_auc"][1]
    )
    # and lists of one variant only are not split
    lists = pd.DataFrame({"member": ["m1"], "items": [["a"]], "variant": ["champion"]})
    truth = pd.DataFrame({"member": ["m1"], "item_id": ["a"]})
    measure = partial(list_precision, bought=taken_items(truth))
    assert by_variant(date(2025, 1, 1), "product-recs", lists, measure) == []
