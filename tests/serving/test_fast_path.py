"""The service's per-member path gives exactly what batch scoring gives, for every member of a community."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.home import StateHome
from features.store import Dataset
from serving.models.batch import score_members
from serving.models.kinds import CHURN, Task
from serving.predictions import load_state, member_scores


def test_every_members_single_row_answer_equals_batch_scoring(home: StateHome) -> None:
    # given: the service's state and batch scoring of the same snapshot
    state = load_state(home, "shop")
    batch, champions = score_members(Dataset(home, "shop"), state.as_of)
    batch = batch.set_index("member_id")
    outputs = [str(c.kind.output) for c in champions.of(Task.member)]
    assert state.champions[CHURN].model.family == "lightgbm"  # the single-row LightGBM path is the one under test
    # when: each member is asked for alone, and in requests of seven, as callers ask
    members = list(batch.index)
    alone = {r["member_id"]: r for m in members for r in member_scores(state, [m])[0]}
    groups = [members[i : i + 7] for i in range(0, len(members), 7)]
    grouped = {r["member_id"]: r for group in groups for r in member_scores(state, group)[0]}
    # then: the same numbers, the same tier and the same reasons in the same order. The trees, the leaves and the
    # reasons are LightGBM's and numpy's same arithmetic on both paths (equal to the bit here); the one step done
    # differently is the binary objective's sigmoid (C++ std::exp in LightGBM, Python's math.exp on the
    # one-pass path), which another libm may round one unit in the last place apart: hence 1e-12, not 0.
    for answers in (alone, grouped):
        got = pd.DataFrame.from_dict(answers, orient="index").loc[members]
        for output in outputs:
            expected = batch[output].to_numpy(float)
            np.testing.assert_allclose(got[output].to_numpy(float), expected, rtol=1e-12, atol=0, err_msg=output)
        assert (got["tier"] == batch["tier"]).all()
        assert [", ".join(r) for r in got["top_reasons"]] == list(batch["top_reasons"])
