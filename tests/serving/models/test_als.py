"""The ALS item family: business rules, ranking with the repeat boost, cold start, similar items, fold-in, and
saving and loading; and an item kind trained, registered and served end to end."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from features.dataset.store import Dataset
from serving.models.champions import load_champions
from serving.models.families import load_model
from serving.models.families.factors import FactorRecommender
from serving.models.kinds import CONTENT_RECS, PRODUCT_RECS
from serving.models.ranking import rank_items
from training.items.fit import fit_recommender


@pytest.fixture(scope="module")
def community(shop: Dataset) -> Dataset:
    return shop


@pytest.fixture(scope="module")
def products(community: Dataset) -> FactorRecommender:
    return fit_recommender(community, PRODUCT_RECS, date(2026, 4, 1), {}, seed=0)


def test_no_recommended_item_is_one_the_rules_exclude(products: FactorRecommender, community: Dataset) -> None:
    members = list(products.member_ids[:200])
    catalogue = community.read("products").set_index("product_id")
    inactive = set(catalogue.index[~catalogue["active"].astype(bool)])
    excluded = list(catalogue.index[:5])
    recs = products.recommend(members, k=10, exclude_seen=True, exclude=excluded)
    assert len(recs) == 2_000 and not recs["cold_start"].any()
    assert not set(recs["item_id"]) & inactive
    assert not set(recs["item_id"]) & set(excluded)
    for member, items in recs.groupby("member_id")["item_id"]:
        assert not set(items) & products.items_of(member)  # nothing the member already bought
    baby = products.recommend(members[:20], k=5, category="baby_care")
    assert set(catalogue.loc[baby["item_id"], "category"]) == {"baby_care"}


def test_ranking_boosts_what_a_member_bought_again_and_filters_by_the_rules() -> None:
    # given: one member whose ALS scores favour items 0 > 1 > 2 > 3, who bought item 3 five times and item 2 once
    user = np.array([[1.0, 0.0]])
    items = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    bought = sp.csr_matrix(np.array([[0.0, 0.0, 1.0, 5.0]]))

    def ranked(**rules) -> list[int]:
        ids, _ = rank_items(user, items, bought, 4, **rules)
        return ids[0].tolist()

    # then: without a boost the factors decide; with one, the item bought five times comes first
    assert ranked(exclude_seen=False) == [0, 1, 2, 3]
    # the spread of the scores 3, 2, 1, 0 is 1.118: item 3 scores 0 + 5 x 1.118, item 2 scores 1 + 1.118
    assert ranked(exclude_seen=False, repeat_weight=1.0) == [3, 0, 2, 1]
    # a new-only list drops what the member has, whatever the boost; blocked items never appear; -1 pads
    assert ranked(exclude_seen=True, repeat_weight=1.0) == [0, 1, -1, -1]
    assert ranked(exclude_seen=False, repeat_weight=1.0, blocked=np.array([False, False, False, True])) == [0, 2, 1, -1]


def test_repeat_buying_is_allowed_for_products_by_default(products: FactorRecommender) -> None:
    member = products.member_ids[0]
    recs = products.recommend([member], k=50)
    bought = set(products.item_ids[products.interactions[0].indices])
    assert set(recs["item_id"]) & bought


def test_unknown_members_get_popular_items_marked_as_cold_start(products: FactorRecommender) -> None:
    recs = products.recommend(["NEWCOMER", products.member_ids[0]], k=3)
    cold = recs[recs["member_id"] == "NEWCOMER"]
    assert cold["cold_start"].all() and list(cold["rank"]) == [1, 2, 3]
    assert cold["score"].is_monotonic_decreasing
    assert list(recs["member_id"].drop_duplicates()) == ["NEWCOMER", products.member_ids[0]]  # order kept


def test_similar_items_exclude_the_item_and_fold_in_changes_recommendations(products: FactorRecommender) -> None:
    item = products.item_ids[0]
    similar = products.similar_items(item, k=5)
    assert item not in set(similar["item_id"]) and similar["score"].is_monotonic_decreasing
    member = products.member_ids[0]
    before = products.recommend([member], k=10)
    burst = {str(i): 5.0 for i in similar["item_id"]}
    after = products.fold_in(member, burst, k=10)
    assert list(after["item_id"]) != list(before["item_id"])

    # The newest interests pull the list towards them, without retraining.
    def closeness(items: pd.Series) -> float:
        unit = products.item_factors / np.linalg.norm(products.item_factors, axis=1, keepdims=True)
        picked = unit[[products.item_index(i) for i in items]]
        return float((picked @ unit[[products.item_index(i) for i in burst]].T).mean())

    assert closeness(after["item_id"]) > closeness(before["item_id"])


def test_save_and_load_give_the_same_recommendations(products: FactorRecommender, tmp_path: Path) -> None:
    loaded = load_model(products.save(tmp_path))  # the family's loader, as the registry's models load
    assert isinstance(loaded, FactorRecommender) and loaded.spec == products.spec
    members = list(products.member_ids[:50])
    pd.testing.assert_frame_equal(loaded.recommend(members, 10), products.recommend(members, 10))


@pytest.mark.slow
def test_content_recs_trained_by_the_job_serve_from_the_registry(home) -> None:
    # given: the serving package's champions, content-recs among them, trained by the one training job
    champion = load_champions(home, "shop", [CONTENT_RECS])[CONTENT_RECS]
    recommender = champion.model
    assert champion.name == "shop.content-recs" and champion.family == "als"
    members = list(recommender.member_ids[:5])
    # when: MLflow loads the registered champion as any MLflow user would
    served = mlflow.pyfunc.load_model("models:/shop.content-recs@champion").predict(
        pd.DataFrame({"member_id": members})
    )
    # then
    pd.testing.assert_frame_equal(served, recommender.recommend(members, 10))
    for member, items in served.groupby("member_id")["item_id"]:  # content: nothing already seen
        assert not set(items) & recommender.items_of(member)
    assert np.isfinite(served["score"]).all()


@pytest.mark.slow
def test_an_interactions_only_dataset_gets_content_recommendations_end_to_end(
    community: Dataset, tmp_path: Path, monkeypatch
) -> None:
    """A dataset of its own ("feed") in the session's home: the other datasets' models are not its business."""
    from typer.testing import CliRunner

    from cli import app

    # given: a bare interactions file (user, item, epoch seconds), nothing else
    views = community.read("engagements").dropna(subset=["content_id"])
    tsv = tmp_path / "events.tsv"
    pd.DataFrame(
        {"user": views["member_id"], "item": views["content_id"], "timestamp": views["ts"].astype("int64") // 10**9}
    ).to_csv(tsv, sep="\t", index=False)
    monkeypatch.setenv("COMMUNITY_ML_HOME", str(community.home.root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    imported = runner.invoke(
        app,
        [
            "data",
            "import",
            "-d",
            "feed",
            "-t",
            "engagements",
            "-i",
            str(tsv),
            "--map",
            "member_id=user",
            "--map",
            "content_id=item",
            "--map",
            "ts=timestamp",
            "--set",
            "action=view",
        ],
    )
    assert imported.exit_code == 0, imported.stderr
    # when
    trained = runner.invoke(app, ["train", "content-recs", "-d", "feed", "--budget-seconds", "0", "--json"])
    assert trained.exit_code == 0, trained.stderr
    out = tmp_path / "recs.csv"
    export = ["recommend", "-d", "feed", "--kind", "content-recs", "--k", "5", "--out", str(out)]
    # No members table, so no consent on record: the list stays empty unless consent is recorded elsewhere.
    assert "members without marketing consent left out" in runner.invoke(app, export).stdout
    exported = runner.invoke(app, [*export, "--consent-recorded-elsewhere"])
    # then
    assert '"promoted": true' in trained.stdout
    assert exported.exit_code == 0, exported.stderr
    recs = pd.read_csv(out)
    assert recs["member_id"].nunique() == views["member_id"].nunique()
    assert (recs.groupby("member_id").size() == 5).all()


def test_members_without_history_get_their_personas_favourites(community: Dataset) -> None:
    # given: a recommender fitted before some members had bought anything
    early = fit_recommender(community, PRODUCT_RECS, date(2025, 3, 1), {}, seed=0)
    members = community.read("members").set_index("member_id")
    parents = [m for m in members.index[members["persona"] == "young_parent"] if not early.knows_member(m)][:10]
    students = [m for m in members.index[members["persona"] == "student"] if not early.knows_member(m)][:10]
    assert parents and students
    # when
    recs = early.recommend(parents + students + ["STRANGER"], k=10)
    # then: each segment gets its own favourites, strangers the overall ones
    category = community.read("products").set_index("product_id")["category"]
    by_member = recs.assign(category=recs["item_id"].map(category)).groupby("member_id")["category"]
    share = by_member.apply(lambda c: (c == "baby_care").mean())
    assert recs["cold_start"].all()
    assert share[parents].mean() > share[students].mean() + 0.2
    stranger = list(recs.loc[recs["member_id"] == "STRANGER", "item_id"])
    active = community.read("products").set_index("product_id")["active"].astype(bool)
    popular_first = early.item_ids[np.argsort(-early.popularity, kind="stable")]
    assert stranger == [i for i in popular_first if active[i]][:10]  # inactive products never recommended
