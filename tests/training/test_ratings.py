"""A ratings dataset, whose timestamps mean little, trained on the random per-item protocol from the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features.common.home import StateHome
from features.dataset.store import Dataset
from serving.models.kinds import CONTENT_RECS
from serving.models.registry import connect
from training.items.trainer import RANDOM_TEST_SHARE, ItemTrainer
from training.job import train
from training.trainer import TrainSettings

MEMBERS, ITEMS, TASTES, RATED = 400, 120, 3, 12


def simulated_ratings(seed: int = 0) -> pd.DataFrame:
    """Members who each rate a dozen items, mostly of their own taste (a third of the catalogue), popular
    ones more often; the dates are spread over a year at random, as a ratings export's often are."""
    rng = np.random.default_rng(seed)
    appeal = 1.0 / np.arange(1, ITEMS // TASTES + 1)  # Zipf within a taste
    rows = []
    for member in range(MEMBERS):
        taste = member % TASTES
        own = rng.choice(ITEMS // TASTES, size=9, replace=False, p=appeal / appeal.sum()) + taste * (ITEMS // TASTES)
        other = rng.choice(np.setdiff1d(np.arange(ITEMS), own), size=RATED - 9, replace=False)
        for item in np.concatenate([own, other]):
            rows.append({"user": f"U{member:04d}", "movie": f"F{item:04d}", "ts": int(rng.integers(1.70e9, 1.73e9))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def ratings(shared_home: StateHome, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = tmp_path_factory.mktemp("ratings") / "ratings.csv"
    simulated_ratings().to_csv(path, index=False)
    imported = CliRunner().invoke(
        app,
        [
            *("data", "import", "-d", "ratings", "-t", "engagements", "-i", str(path)),
            *("--map", "member_id=user", "--map", "content_id=movie", "--map", "ts=ts", "--set", "action=view"),
        ],
    )
    assert imported.exit_code == 0, imported.output
    return Dataset(shared_home, "ratings")


@pytest.mark.slow
def test_tuning_never_sees_the_random_test_split(ratings: Dataset) -> None:
    trainer, settings = ItemTrainer(), TrainSettings(split="random-per-item")
    held_out = trainer.held_out(ratings, CONTENT_RECS, settings, pd.Timestamp("2025-01-01").date())
    test = trainer._split(ratings, CONTENT_RECS, held_out.tests[0], settings, tuning=False)
    tuning = trainer._split(ratings, CONTENT_RECS, held_out.validation[0], settings, tuning=True)
    # each split holds out a quarter of each item's members, rounded down (items with under four keep them all)
    held = sum(len(t) for t in test.truth)
    assert held == pytest.approx(RANDOM_TEST_SHARE * MEMBERS * RATED, rel=0.1)
    pairs = {(u, i) for u, items in zip(test.users, test.truth, strict=True) for i in items}
    tuned_on = set(zip(*tuning.train.nonzero(), strict=True)) | {
        (u, i) for u, items in zip(tuning.users, tuning.truth, strict=True) for i in items
    }
    assert tuned_on <= set(zip(*test.train.nonzero(), strict=True))  # carved from the test's training data
    assert not tuned_on & pairs
    assert sum(len(t) for t in tuning.truth) == pytest.approx(RANDOM_TEST_SHARE * test.train.nnz, rel=0.1)


@pytest.mark.slow
def test_ratings_train_on_the_random_split_promote_a_champion_and_recommend(ratings: Dataset, tmp_path: Path) -> None:
    runner = CliRunner()
    # when
    tune = ["--trials", "2", "--budget-seconds", "60"]  # tuned by default (60 s); 2 trials a family here
    trained = runner.invoke(app, ["train", "content-recs", "-d", "ratings", "--split", "random-per-item", *tune])
    # then: the run says which protocol judged it and how it was tuned, and its best family is champion
    assert trained.exit_code == 0, trained.output
    assert (
        "a random 25% of each item's interactions" in trained.output
        and "tuning: 2 trials per family and 60 s in all" in trained.output
    )
    assert "ratings.content-recs version 1: promoted to champion" in trained.output
    run = connect(ratings.home).search_runs(
        [connect(ratings.home).get_experiment_by_name("ratings.content-recs").experiment_id]
    )[0]
    assert run.data.params["split"] == "random-per-item" and run.data.tags["promoted"] == "True"
    # every learned family was tuned on the validation split, starting from its defaults
    trials = pd.read_csv(connect(ratings.home).download_artifacts(run.info.run_id, "optuna_trials.csv", str(tmp_path)))
    assert set(trials["family"]) == {"als", "bpr", "item-knn", "ease"} and len(trials) == 8
    out = tmp_path / "recs.csv"
    export = ["recommend", "-d", "ratings", "--kind", "content-recs", "--k", "5", "--out", str(out)]
    exported = runner.invoke(app, [*export, "--consent-recorded-elsewhere"])
    assert exported.exit_code == 0, exported.output
    recs = pd.read_csv(out)
    assert recs["member_id"].nunique() == MEMBERS and (recs.groupby("member_id").size() == 5).all()
    assert set(recs["model"]) == {f"{run.data.tags['family']} v1"}
    # and a member's list holds none of what they rated (content lists are of new items by default)
    rated = simulated_ratings().groupby("user")["movie"].agg(set)
    assert not any(row.item_id in rated[row.member_id] for row in recs.itertuples())
    # on tastes this clear, BPR, item neighbours and EASE all find them (precision@10 0.158, 0.158 and 0.155 with
    # their defaults, against 0.083 for most popular and 0.038 for ALS), and their similar items are of the
    # item's own taste
    family = run.data.tags["family"]
    assert family in {"bpr", "item-knn", "ease"}
    similar = tmp_path / "similar.csv"
    similar_export = ["recommend", "-d", "ratings", "--kind", "content-recs", "--similar", "--k", "5"]
    done = runner.invoke(app, [*similar_export, "--out", str(similar)])
    assert done.exit_code == 0 and f"from content-recs {family} v1" in done.output, done.output
    alike = pd.read_csv(similar)
    first = alike[alike["content_id"] == "F0000"]
    assert len(first) == 5 and "F0000" not in set(first["item_id"])
    same_taste = first["item_id"].str[1:].astype(int) < ITEMS // TASTES
    assert same_taste.sum() >= 4


def test_member_kinds_refuse_the_random_split(ratings: Dataset) -> None:
    done = CliRunner().invoke(app, ["train", "churn", "-d", "ratings", "--split", "random-per-item"])
    assert done.exit_code == 2 and "--split random-per-item: churn is judged on held-out cutoffs in time only" in (
        done.output
    )


@pytest.mark.slow
def test_ease_fits_serves_and_finds_similar_films_of_the_same_taste(ratings: Dataset, tmp_path: Path) -> None:
    from serving.models.families import load_model
    from training.items.fit import fit_recommender

    model = fit_recommender(ratings, CONTENT_RECS, pd.Timestamp("2025-01-01").date(), {}, seed=0, family="ease")
    lists = model.recommend(["U0000", "U0001"], k=5)
    assert (lists.groupby("member_id").size() == 5).all() and not lists["cold_start"].any()
    alike = model.similar_items("F0000", k=5)
    assert "F0000" not in set(alike["item_id"]) and (alike["item_id"].str[1:].astype(int) < ITEMS // TASTES).sum() >= 4
    loaded = load_model(model.save(tmp_path))
    pd.testing.assert_frame_equal(loaded.recommend(["U0000", "U0001"], k=5), lists)


def test_a_family_past_its_item_limit_is_not_judged(ratings: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import scipy.sparse as sp

    from features.common.errors import DataError
    from serving.models.families.recommenders import EASE, EASE_MAX_ITEMS, ITEM_FAMILIES

    with pytest.raises(DataError, match=f"{EASE_MAX_ITEMS + 1:,} items is more than the {EASE_MAX_ITEMS:,}"):
        EASE.factorize(sp.csr_matrix((3, EASE_MAX_ITEMS + 1), dtype=np.float32), {"l2": 500.0}, 0)
    monkeypatch.setitem(ITEM_FAMILIES, EASE.name, dataclasses.replace(EASE, item_limit=ITEMS - 1))
    trainer, settings = ItemTrainer(), TrainSettings(split="random-per-item")
    held_out = trainer.held_out(ratings, CONTENT_RECS, settings, pd.Timestamp("2025-01-01").date())
    evaluation = trainer.evaluate(ratings, CONTENT_RECS, held_out, {}, settings)
    assert set(evaluation.scores) == {"als", "bpr", "item-knn", "popular"}


@pytest.mark.slow
def test_every_family_serves_and_offers_similar_items_and_fold_in_or_says_it_cannot(
    ratings: Dataset, tmp_path: Path
) -> None:
    from serving.models.families import load_model
    from serving.models.families.factors import NotOffered
    from serving.models.families.recommenders import FOLD_IN, ITEM_FAMILIES, SIMILAR_ITEMS
    from training.items.fit import fit_recommender

    as_of = pd.Timestamp("2025-01-01").date()
    for family in ITEM_FAMILIES:
        model = fit_recommender(ratings, CONTENT_RECS, as_of, {}, seed=0, family=family)
        lists = model.recommend(["U0000"], k=5)
        assert len(lists) == 5 and not lists["cold_start"].any(), family
        if SIMILAR_ITEMS in ITEM_FAMILIES[family].offers:
            assert "F0000" not in set(model.similar_items("F0000", k=5)["item_id"]), family
        else:
            with pytest.raises(NotOffered, match=f"'{family}' family, which offers no similar items"):
                model.similar_items("F0000", k=5)
        top = lists["item_id"].iloc[0]
        if FOLD_IN in ITEM_FAMILIES[family].offers:
            # the member reads their top recommendation: it leaves their list (content lists are of new items)
            folded = model.fold_in("U0000", {top: 1.0}, k=5)
            assert top not in set(folded["item_id"]) and len(folded) == 5, family
        else:
            with pytest.raises(NotOffered, match="offers no fold-in"):
                model.fold_in("U0000", {top: 1.0}, k=5)
        pd.testing.assert_frame_equal(load_model(model.save(tmp_path / family)).recommend(["U0000"], k=5), lists)


def test_tuning_starts_from_the_family_defaults_and_never_ends_worse(ratings: Dataset) -> None:
    from serving.models.families.recommenders import ITEM_FAMILIES
    from training.items.tuning import tune_family

    trainer, settings = ItemTrainer(), TrainSettings(split="random-per-item")
    validation = trainer._split(ratings, CONTENT_RECS, pd.Timestamp("2025-01-01").date(), settings, tuning=True)
    best, trials = tune_family(validation, "item-knn", (True,), 10, 0, trials=4, seconds=None)
    assert len(trials) == 4 and set(trials["family"]) == {"item-knn"}
    first = trials.iloc[0]
    defaults = ITEM_FAMILIES["item-knn"].defaults
    assert (first["params_weighting"], first["params_neighbours"]) == (defaults["weighting"], defaults["neighbours"])
    chosen = trials.loc[trials["value"].idxmax()]
    assert (best["weighting"], best["neighbours"]) == (chosen["params_weighting"], chosen["params_neighbours"])


@pytest.mark.slow
def test_where_most_popular_wins_it_is_champion_and_recommends(
    shared_home: StateHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # given: a crowd with no tastes of its own, each member reading three items drawn by their popularity alone:
    # little for a personal model to learn from (precision@10, with defaults: most popular 0.088, EASE 0.076,
    # item-knn 0.065, BPR 0.053, ALS 0.001)
    rng = np.random.default_rng(1)
    appeal = 1.0 / np.arange(1, ITEMS + 1) ** 1.2
    rows = [
        {"user": f"U{member:04d}", "movie": f"F{item:04d}", "ts": 1_700_000_000 + member}
        for member in range(MEMBERS)
        for item in rng.choice(ITEMS, size=3, replace=False, p=appeal / appeal.sum())
    ]
    path = tmp_path_factory.mktemp("crowd") / "crowd.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    runner = CliRunner()
    mapping = ["--map", "member_id=user", "--map", "content_id=movie", "--map", "ts=ts", "--set", "action=view"]
    imported = runner.invoke(app, ["data", "import", "-d", "crowd", "-t", "engagements", "-i", str(path), *mapping])
    assert imported.exit_code == 0, imported.output
    # when
    split = ["--split", "random-per-item", "--budget-seconds", "0"]
    trained = runner.invoke(app, ["train", "content-recs", "-d", "crowd", *split, "--json"])
    # then: nothing learned beats the crowd's favourites, and they are champion
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.stdout[trained.stdout.index("{") :])
    assert (result["family"], result["promoted"]) == ("popular", True), result["choice"]
    assert all(result["metrics"]["precision"] >= rival["precision"] for rival in result["rivals"].values())
    # and `recommend` answers from it, each list the most popular items the member has not read
    out = tmp_path_factory.mktemp("crowd-recs") / "recs.csv"
    export = ["recommend", "-d", "crowd", "--kind", "content-recs", "--k", "3", "--out", str(out)]
    exported = runner.invoke(app, [*export, "--consent-recorded-elsewhere"])
    assert exported.exit_code == 0 and "content-recs popular v1" in exported.output, exported.output
    recs = pd.read_csv(out)
    assert set(recs["model"]) == {"popular v1"} and recs["member_id"].nunique() == MEMBERS
    read = pd.DataFrame(rows).groupby("user")["movie"].agg(set)
    assert not any(row.item_id in read[row.member_id] for row in recs.itertuples())


@pytest.mark.slow
def test_a_recommender_family_added_as_its_record_alone_is_tuned_judged_and_served(
    ratings: Dataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow

    from serving.models.families.recommenders import ITEM_FAMILIES, ITEM_KNN, ItemFamily

    # given: a new family, its record and nothing else: item neighbours by plain cosine, with their own defaults,
    # search space and first trial
    toy = ItemFamily(
        "cosine-knn",
        ITEM_KNN.factorize,
        {"weighting": "cosine", "neighbours": 50, "repeat_weight": 0.0},
        lambda trial: {"neighbours": trial.suggest_int("neighbours", 10, 200, log=True)},
        starts=({"neighbours": 100},),
        neighbours=True,
        offers=ITEM_KNN.offers,
    )
    monkeypatch.setitem(ITEM_FAMILIES, toy.name, toy)
    # when: the job trains the kind, the toy made the candidate (without promotion: the module's champion stays)
    settings = TrainSettings(split="random-per-item", trials=2, family=toy.name, promote=False)
    result = train(ratings, CONTENT_RECS, settings)
    # then: it was tuned (its first trial the one its record asks for) and judged beside every other family
    assert result.family == toy.name and result.params["neighbours"] in range(10, 201)
    trials = pd.read_csv(connect(ratings.home).download_artifacts(result.run_id, "optuna_trials.csv", str(tmp_path)))
    mine = trials[trials["family"] == toy.name]
    assert len(mine) == 2 and mine["params_neighbours"].iloc[0] == 100
    assert {"als", "bpr", "item-knn", "ease", "popular"} <= set(result.rivals)
    assert result.metrics["precision"] > result.rivals["popular"]["precision"]  # 0.160 against 0.083
    # and the registered model loads and recommends from its record, like any family's
    model = mlflow.pyfunc.load_model(f"models:/ratings.content-recs/{result.version}").unwrap_python_model().model
    lists = model.recommend(["U0000", "U0001"], k=5)
    assert model.family == toy.name and len(lists) == 10 and not lists["cold_start"].any()
    assert len(model.similar_items("F0000", k=3)) == 3
