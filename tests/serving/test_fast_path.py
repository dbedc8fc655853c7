"""The service's per-member path gives exactly what batch scoring gives, for every member of a community."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.common.home import StateHome
from features.dataset.store import Dataset
from serving.models.batch import score_members
from serving.models.kinds import CHURN, Task
from serving.state import load_state, member_scores


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


def test_lists_are_kept_until_the_members_interactions_change(home: StateHome) -> None:
    from serving.models.base import ListRules
    from serving.models.kinds import PRODUCT_RECS
    from serving.state import ListCache, recommendations

    state, uncached = load_state(home, "shop"), load_state(home, "shop")
    state.lists, uncached.lists = ListCache(size=3), ListCache(size=0)
    members, rules = [f"M{i:06d}" for i in range(900, 905)], ListRules(k=5)
    first = recommendations(state, PRODUCT_RECS, members, rules)
    assert same_lists(first, recommendations(uncached, PRODUCT_RECS, members, rules))
    assert len(state.lists._lists) == 3  # bounded: the least recently used went first
    assert same_lists(recommendations(state, PRODUCT_RECS, members, rules), first)
    # a member with interactions since training is folded in each time, never answered from the kept list
    product = first[0]["items"][-1]["item_id"]
    new = {members[-1]: {product: 25.0}}
    for s in (state, uncached):
        s.online.items = lambda asked, matrix, new=new: {m: v for m, v in new.items() if m in asked}  # type: ignore[method-assign]
    again = recommendations(state, PRODUCT_RECS, members, rules)
    assert again[-1]["fresh"] and same_lists(again, recommendations(uncached, PRODUCT_RECS, members, rules))


def same_lists(a: list[dict], b: list[dict]) -> bool:
    """The same items in the same order. Scores to float32's precision: the factors are float32, and a member's
    scores from a product over several members differ from their own product's in the last digits."""
    items = [[(i["item_id"], i["rank"]) for i in m["items"]] for m in a] == [
        [(i["item_id"], i["rank"]) for i in m["items"]] for m in b
    ]
    scores = [i["score"] for m in a for i in m["items"]]
    return items and scores == pytest.approx([i["score"] for m in b for i in m["items"]], rel=1e-5)


def test_the_hot_path_answers_the_endpoints_it_is_said_to_and_tracing_leaves_out() -> None:
    from serving.hot_path import routes
    from serving.service import HOT_ROUTES, CommunityML

    assert set(routes(CommunityML)) == set(HOT_ROUTES)  # coroutine endpoints without a context: not /events
