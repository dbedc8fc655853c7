"""Member models on the real Online Retail file: every member who ordered before the cutoff gets an answer."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.dataset.store import Dataset
from serving.models.inputs import INPUTS, with_inputs
from serving.models.kinds import CHURN, VALUE
from tests.conftest import requires_online_retail
from training.members.fit import member_family
from training.members.frames import LabelledFrame, labelled_snapshot

pytestmark = [requires_online_retail, pytest.mark.slow]

TRAINED_AT, SCORED_AT = date(2011, 6, 12), date(2011, 9, 10)


def test_every_member_who_ordered_before_the_cutoff_gets_a_finite_answer_from_every_family(
    online_retail: tuple[Dataset, object],
) -> None:
    dataset = online_retail[0]
    orders = dataset.read("orders", ["member_id", "ts", "is_return"])
    ordered = set(orders.loc[orders["ts"] < pd.Timestamp(SCORED_AT), "member_id"].dropna())
    assert len(ordered) == 3_402  # returns included: a member whose only order before T is a return counts

    train = LabelledFrame(labelled_snapshot(dataset, TRAINED_AT, 90))
    scored = labelled_snapshot(dataset, SCORED_AT, 90)
    assert ordered <= set(scored["member_id"])
    # The model inputs exist for every member. BG/NBD P(alive) and the Gamma-Gamma order value are empty, by the
    # models' own story, exactly for the 34 members whose only orders before T are returns.
    inputs = with_inputs(scored, 90).set_index("member_id")
    sales = orders[(orders["ts"] < pd.Timestamp(SCORED_AT)) & ~orders["is_return"].fillna(False).astype(bool)]
    returns_only = ordered - set(sales["member_id"])
    assert len(returns_only) == 34
    empty = ["btyd_p_alive", "btyd_order_value"]
    assert np.isfinite(inputs[[c for c in INPUTS if c not in empty]]).all().all()
    assert set(inputs.index[inputs[empty].isna().any(axis=1)]) == returns_only

    for kind, family in ((CHURN, "lightgbm"), (CHURN, "rfm"), (VALUE, "lightgbm"), (VALUE, "bgnbd-gamma-gamma")):
        predicted = member_family(family).fit(train, kind, {"n_estimators": 50}, 0, 90).predict(scored)
        assert len(predicted) == len(scored), (kind.name, family)
        assert np.isfinite(predicted).all(), (kind.name, family)
        if kind is CHURN:
            assert ((predicted > 0) & (predicted < 1)).all(), family
        else:
            assert (predicted >= 0).all(), family
