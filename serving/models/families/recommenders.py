"""The recommender families: one record each (`ItemFamily`), all a family is, in one registry (`ITEM_FAMILIES`).

A record holds how the family is fitted (its factorizer: a train matrix to member and item factors), its default
parameters, Optuna's search space and first trials, the most items it can be fitted on, whether it is a baseline
(a learned family must beat it), and how its fitted factors serve (whether a member's vector is their own row,
what it offers: similar items, folding in a member's newest interactions). The served model (factors.py),
training's evaluation and tuning (training/items/evaluation.py, training/items/fit.py) and the job all read the record;
adding a family is its record and its factorizer, which is called with the record's defaults under any
parameters asked for. The algorithms are here rather than in training so
that the record is whole and the model that serves them can read it (implicit is a serving dependency already,
for fold-in).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, ItemItemRecommender, bm25_weight

from features.common.errors import DataError
from serving.models.ranking import single_threaded_blas

if TYPE_CHECKING:
    import optuna

SIMILAR_ITEMS, FOLD_IN = "similar items", "fold-in"


def confidences(interactions: sp.csr_matrix, als_params: dict[str, Any]) -> sp.csr_matrix:
    """The BM25-weighted confidences ALS is fitted on, from the raw interaction matrix."""
    weighted = bm25_weight(interactions, K1=float(als_params["bm25_k1"]), B=float(als_params["bm25_b"]))
    return weighted.tocsr().astype(np.float32)


class OutOfTime(Exception):
    """An iterative fit (ALS, BPR) stopped at the deadline `fit_deadline` set."""


_DEADLINE: ContextVar[float | None] = ContextVar("fit_deadline", default=None)


@contextmanager
def fit_deadline(deadline: float | None) -> Iterator[None]:
    """Within the block, an iterative fit stops with OutOfTime after the first iteration that ends past
    `deadline` (a `time.perf_counter()` reading): a tuning trial then costs no more than its share of the budget,
    even its first (at 500,000 members one BPR fit takes minutes)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _each_iteration(iteration: int, *_: Any) -> None:
    """implicit's per-iteration callback: where a deadline is set and passed, stop the fit."""
    deadline = _DEADLINE.get()
    if deadline is not None and time.perf_counter() > deadline:
        raise OutOfTime(f"stopped after iteration {iteration + 1}: past the deadline")


# (train matrix, params, seed) -> (member factors, or None where members are their own rows; item factors)
Factorize = Callable[[sp.csr_matrix, dict[str, Any], int], tuple[np.ndarray | None, Any]]


