"""Items no one has touched: placed among the warm items by their attributes, gated by date and status, moved by
what happens to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.common.errors import DataError
from serving.models.families.new_items import (
    AttributeSpace,
    Evidence,
    NewItemPolicy,
    NewItems,
    item_tokens,
    rank_with_new,
    recommender_config,
)

CATALOGUE = pd.DataFrame(
    {
        "name": ["Red candle holder", "Red candle tin", "Blue garden gnome", "Blue garden bench", "Spare"],
        "category": ["home", "home", "garden", "garden", "home"],
        "tags": [["gift"], ["gift"], ["outdoor"], ["outdoor"], None],
        "price": [2.0, 2.5, 30.0, 40.0, 5.0],
    },
    index=pd.Index(["H1", "H2", "G1", "G2", "S1"], name="item_id"),
)
# Two clusters of warm items in a two-factor space: the home items along the first factor, the garden ones along
# the second.
FACTORS = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
NOW = np.datetime64("2026-06-01T12:00:00", "s")


def placed(items: pd.DataFrame) -> NewItems:
    warm = CATALOGUE.loc[["H1", "H2", "G1", "G2"]]
    space = AttributeSpace.fit(item_tokens(pd.concat([CATALOGUE, items])))
    news = NewItems(space, space.encode(item_tokens(warm)), FACTORS, np.array([10.0, 8.0, 2.0, 1.0]))
    news.add(items)
    return news


def test_tokens_come_from_every_attribute_column_and_price_bands_are_half_octaves() -> None:
    tokens = item_tokens(CATALOGUE.iloc[[0]].assign(brand="Lura", published_at=pd.Timestamp("2026-01-01")))
    assert set(tokens[0]) == {
        "word:red",
        "word:candle",
        "word:holder",
        "category:home",
        "tag:gift",
        "brand:lura",
        "price:3",  # 2 * log2(2 + 1) = 3.17
    }
    assert item_tokens(pd.DataFrame({"price": [9.0, 10.0, 14.0]})) == [["price:6"], ["price:6"], ["price:7"]]


def test_a_new_item_is_placed_among_the_warm_items_whose_attributes_it_shares() -> None:
    news = placed(
        pd.DataFrame(
            {
                "name": ["Red candle lamp", "Blue garden chair"],
                "category": ["home", "garden"],
                "tags": [["gift"], None],
            },
            index=["N-HOME", "N-GARDEN"],
        )
    )
    assert news.factors is not None
    home, garden = news.factors
    assert home[0] > 0.8 and home[1] < 0.2 and garden[1] > 0.8 and garden[0] < 0.2
    # its expected reach is its neighbours' (members per warm item, averaged by likeness)
    assert news.reach[0] > 7.0 and news.reach[1] < 2.5
    # a member of the home cluster scores the home item first; the garden member the garden one
    family, key = news.scores(np.array([[1.0, 0.0], [0.0, 1.0]]), None, np.array([0, 1]))  # type: ignore[arg-type]
    assert family[0, 0] > family[0, 1] and family[1, 1] > family[1, 0] and (family == key).all()


def test_a_list_takes_new_items_once_published_while_active_and_new_enough() -> None:
    published = pd.to_datetime(["2026-06-01 08:00", "2026-06-02 08:00", "2026-06-01 08:00", "2026-04-01 00:00", None])
    news = placed(
        pd.DataFrame(
            {
                "name": ["Red candle lamp"] * 5,
                "published_at": published,
                "active": [True, True, False, True, True],
            },
            index=["NOW", "TOMORROW", "WITHDRAWN", "OLD", "UNDATED"],
        )
    )
    policy = NewItemPolicy(max_age_days=30)
    listed = news.ids[news.candidates(NOW, policy, None, None, set())].tolist()
    assert listed == ["NOW"]  # not before published_at, never inactive, not older than the policy's age
    since = news.ids[news.candidates(NOW, policy, np.datetime64("2026-03-01"), None, set())].tolist()
    assert since == ["NOW", "OLD"]
    assert news.ids[news.candidates(NOW, policy, None, None, {"NOW"})].tolist() == []
    # an item posted again replaces it: withdrawn now
    news.add(pd.DataFrame({"name": ["Red candle lamp"], "active": [False], "published_at": published[:1]}, ["NOW"]))
    assert len(news) == 5 and news.ids[news.candidates(NOW, policy, None, None, set())].tolist() == []


def test_evidence_moves_a_new_item_up_when_taken_and_sinks_it_when_shown_and_not_taken() -> None:
    evidence = Evidence()
    assert evidence.factor("X", expected_per_day=1.0, days_out=2.0, prior_ctr=0.05) == 1.0  # nothing happened yet
    evidence.takes["X"] = 10.0  # ten members in two days where one a day was expected
    assert evidence.factor("X", 1.0, 2.0, 0.05) > 1.5
    evidence.takes["Y"] = 1.0  # one member in 30 days where one a day was expected
    assert evidence.factor("Y", 1.0, 30.0, 0.05) < 0.5
    # impressions: a little shown is still tried (upper bound above the prior), much shown and never taken sinks
    evidence.shown["Z"] = 3.0
    assert evidence.factor("Z", 1.0, 1.0, 0.05) > 1.0
    evidence.shown["Z"], evidence.clicked["Z"] = 400.0, 0.0
    assert evidence.factor("Z", 1.0, 1.0, 0.05) < 0.5
    evidence.clicked["Z"] = 60.0
    assert evidence.factor("Z", 1.0, 1.0, 0.05) > 2.0


def test_new_items_take_the_places_their_scores_earn_in_the_order_of_their_keys() -> None:
    items, scores = rank_with_new(
        ["W1", "W2", "W3"], [0.9, 0.5, 0.1], ["NA", "NB"], np.array([0.7, 0.6]), np.array([1.0, 2.0]), 4
    )
    # the new items earn places 2 and 3 (0.7 and 0.6 fall between 0.9 and 0.5); NB's key puts it first there
    assert items == ["W1", "NB", "NA", "W2"] and scores[1] == 0.6


def test_each_kind_takes_the_default_policy_with_its_own_values_and_a_bad_file_is_named(tmp_path: Path) -> None:
    config = recommender_config()  # the repository's configs/recommenders.yaml
    assert config.policy("content-recs") == NewItemPolicy()
    assert config.policy("product-recs") == NewItemPolicy(fit_share=0.05)
    assert NewItemPolicy(slots=2).slots_for(10) == 2 and NewItemPolicy(slots=2).slots_for(3) == 1
    assert NewItemPolicy(slots=0).slots_for(10) == 0 and NewItemPolicy(fit_share=0.1).fit_depth(10, 3_000) == 300
    bad = tmp_path / "recommenders.yaml"
    bad.write_text("new_items:\n  slots: -1\n")
    with pytest.raises(DataError, match=r"recommenders.yaml: invalid settings: new_items.slots"):
        recommender_config(bad)
    bad.write_text("kinds:\n  product-recs:\n    fit_shar: 0.1\n")
    with pytest.raises(DataError, match=r"kinds.product-recs: fit_shar: Extra inputs are not permitted"):
        recommender_config(bad)
