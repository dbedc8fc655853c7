"""Evaluating recommenders: top-k metrics, the time-split and random per-item protocols, and the baselines.

A protocol yields a train matrix (members x items) and, per test member, the set of items they went on to
interact with. Every method recommends k items per test member from the train matrix only; "repeat" lists may
hold items the member already has, "new" lists may not (hits then are items new to the member).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, ItemItemRecommender

from features.errors import DataError
from features.interactions import Interactions
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot
from features.store import Dataset
from serving.models.families.factors import confidences, member_vectors
from serving.models.kinds import ModelKind
from serving.models.ranking import rank_items, single_threaded_blas

# What counts as a later interaction: a purchase for products; a read, like or share for content (any action
# where the data has none of those).
TEST_ACTIONS = ("read", "like", "share")


@dataclass
class Split:
    train: sp.csr_matrix  # members x items, weights
    users: np.ndarray  # row indices of the test members
    truth: list[set[int]]  # per test member, the item columns they interacted with later
    item_ids: np.ndarray

    @property
    def seen(self) -> list[set[int]]:
        return [set(self.train[u].indices) for u in self.users]


def top_k_metrics(
    recs: list[np.ndarray], truth: list[set[int]], seen: list[set[int]], k: int, catalogue: int
) -> dict[str, float]:
    """precision, recall, nDCG, MAP and new-to-member precision at k, and catalogue coverage."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision, recall, ndcg, ap, new = [], [], [], [], []
    for items, relevant, had in zip(recs, truth, seen, strict=True):
        hits = np.array([i in relevant for i in items[:k]], dtype=float)
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / len(relevant))
        ideal = discounts[: min(len(relevant), k)].sum()
        ndcg.append(float((hits * discounts[: len(hits)]).sum() / ideal))
        cumulative = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        ap.append(float((cumulative * hits).sum() / min(len(relevant), k)))
        new.append(sum(1 for i in items[:k] if i in relevant and i not in had) / k)
    covered = len(set(np.concatenate(recs).tolist())) if recs else 0
    return {
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "ndcg": float(np.mean(ndcg)),
        "map": float(np.mean(ap)),
        "new_precision": float(np.mean(new)),
        "coverage": covered / catalogue,
    }


def time_split(dataset: Dataset, kind: ModelKind, as_of: date, horizon_days: int) -> Split:
    """Train on an item kind's interactions before T; test on the members' interactions in the H days from T.

    Test members are those in the train matrix who interacted again in the horizon with an item it knows.
    """
    items = kind.items
    assert items is not None, f"{kind.name} is not an item kind"
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon_days))
    matrix: Interactions = Snapshot(dataset, as_of).interactions(items.matrix)
    start, end = pd.Timestamp(as_of), pd.Timestamp(as_of + timedelta(days=horizon_days))
    if items.events == "orders":
        events = dataset.read("orders", ["member_id", "ts", items.id_column, "is_return"])
        events = events[~events["is_return"].fillna(False).astype(bool)]
    else:
        events = dataset.read("engagements", ["member_id", "ts", "action", items.id_column])
        strong = events["action"].isin(TEST_ACTIONS)
        # A plain interactions file (every row a "view") has no reads or likes: then any action counts.
        events = events[strong] if strong.any() else events
    events = events.rename(columns={items.id_column: "item_id"})
    events = events[(events["ts"] >= start) & (events["ts"] < end)].dropna(subset=["member_id", "item_id"])
    rows = pd.Series(np.arange(len(matrix.member_ids)), index=matrix.member_ids)
    cols = pd.Series(np.arange(len(matrix.item_ids)), index=matrix.item_ids)
    events = events[events["member_id"].isin(rows.index) & events["item_id"].isin(cols.index)]
    pairs = pd.DataFrame({"u": rows[events["member_id"]].to_numpy(), "i": cols[events["item_id"]].to_numpy()})
    truth = pairs.drop_duplicates().groupby("u")["i"].agg(set)
    return Split(matrix.matrix.tocsr(), truth.index.to_numpy(), list(truth), matrix.item_ids)


def random_split(interactions: Interactions, test_share: float = 0.2, seed: int = 0) -> Split:
    """For data without meaningful time: hold out a share of each item's members, at random, per item.

    Stratifying by item keeps every item in training, so no method is judged on items it never saw.
    """
    rng = np.random.default_rng(seed)
    coo = interactions.matrix.tocoo()
    order = np.lexsort((rng.random(coo.nnz), coo.col))  # items together, shuffled within each item
    col = coo.col[order]
    rank_in_item = np.arange(len(col)) - np.searchsorted(col, col, side="left")
    per_item = np.bincount(col, minlength=interactions.matrix.shape[1])[col]
    held = rank_in_item < np.floor(per_item * test_share)  # items with < 1/test_share members keep them all
    test = order[held]
    keep = np.ones(coo.nnz, dtype=bool)
    keep[test] = False
    train = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=interactions.matrix.shape)
    truth = pd.DataFrame({"u": coo.row[test], "i": coo.col[test]}).groupby("u")["i"].agg(set)
    users = truth.index.to_numpy()
    has_history = np.diff(train.indptr)[users] > 0
    return Split(
        train, users[has_history], [t for t, h in zip(truth, has_history, strict=True) if h], interactions.item_ids
    )


