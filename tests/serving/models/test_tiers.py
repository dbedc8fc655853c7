"""Tiers: the operators' shares, and who is at risk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from serving.models.tiers import TIER_FEATURES, TierCuts, TierInputs, TierSettings, assign_tiers


def test_tiers_follow_the_configured_shares_and_put_fading_spenders_at_risk() -> None:
    rng = np.random.default_rng(0)
    n = 1_000
    churn, value, spend = rng.random(n), rng.gamma(2.0, 100.0, n), rng.gamma(2.0, 100.0, n)
    tenure, frequency = np.full(n, 200.0), np.full(n, 3.0)
    tenure[:100] = 10.0  # too new to judge
    frequency[100:150] = 0  # never bought
    tiers = assign_tiers(TierInputs(churn, value, spend, tenure, frequency))
    counts = pd.Series(tiers).value_counts().to_dict()
    assert counts == {"ordinary": 382, "potential": 255, "high_value": 128, "churn_risk": 85, "new": 150}
    at_stake = churn * spend
    established = np.arange(150, n)
    risk = set(np.flatnonzero(tiers == "churn_risk"))
    assert risk == set(established[np.argsort(-at_stake[established])][:85])
    assert min(at_stake[list(risk)]) >= max(at_stake[np.flatnonzero(tiers == "ordinary")])
    assert min(value[tiers == "high_value"]) >= max(value[tiers == "potential"])
    with pytest.raises(ValidationError, match=r"tier shares add up to 1\.100, not 1"):
        TierSettings(high_value_share=0.25)


def test_one_member_tiered_alone_gets_the_tier_the_population_gives_them() -> None:
    # given: a population with missing spend and frequency, new members, and ties in value
    rng = np.random.default_rng(3)
    n = 2_000
    spend, tenure, frequency = rng.gamma(2.0, 100.0, n), np.full(n, 200.0), np.full(n, 3.0)
    spend[::7], tenure[::11], frequency[::13] = np.nan, 10.0, np.nan
    value = np.round(rng.gamma(2.0, 100.0, n), -1)  # rounded: many members tie
    population = TierInputs(rng.random(n), value, spend, tenure, frequency)
    cuts, whole = TierCuts.of(population), assign_tiers(population)
    # when: each member is tiered alone, from floats, as a request does (None where the row has no value)
    alone = [
        cuts.tier(
            {"churn_probability": population.churn_probability[i], "expected_value": value[i]},
            {
                f: None if np.isnan(x) else x
                for f, x in zip(TIER_FEATURES, (spend[i], tenure[i], frequency[i]), strict=True)
            },
            float(i),
        )
        for i in range(n)
    ]
    # then
    assert alone == list(whole) and {"new", "churn_risk", "high_value", "potential", "ordinary"} == set(whole)
