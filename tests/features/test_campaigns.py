"""Campaigns in the data: the exposures table, the stable random split, and each exposed member's outcomes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.campaigns import CampaignPlan, assign_arms, record_plan
from features.dataset.importers import import_file
from features.dataset.store import Dataset
from features.pipelines.outcomes import measured_members, member_outcomes
from features.pipelines.snapshots import fingerprint
from tests.conftest import write_text


def test_the_split_is_random_stable_and_its_own_for_each_campaign() -> None:
    members = [f"M{i:06d}" for i in range(20_000)]
    plan = CampaignPlan(campaign="spring", arms=["A", "B"], holdout=0.2)
    arms = assign_arms(b"key", members, plan)
    counts = pd.Series(arms).value_counts(normalize=True)
    assert abs(counts["control"] - 0.2) < 0.01 and abs(counts["A"] - 0.4) < 0.015 and abs(counts["B"] - 0.4) < 0.015
    assert (assign_arms(b"key", members, plan) == arms).all()  # re-running gives everyone the same arm
    assert (assign_arms(b"key", members[::-1], plan)[::-1] == arms).all()  # whatever the order of the audience
    other = assign_arms(b"key", members, plan.model_copy(update={"campaign": "summer"}))
    assert 0.3 < np.mean(other == arms) < 0.45  # another campaign holds out other members
    assert 0.3 < np.mean(assign_arms(b"other key", members, plan) == arms) < 0.45  # the hash is keyed


ORDERS = """member_id,ts,amount,is_return
m1,2025-01-10,50,false
m1,2025-03-05,20,false
m1,2025-03-25,-20,true
m2,2025-03-20,30,false
m3,2025-02-20,15,false
m3,2025-04-10,99,false
"""
ENGAGEMENTS = "member_id,ts,action\nm2,2025-03-02,view\nm3,2025-03-01 00:00:00,view\n"
EXPOSURES = """member_id,campaign_id,arm,ts
m1,spring,coupon,2025-03-01
m2,spring,control,2025-03-01
m3,spring,coupon,2025-03-01
m3,spring,control,2025-03-01
"""


def test_imported_exposures_give_each_member_outcomes_in_the_window_after_it(home: StateHome, tmp_path: Path) -> None:
    dataset = Dataset(home, "shop")
    for table, text in (("orders", ORDERS), ("engagements", ENGAGEMENTS)):
        import_file(dataset, table, write_text(tmp_path / f"{table}.csv", text))
    before = fingerprint(dataset)
    # when: the campaign's assignments arrive; a member in two arms is a conflict, set aside with its reason
    summary = import_file(dataset, "exposures", write_text(tmp_path / "exposures.csv", EXPOSURES))
    # then
    table = summary.tables[0]
    assert (table.rows_added, table.rows_quarantined) == (3, 1)
    assert table.reasons == {"member_id: duplicate key": 1}
    assert dataset.read_quarantine("exposures")["detail"].str.contains("same campaign_id, member_id as row 3").all()
    assert fingerprint(dataset) == before  # a campaign is not a feature source: snapshots stay valid
    # and each member's outcomes over the 30 days after 2025-03-01 (exclusive), spend over the 60 before
    exposed = dataset.read("exposures")
    outcomes = member_outcomes(dataset, exposed, horizon_days=30, pre_days=60).set_index("member_id")
    assert outcomes.loc["m1", ["conversion", "visit", "spend", "retention", "pre_spend"]].tolist() == [1, 0, 0, 0, 50]
    assert outcomes.loc["m2", ["conversion", "visit", "spend", "retention", "pre_spend"]].tolist() == [1, 1, 30, 1, 0]
    # an engagement at the very time of exposure is not after it
    assert outcomes.loc["m3", ["conversion", "visit", "spend", "pre_spend"]].tolist() == [0, 0, 0, 15]
    # the data reaches 2025-04-10: every window (to 2025-03-31) is complete, and a 45-day one is not
    assert measured_members(dataset, exposed, "spring", 30)[1]
    # where no window is complete but the data goes on after the campaign, everyone is measured, and it says so
    everyone, complete = measured_members(dataset, exposed, "spring", 45)
    assert len(everyone) == 3 and not complete
    with pytest.raises(DataError, match="no event after its first exposure"):
        measured_members(dataset, exposed.assign(ts=pd.Timestamp("2025-05-01")), "spring", 30)


def test_a_plan_records_its_exposures_once_and_refuses_other_settings(home: StateHome) -> None:
    dataset = Dataset(home, "shop")
    dataset.record({"kind": "test"})
    plan = CampaignPlan(campaign="spring", arms=["A"], holdout=0.5, audience="file:x")
    first = record_plan(dataset, plan, ["m1", "m2", "m3"], datetime(2025, 3, 1))
    # a re-run with more members keeps the first ones' arms and times
    again = record_plan(dataset, plan, ["m1", "m2", "m3", "m4"], datetime(2025, 4, 1))
    assert again.set_index("member_id").loc[["m1", "m2", "m3"]].equals(first.set_index("member_id"))
    assert again.set_index("member_id").loc["m4", "ts"] == pd.Timestamp("2025-04-01")
    with pytest.raises(DataError, match="planned with other arms or holdout"):
        record_plan(dataset, plan.model_copy(update={"holdout": 0.3}), ["m1"], datetime(2025, 3, 1))
    with pytest.raises(ValueError, match="distinct"):
        CampaignPlan(campaign="x", arms=["A", "A"])