Recommend = Callable[[Split, int, bool], list[np.ndarray]]


ALS_DEFAULTS: dict[str, Any] = {
    "factors": 64,
    "regularization": 0.05,
    "alpha": 0.3,
    "iterations": 20,
    "bm25_k1": 100.0,
    "bm25_b": 0.8,
    # The boost of a member's own items in lists that may repeat them (serving.models.ranking.preference_scores).
    "repeat_weight": 4.0,
}


def fit_als(train: sp.csr_matrix, params: dict[str, Any] | None = None, seed: int = 0) -> AlternatingLeastSquares:
    """Implicit ALS on the BM25-weighted confidences of the raw interaction matrix."""
    p = {**ALS_DEFAULTS, **(params or {})}
    weighted = confidences(train, p)
    # implicit parallelises itself; OpenBLAS threads on top of that only contend for the same cores.
    with single_threaded_blas():
        model = AlternatingLeastSquares(
            factors=int(p["factors"]),
            regularization=float(p["regularization"]),
            alpha=float(p["alpha"]),
            iterations=int(p["iterations"]),
            random_state=seed,
        )
        model.fit(weighted, show_progress=False)
    return model


def als_factors(train: sp.csr_matrix, params: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    model = fit_als(train, params, seed)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def popularity_factors(train: sp.csr_matrix, params: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Popularity as a rank-one factor model: every member's vector is 1, each item's factor the share of the
    most popular item's members who have it (so scores lie in [0, 1] and one boost fits every dataset)."""
    members_per_item = np.diff(train.tocsc().indptr).astype(np.float32)
    top = max(float(members_per_item.max(initial=0.0)), 1.0)
    return np.ones((train.shape[0], 1), dtype=np.float32), (members_per_item / top)[:, None]


def bpr_factors(train: sp.csr_matrix, params: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bayesian personalised ranking (implicit's): factors learned to rank each member's items above items they do
    not have, from which items they have (the counts are not used). One thread: implicit's parallel updates race
    (Hogwild), and the same seed must give the same model (it is also faster on small catalogues). implicit appends
    a bias column to the item factors (and a column of ones to the members'), so scores include it."""
    model = BayesianPersonalizedRanking(
        factors=int(params["factors"]),
        learning_rate=float(params["learning_rate"]),
        regularization=float(params["regularization"]),
        iterations=int(params["iterations"]),
        random_state=seed,
        num_threads=1,
    )
    have = (train > 0).astype(np.float32).tocsr()
    with single_threaded_blas():
        model.fit(have, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def neighbour_factors(train: sp.csr_matrix, params: dict[str, Any], seed: int) -> tuple[None, sp.csr_matrix]:
    """Item-item neighbours as factors: no member factors (a member's vector is their own row of the train matrix)
    and the transposed top-k similarity matrix, so scores = row x similarities. The similarity is implicit's: BM25
    (co-occurrences weighted down for long member rows and common items, as in text retrieval) or plain cosine
    of the raw counts."""
    model: ItemItemRecommender = (
        BM25Recommender(K=int(params["neighbours"]), K1=float(params["bm25_k1"]), B=float(params["bm25_b"]))
        if params["weighting"] == "bm25"
        else CosineRecommender(K=int(params["neighbours"]))
    )
    with warnings.catch_warnings():
        # implicit's own neighbour fit hands itself a COO matrix and then warns about it.
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(train, show_progress=False)
    return None, sp.csr_matrix(model.similarity.T)


# EASE's item weights are a dense items x items matrix from the inverse of another: memory grows with the square
# of the catalogue and time with its cube. At 8,000 items that is 256 MB of float32 weights (512 MB of float64
# while fitting) and a 35 s fit on two cores (measured: 20,000 members, 0.5% density); past it EASE is not judged.
EASE_MAX_ITEMS = 8_000
# The most items each family can be fitted on, where there is a limit.
ITEM_LIMITS: dict[str, int] = {"ease": EASE_MAX_ITEMS}


def ease_factors(train: sp.csr_matrix, params: dict[str, Any], seed: int) -> tuple[None, np.ndarray]:
    """EASE (Steck, 2019), a closed-form item-item model among the strongest on such data: each item's weight for
    every other, from the inverse of the regularised item co-occurrence matrix, with no item predicting itself.
    No member factors (a member's vector is whether they have each item); the item factors are the weights'
    transpose."""
    n_items = train.shape[1]
    if n_items > EASE_MAX_ITEMS:
        raise DataError(f"ease: {n_items:,} items is more than the {EASE_MAX_ITEMS:,} it is fitted on")
    have = (train > 0).astype(np.float64)
    gram = (have.T @ have).toarray()
    gram[np.diag_indices_from(gram)] += float(params["l2"])
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    return None, np.ascontiguousarray(weights.T, dtype=np.float32)


# (train matrix, params, seed) -> (member factors, or None where members are their own rows; item factors)
Factorize = Callable[[sp.csr_matrix, dict[str, Any], int], tuple[np.ndarray | None, Any]]

# How each item family gets its member and item factors from a train matrix, and its default parameters.
FACTORIZERS: dict[str, Factorize] = {
    "als": als_factors,
    "bpr": bpr_factors,
    "item-knn": neighbour_factors,
    "ease": ease_factors,
    "popular": popularity_factors,
    "buy-again": popularity_factors,
}
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "als": ALS_DEFAULTS,
    # implicit's own defaults for BPR, with ALS's rank and repeat boost.
    "bpr": {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100, "repeat_weight": 4.0},
    # implicit's BM25Recommender defaults (20 neighbours, K1 1.2, B 0.75); "cosine" is the other weighting.
    "item-knn": {"weighting": "bm25", "neighbours": 20, "bm25_k1": 1.2, "bm25_b": 0.75, "repeat_weight": 0.0},
    # The repeat boost ALS uses: on a validation window of Online Retail (June 2011, before any test window)
    # it took EASE's repeat lists from 0.308 to 0.357 precision@10 (2: 0.349, 8: 0.358).
    "ease": {"l2": 500.0, "repeat_weight": 4.0},
    "popular": {"repeat_weight": 0.0},
    # The member's own items first, by times bought, then by popularity: a boost of 1,000 spreads of the
    # popularity scores outweighs any popularity (scores lie in [0, 1]).
    "buy-again": {"repeat_weight": 1000.0},
}


@dataclass
class FactorMethod:
    """An item family ranked as the served recommender ranks: its factors, plus the repeat boost where repeats are
    allowed. Remembers how long its fit took and how long the last ranking of the test members took."""

    family: str
    params: dict[str, Any]
    seed: int = 0
    fit_seconds: float = 0.0
    rank_seconds: float = 0.0
    # The last split's factors: judging both kinds of list on one split fits once.
    _fitted: tuple[sp.csr_matrix, tuple[np.ndarray | None, Any]] | None = None

    def __call__(self, split: Split, k: int, exclude_seen: bool) -> list[np.ndarray]:
        if self._fitted is None or self._fitted[0] is not split.train:
            started = time.perf_counter()
            self._fitted = split.train, FACTORIZERS[self.family](split.train, self.params, self.seed)
            self.fit_seconds = time.perf_counter() - started
        users, items = self._fitted[1]
        started = time.perf_counter()
        own = split.train[split.users]
        with single_threaded_blas():
            ids, _ = rank_items(
                member_vectors(self.family, own, None if users is None else users[split.users]),
                items,
                own,
                k,
                exclude_seen=exclude_seen,
                repeat_weight=float(self.params.get("repeat_weight", 0.0)),
            )
        self.rank_seconds = time.perf_counter() - started
        return [row[row >= 0] for row in ids]


def factor_method(family: str, params: dict[str, Any] | None = None, seed: int = 0) -> FactorMethod:
    """The family with its defaults, overridden by `params`, as a split's recommender."""
    return FactorMethod(family, {**FAMILY_DEFAULTS[family], **(params or {})}, seed)


def als(params: dict[str, Any] | None = None, seed: int = 0) -> Recommend:
    """ALS ranked as the served recommender ranks: factors, plus the repeat boost where repeats are allowed."""
    return factor_method("als", params, seed)


# The items most members have, the same for everyone (minus what each member has, if asked).
popular: Recommend = factor_method("popular")


def item_cosine(neighbours: int = 100) -> Recommend:
    """Item-item cosine similarity over the raw matrix (implicit's nearest-neighbour model), as it serves."""
    return factor_method("item-knn", {"weighting": "cosine", "neighbours": neighbours})


def compare(
    split: Split, methods: dict[str, Recommend], k: int = 10, modes: tuple[bool, ...] = (False, True)
) -> list[dict[str, Any]]:
    """One row per (method, mode) with every metric and the seconds it took: fitting and recommending in all, and
    the fit alone where the method says (`fit_seconds`, a FactorMethod)."""
    rows = []
    seen = split.seen
    for name, method in methods.items():
        for exclude_seen in modes:
            started = time.perf_counter()
            recs = method(split, k, exclude_seen)
            seconds = time.perf_counter() - started
            fit = method.fit_seconds if isinstance(method, FactorMethod) else None
            if isinstance(method, FactorMethod):  # one fit serves both kinds of list: each row counts it once
                seconds = method.fit_seconds + method.rank_seconds
            metrics = top_k_metrics(recs, split.truth, seen, k, split.train.shape[1])
            rows.append(
                {
                    "method": name,
                    "mode": "new only" if exclude_seen else "repeat allowed",
                    "members": len(split.users),
                    **metrics,
                    "seconds": round(seconds, 2),
                    **({} if fit is None else {"fit_seconds": round(fit, 2)}),
                }
            )
    return rows
