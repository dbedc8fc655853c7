"""Judging recommendations of items no one had touched: the new-item protocol and its peers.

The protocol (as cold-start papers run it): train on every interaction before T; the candidates are the items first
taken in the H days from T by at least `min_takers` members (unknown to the training matrix); each test member (one
with history before T who took a candidate) gets the candidates ranked; hits are the candidates they took. Every
method ranks the same candidates for the same members:
- peers that read attributes or dates only: random, newest first, attribute popularity ("reach": the candidates'
  expected members from their warm neighbours), the member's own attribute affinity;
- each family's transfer (serving/models/families/new_items.py): its factors fitted on the training matrix, the
  candidates placed among its warm items by their attributes.
Training judges each family's transfer so (training/items/trainer.py) and keeps a peer for new items where the
transfer does not beat it; `experiments/bench_new_items.py` runs the same protocol on Online Retail and the synthetic
community.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.dataset.store import Dataset
from features.pipelines.interactions import ITEM_SOURCES, catalogue
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from serving.models.families.new_items import (
    NEIGHBOURS,
    AttributeSpace,
    item_tokens,
    member_profiles,
    neighbour_weights,
    transfer,
)
from serving.models.families.recommenders import member_vectors
from serving.models.kinds import ModelKind
from serving.models.ranking import single_threaded_blas
from training.items.evaluation import taken
from training.metrics import top_k_metrics

MIN_TAKERS = 3  # a candidate was taken by at least this many members in the window (the Online Retail rule)
PEERS = ("random", "newest", "reach", "affinity")


@dataclass
class NewItemSplit:
    """Training before T, and the candidates first taken in [T, T+H)."""

    train: sp.csr_matrix  # members x warm items, before T
    train_member_ids: np.ndarray  # the members behind the training matrix's rows
    warm_ids: np.ndarray
    users: np.ndarray  # rows of the test members
    truth: list[set[int]]  # per test member, the candidates (indices into `candidate_ids`) they took
    candidate_ids: np.ndarray
    items: pd.DataFrame  # attributes of warm items and candidates, by item id
    as_of: date


def new_item_split(
    dataset: Dataset,
    kind: ModelKind,
    as_of: date,
    horizon_days: int,
    min_takers: int = MIN_TAKERS,
    members: int | None = None,
) -> NewItemSplit:
    items = kind.items
    assert items is not None, f"{kind.name} is not an item kind"
    built = build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon_days, sample_members=members))
    matrix = Snapshot(dataset, as_of, built.sample).interactions(items.matrix)
    start, end = pd.Timestamp(as_of), pd.Timestamp(as_of + timedelta(days=horizon_days))
    events = taken(dataset, kind, [("ts", ">=", start), ("ts", "<", end)])
    known = set(matrix.item_ids.tolist())
    before = taken(dataset, kind, [("ts", "<", start)])["item_id"].unique()  # taken before T by anyone
    fresh = events[~events["item_id"].isin(known) & ~events["item_id"].isin(before)]
    takers = fresh.groupby("item_id")["member_id"].nunique()
    candidate_ids = np.sort(takers[takers >= min_takers].index.to_numpy().astype(str))
    rows = pd.Series(np.arange(len(matrix.member_ids)), index=matrix.member_ids.astype(str))
    cols = pd.Series(np.arange(len(candidate_ids)), index=candidate_ids)
    fresh = fresh[fresh["member_id"].isin(rows.index) & fresh["item_id"].isin(cols.index)]
    pairs = pd.DataFrame({"u": rows[fresh["member_id"]].to_numpy(), "i": cols[fresh["item_id"]].to_numpy()})
    truth = pairs.drop_duplicates().groupby("u")["i"].agg(set)
    attributes = catalogue(dataset, ITEM_SOURCES[items.matrix])
    first_taken = events.groupby("item_id")["ts"].min()
    wanted = pd.Index(np.concatenate([matrix.item_ids.astype(str), candidate_ids]))
    attributes = attributes.reindex(wanted)
    # Newest first needs a date: the item's published_at, or the day it was first taken where it has none.
    published = attributes["published_at"] if "published_at" in attributes else pd.Series(pd.NaT, index=wanted)
    attributes["published_at"] = published.fillna(first_taken.reindex(wanted))
    return NewItemSplit(
        matrix.matrix.tocsr(),
        matrix.member_ids.astype(str),
        matrix.item_ids.astype(str),
        truth.index.to_numpy(),
        list(truth),
        candidate_ids,
        attributes,
        as_of,
    )


@dataclass
class Signals:
    """The three signals for a split's test members and candidates, under one family."""

    family: np.ndarray  # members x candidates: member vectors x transferred factors
    affinity: np.ndarray  # members x candidates
    reach: np.ndarray  # candidates: log expected members (attribute popularity)


