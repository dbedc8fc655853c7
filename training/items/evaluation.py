"""Evaluating recommenders: top-k metrics, the time-split and random per-item protocols, and the baselines.

A protocol yields a train matrix (members x items) and, per test member, the set of items they went on to
interact with. Every method recommends k items per test member from the train matrix only; "repeat" lists may
hold items the member already has, "new" lists may not (hits then are items new to the member).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.common.sampling import drawn
from features.dataset.store import Dataset
from features.pipelines.interactions import Interactions
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from serving.models.families.recommenders import item_family, member_vectors
from serving.models.kinds import ModelKind
from serving.models.ranking import rank_items, single_threaded_blas
from training.metrics import top_k_metrics


@dataclass
class Split:
    train: sp.csr_matrix  # members x items, weights
    users: np.ndarray  # row indices of the test members
    truth: list[set[int]]  # per test member, the item columns they interacted with later
    item_ids: np.ndarray

    @cached_property
    def seen(self) -> list[set[int]]:
        """Per test member, the item columns of their train row (built once: every comparison reads it)."""
        own = self.train[self.users]
        return [set(row.tolist()) for row in np.split(own.indices, own.indptr[1:-1])]


def time_split(dataset: Dataset, kind: ModelKind, as_of: date, horizon_days: int, members: int | None = None) -> Split:
    """Train on an item kind's interactions before T; test on the members' interactions in the H days from T.

    Test members are those in the train matrix who interacted again in the horizon with an item it knows. With
    `members`, the train matrix is that of the dataset's fixed sample of that many members, where it has more
    (features/pipelines/snapshots.py: member_sample): a smaller community drawn at random from this one.
    """
    items = kind.items
    assert items is not None, f"{kind.name} is not an item kind"
    built = build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon_days, sample_members=members))
    matrix: Interactions = Snapshot(dataset, as_of, built.sample).interactions(items.matrix)
    start, end = pd.Timestamp(as_of), pd.Timestamp(as_of + timedelta(days=horizon_days))
    # Only the horizon's events are read (the table's statistics skip the rest): never the whole event table.
    events = taken(dataset, kind, [("ts", ">=", start), ("ts", "<", end)])
    rows = pd.Series(np.arange(len(matrix.member_ids)), index=matrix.member_ids)
    cols = pd.Series(np.arange(len(matrix.item_ids)), index=matrix.item_ids)
    events = events[events["member_id"].isin(rows.index) & events["item_id"].isin(cols.index)]
    pairs = pd.DataFrame({"u": rows[events["member_id"]].to_numpy(), "i": cols[events["item_id"]].to_numpy()})
    truth = pairs.drop_duplicates().groupby("u")["i"].agg(set)
    return Split(matrix.matrix.tocsr(), truth.index.to_numpy(), list(truth), matrix.item_ids)


def taken(dataset: Dataset, kind: ModelKind, window: list[tuple[str, str, Any]]) -> pd.DataFrame:
    """Members taking the kind's items within `window` (read filters on ts): member_id, ts, item_id. What counts
    is a purchase (orders, returns left out), or the source's test actions (engagements: for content a read, like
    or share; any action where the data has none of those)."""
    items = kind.items
    assert items is not None
    if items.events == "orders":
        events = dataset.read("orders", ["member_id", "ts", items.id_column, "is_return"], filters=window)
        events = events[~events["is_return"].fillna(False).astype(bool)]
    else:
        events = dataset.read(items.events, ["member_id", "ts", "action", items.id_column], filters=window)
        strong = events["action"].isin(items.test_actions)
        # A plain interactions file (every row a "view") has no reads or likes: then any action counts.
        events = events[strong] if strong.any() else events
    events = events.rename(columns={items.id_column: "item_id"}).dropna(subset=["member_id", "item_id"])
    return events.astype({"member_id": str, "item_id": str})


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


# The members a recommender is tuned and judged on at most, on a time split: every family is fitted on the histories of
# the dataset's fixed sample of this many members (COMMUNITY_ML_RECOMMENDER_MEMBERS) and judged on those of them who
# came back (a community of 100,000 drawn at random from the larger one). Fitting is what grows with members: at 500,000
# members one BPR fit took 234 s and one ALS fit 43 s, each fitted once to tune and once to judge. The served model is
# fitted on every member. Measured at 500,000 members: experiments/results/scale.md.
#
# The test members a recommender is judged on at most (COMMUNITY_ML_JUDGED_MEMBERS): ranking them is what judging costs
# (every family, both kinds of list, every tuning trial), while a member's precision@10 lies in [0, 1], so the mean over
# 25,000 has a standard error of at most 0.5 / sqrt(25,000) = 0.003 (a bound, not a measurement). Online Retail (about
# 2,000 test members) and the rating benchmarks are judged whole.


def of_members(split: Split, members: int | None, seed: int = 0) -> Split:
    """The split with at most `members` of its test members, drawn at random (the same for the same seed)."""
    chosen = None if members is None else drawn(len(split.users), members, seed)
    if chosen is None:
        return split
    return Split(split.train, split.users[chosen], [split.truth[i] for i in chosen], split.item_ids)


Recommend = Callable[[Split, int, bool], list[np.ndarray]]


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

    @property
    def fitted_on(self) -> sp.csr_matrix | None:
        """The train matrix of the last fit (None before any)."""
        return None if self._fitted is None else self._fitted[0]

    @property
    def fitted_factors(self) -> tuple[np.ndarray | None, Any]:
        assert self._fitted is not None
        return self._fitted[1]

    def __call__(self, split: Split, k: int, exclude_seen: bool) -> list[np.ndarray]:
        if self._fitted is None or self._fitted[0] is not split.train:
            started = time.perf_counter()
            self._fitted = split.train, item_family(self.family).factorize(split.train, self.params, self.seed)
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
    return FactorMethod(family, {**item_family(family).defaults, **(params or {})}, seed)


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