def als_factors(train: sp.csr_matrix, params: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Implicit ALS on the BM25-weighted confidences of the raw interaction matrix."""
    weighted = confidences(train, params)
    # implicit parallelises itself; OpenBLAS threads on top of that only contend for the same cores.
    with single_threaded_blas():
        model = AlternatingLeastSquares(
            factors=int(params["factors"]),
            regularization=float(params["regularization"]),
            alpha=float(params["alpha"]),
            iterations=int(params["iterations"]),
            random_state=seed,
        )
        model.fit(weighted, show_progress=False, callback=_each_iteration)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


# Fold-in's hook on a family whose member factors are solved from the member's row (ALS): given the served
# model's interactions, member and item factors and parameters, what turns a member's row (None: a new member) and
# their new interactions (a dense array over the items) into their vector.
MemberSolver = Callable[[int | None, np.ndarray], np.ndarray]
SolverFactory = Callable[[sp.csr_matrix, np.ndarray, np.ndarray, dict[str, Any]], MemberSolver]


def als_solver(
    interactions: sp.csr_matrix, user_factors: np.ndarray, item_factors: np.ndarray, params: dict[str, Any]
) -> MemberSolver:
    """ALS's fold-in: the member's factors solved again (implicit's recalculate) from the BM25 confidences the
    factors were fitted on plus their new interactions. The model and the confidences are built once, here."""
    weighted = confidences(interactions, params)
    with single_threaded_blas():
        model = AlternatingLeastSquares(
            factors=item_factors.shape[1], regularization=float(params["regularization"]), alpha=float(params["alpha"])
        )
    model.user_factors, model.item_factors = user_factors, item_factors

    def solve(row: int | None, added: np.ndarray) -> np.ndarray:
        own = np.zeros(weighted.shape[1], dtype=np.float32) if row is None else weighted[row].toarray().ravel()
        with single_threaded_blas():
            return model.recalculate_user(0, sp.csr_matrix((own.astype(np.float32) + added).reshape(1, -1))).reshape(
                1, -1
            )

    return solve


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
        model.fit(have, show_progress=False, callback=_each_iteration)
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


def suggest_als(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 256, log=True),
        "regularization": trial.suggest_float("regularization", 1e-3, 1.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.1, 10.0, log=True),
        "iterations": trial.suggest_int("iterations", 10, 40),
        "bm25_k1": trial.suggest_float("bm25_k1", 1.0, 1000.0, log=True),
        "bm25_b": trial.suggest_float("bm25_b", 0.0, 1.0),
    }


def suggest_bpr(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 256, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
        "iterations": trial.suggest_int("iterations", 30, 300, log=True),
    }


def suggest_item_knn(trial: optuna.Trial) -> dict[str, Any]:
    params: dict[str, Any] = {
        "weighting": trial.suggest_categorical("weighting", ["bm25", "cosine"]),
        "neighbours": trial.suggest_int("neighbours", 5, 400, log=True),
    }
    if params["weighting"] == "bm25":
        params["bm25_k1"] = trial.suggest_float("bm25_k1", 0.1, 100.0, log=True)
        params["bm25_b"] = trial.suggest_float("bm25_b", 0.0, 1.0)
    return params


def suggest_ease(trial: optuna.Trial) -> dict[str, Any]:
    return {"l2": trial.suggest_float("l2", 1.0, 1e5, log=True)}


@dataclass(frozen=True)
class ItemFamily:
    """Everything about one recommender family."""

    name: str
    factorize: Factorize
    defaults: dict[str, Any]
    search: Callable[[optuna.Trial], dict[str, Any]] | None = None  # what Optuna searches (None: nothing to tune)
    starts: tuple[dict[str, Any], ...] = ()  # first trials over the defaults, before TPE's own
    baseline: bool = False  # a learned family must beat it on every gate metric to serve instead
    repeats_only: bool = False  # only for lists that may repeat the member's own items
    neighbours: bool = False  # a member's vector is their own interaction row: no member factors are kept
    item_rows: bool = False  # ... and only whether they have each item (EASE)
    offers: frozenset[str] = field(default_factory=frozenset)  # SIMILAR_ITEMS, FOLD_IN
    item_limit: int | None = None  # the most items it can be fitted on
    # Fold-in: how a member's vector is solved again with new interactions (None: it is their own row, or 1).
    solver: SolverFactory | None = None

    @property
    def tuned(self) -> bool:
        return self.search is not None


ALS = ItemFamily(
    "als",
    als_factors,
    {
        "factors": 64,
        "regularization": 0.05,
        "alpha": 0.3,
        "iterations": 20,
        "bm25_k1": 100.0,
        "bm25_b": 0.8,
        # The boost of a member's own items in lists that may repeat them (serving.models.ranking.preference_scores).
        "repeat_weight": 4.0,
    },
    suggest_als,
    # The rank first: 16 factors suit the synthetic community's few personas, 64 Online Retail's wide catalogue.
    starts=tuple({"factors": f} for f in (64, 16, 32, 128)),
    offers=frozenset({SIMILAR_ITEMS, FOLD_IN}),
    solver=als_solver,
)
BPR = ItemFamily(
    "bpr",
    bpr_factors,
    # implicit's own defaults for BPR, with ALS's rank and repeat boost.
    {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100, "repeat_weight": 4.0},
    suggest_bpr,
    starts=tuple({"factors": f} for f in (64, 16, 128)),
    offers=frozenset({SIMILAR_ITEMS}),  # member factors come from training only
)
ITEM_KNN = ItemFamily(
    "item-knn",
    neighbour_factors,
    # implicit's BM25Recommender defaults (20 neighbours, K1 1.2, B 0.75); "cosine" is the other weighting.
    {"weighting": "bm25", "neighbours": 20, "bm25_k1": 1.2, "bm25_b": 0.75, "repeat_weight": 0.0},
    suggest_item_knn,
    starts=({}, {"weighting": "cosine", "neighbours": 100}, {"neighbours": 100}),
    neighbours=True,
    offers=frozenset({SIMILAR_ITEMS, FOLD_IN}),
)
EASE = ItemFamily(
    "ease",
    ease_factors,
    # The repeat boost ALS uses: on a validation window of Online Retail (June 2011, before any test window)
    # it took EASE's repeat lists from 0.308 to 0.357 precision@10 (2: 0.349, 8: 0.358).
    {"l2": 500.0, "repeat_weight": 4.0},
    suggest_ease,
    starts=tuple({"l2": v} for v in (500.0, 50.0, 5000.0)),
    neighbours=True,
    item_rows=True,
    offers=frozenset({SIMILAR_ITEMS, FOLD_IN}),
    item_limit=EASE_MAX_ITEMS,
)
POPULAR = ItemFamily("popular", popularity_factors, {"repeat_weight": 0.0}, baseline=True, offers=frozenset({FOLD_IN}))
BUY_AGAIN = ItemFamily(
    "buy-again",
    popularity_factors,
    # The member's own items first, by times bought, then by popularity: a boost of 1,000 spreads of the
    # popularity scores outweighs any popularity (scores lie in [0, 1]).
    {"repeat_weight": 1000.0},
    baseline=True,
    repeats_only=True,  # where lists hold only items new to the member, buy again is most popular
    offers=frozenset({FOLD_IN}),
)

# Every recommender family by name, the learned ones first; an item kind is judged on all that suit its lists.
ITEM_FAMILIES: dict[str, ItemFamily] = {f.name: f for f in (ALS, BPR, ITEM_KNN, EASE, POPULAR, BUY_AGAIN)}


def item_family(name: str) -> ItemFamily:
    """The family's record; a clear error for a name no record has."""
    if name not in ITEM_FAMILIES:
        raise DataError(f"unknown recommender family {name!r}; the families are {', '.join(ITEM_FAMILIES)}")
    return ITEM_FAMILIES[name]


def member_vectors(family: str, own: sp.csr_matrix, factors: np.ndarray | None) -> np.ndarray | sp.csr_matrix:
    """What a family's ranking multiplies the item factors by, for these members: their factors, or, for the
    neighbour families, their own interaction rows (EASE: whether they have each item). Training's evaluation and
    the served model both take it from here."""
    record = item_family(family)
    if not record.neighbours:
        assert factors is not None
        return factors
    return (own > 0).astype(np.float32) if record.item_rows else own