def signals(split: NewItemSplit, family: str, fitted: tuple[np.ndarray | None, Any]) -> Signals:
    """What every method ranks from, with the family's factors fitted on the split's training matrix."""
    space = AttributeSpace.fit(item_tokens(split.items))
    warm = space.encode(item_tokens(split.items.loc[split.warm_ids]))
    new = space.encode(item_tokens(split.items.loc[split.candidate_ids]))
    weights = neighbour_weights(new, warm, NEIGHBOURS)
    users, item_factors = fitted
    own = split.train[split.users]
    vectors = member_vectors(family, own, None if users is None else users[split.users])
    with single_threaded_blas():
        scores = vectors @ transfer(weights, item_factors).T
    reach = transfer(weights, np.diff(split.train.tocsc().indptr).astype(np.float32)[:, None]).ravel()
    affinity = member_profiles(own, warm) @ new.T
    return Signals(
        np.asarray(scores, dtype=np.float32),
        np.asarray(affinity.toarray(), dtype=np.float32),
        np.log1p(reach).astype(np.float32),
    )


def peer_scores(split: NewItemSplit, found: Signals, peer: str, seed: int = 0) -> np.ndarray:
    """Members x candidates of an attribute-only or date-only peer."""
    shape = (len(split.users), len(split.candidate_ids))
    if peer == "random":
        return np.random.default_rng(seed).random(shape).astype(np.float32)
    if peer == "newest":
        published = pd.to_datetime(split.items.loc[split.candidate_ids, "published_at"]).astype("int64").to_numpy()
        return np.broadcast_to(published.astype(np.float64)[None, :], shape)
    if peer == "reach":
        return np.broadcast_to(found.reach[None, :], shape)
    return found.affinity + 1e-6 * found.reach[None, :]  # ties (members with no known attribute) by reach


def ranked_metrics(split: NewItemSplit, scores: np.ndarray, k: int = 10) -> dict[str, float]:
    """The top-k metrics of lists ranked by `scores` (members x candidates)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    seen: list[set[int]] = [set() for _ in split.users]
    return top_k_metrics(list(top), split.truth, seen, k, len(split.candidate_ids))


def judged(
    split: NewItemSplit, family: str, fitted: tuple[np.ndarray | None, Any], seed: int = 0, k: int = 10
) -> dict[str, dict[str, float]]:
    """The figures of every peer and of the family's transfer on the split's new items, the family fitted on its
    training matrix."""
    found = signals(split, family, fitted)
    figures = {peer: ranked_metrics(split, peer_scores(split, found, peer, seed), k) for peer in PEERS}
    return {**figures, "transfer": ranked_metrics(split, found.family, k)}


def chosen_method(figures: dict[str, dict[str, float]], metric: str = "ndcg") -> tuple[str, str]:
    """How the family's new-item lists are ordered, by the recommenders' point rule (the gate's for lists): its
    transfer where it beats every attribute peer on `metric`, else the best of them; and why, in words."""
    attribute_peers = {p: figures[p][metric] for p in ("affinity", "reach")}
    ours = figures["transfer"][metric]
    best, theirs = max(attribute_peers.items(), key=lambda item: item[1])
    if ours > theirs:
        return "transfer", f"new items by the family's transfer: {metric} {ours:.4f} beats {best}'s {theirs:.4f}"
    return best, f"new items by {best}: its {metric} {theirs:.4f} is not beaten by the family's transfer ({ours:.4f})"
