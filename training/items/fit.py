"""Fitting recommenders (item kinds): each item family's factors on a snapshot's interaction matrix (ALS, BPR,
item neighbours, EASE, or the popularity baselines), with what the served model needs beside them (item
attributes for the rules, popularity by segment for cold start), and the families that may serve a kind."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.dataset.store import Dataset
from features.pipelines.interactions import ITEM_SOURCES, catalogue
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from serving.models.families.factors import FactorRecommender, RecsSpec
from serving.models.families.new_items import AttributeSpace, NewItems, item_tokens
from serving.models.families.recommenders import ITEM_FAMILIES, item_family
from serving.models.kinds import ModelKind

RULE_COLUMNS = ("active", "published_at")  # beside the category: what the business rules read per item


def item_attributes(items: pd.DataFrame, kind: ModelKind) -> pd.DataFrame:
    """What the business rules need per item (of the kind's catalogue, `catalogue`): active, published_at and the
    category (products), content type (contents)."""
    assert kind.items is not None
    return items[[c for c in (*RULE_COLUMNS, kind.items.category_column) if c in items]]


def new_items(
    items: pd.DataFrame, item_ids: np.ndarray, item_factors: Any, popularity: np.ndarray, method: str, column: str
) -> NewItems:
    """The catalogue's items with no interactions, placed among the warm ones (`item_ids`) by their attributes
    in an attribute space learned on the whole catalogue."""
    warm_ids = pd.Index(item_ids.astype(str))
    space = AttributeSpace.fit(item_tokens(items))
    warm = space.encode(item_tokens(items.reindex(warm_ids)))
    placed = NewItems(space, warm, item_factors, popularity, method, column)
    placed.add(items[~items.index.isin(warm_ids)])
    return placed


def member_segments(dataset: Dataset) -> dict[str, str]:
    """Each member's cold-start segment: their persona where known, else the first group they joined."""
    segments: dict[str, str] = {}
    if dataset.has("engagements"):
        # Only the joins are read (filtered as the table is read): never the whole engagement table.
        joins = dataset.read("engagements", ["member_id", "ts", "group_id"], filters=[("action", "==", "join_group")])
        joins = joins[joins["group_id"].notna()].sort_values("ts", kind="stable")
        segments |= {
            m: f"group:{g}"
            for m, g in joins.drop_duplicates("member_id")[["member_id", "group_id"]].itertuples(index=False)
        }
    if dataset.has("members"):
        personas = dataset.read("members", ["member_id", "persona"]).dropna()
        segments |= {m: f"persona:{p}" for m, p in personas.itertuples(index=False)}
    return segments


def segment_popularity(
    matrix: sp.csr_matrix, member_ids: np.ndarray, segments: dict[str, str]
) -> dict[str, np.ndarray]:
    """Members per item within each segment that has at least 20 members with history."""
    labels = pd.Series([segments.get(str(m)) for m in member_ids])
    out = {}
    for segment, rows in labels.dropna().groupby(labels.dropna()).groups.items():
        if len(rows) >= 20:
            out[str(segment)] = np.asarray((matrix[np.asarray(rows)] > 0).sum(axis=0)).ravel().astype(np.float32)
    return out


def fit_recommender(
    dataset: Dataset,
    kind: ModelKind,
    as_of: date,
    params: dict[str, Any],
    seed: int,
    family: str = "als",
    new_item_method: str = "transfer",
) -> FactorRecommender:
    """The family's factors on everything before `as_of`, with the popularity order for cold start, the items'
    attributes, and the items with no interactions placed among them (ranked by `new_item_method`)."""
    assert kind.items is not None
    build_snapshot(dataset, SnapshotSettings(as_of=as_of))
    interactions = Snapshot(dataset, as_of).interactions(kind.items.matrix)
    matrix = interactions.matrix.tocsr()
    record = item_family(family)
    p = {**record.defaults, **params}
    user_factors, item_factors = record.factorize(matrix, p, seed)
    segments = member_segments(dataset)
    with_history = set(interactions.member_ids.tolist())
    items = catalogue(dataset, ITEM_SOURCES[kind.items.matrix])
    popularity = np.diff(matrix.tocsc().indptr).astype(np.float32)
    return FactorRecommender(
        RecsSpec(
            family=family,
            kind=kind.name,
            params=p,
            exclude_seen_default=kind.exclude_seen,
            category_column=kind.items.category_column,
        ),
        # Neighbour families score a member from their own row of the matrix: no member factors to keep.
        np.zeros((0, 0), dtype=np.float32) if user_factors is None else user_factors,
        item_factors,
        matrix,
        interactions.member_ids,
        interactions.item_ids,
        popularity,
        item_attributes(items, kind),
        segment_popularity(matrix, interactions.member_ids, segments),
        # Only members without history need a segment: everyone else is served from their own factors.
        {m: s for m, s in segments.items() if m not in with_history},
        new_items(items, interactions.item_ids, item_factors, popularity, new_item_method, kind.items.category_column),
    )


def item_families(kind: ModelKind) -> list[str]:
    """Every family that can serve an item kind: its learned families first, then the other records in the
    registry's order, but for those only for lists that may repeat the member's own items where lists hold only
    new items (buy again: there it is most popular)."""
    others = [
        name
        for name, family in ITEM_FAMILIES.items()
        if name not in kind.families and not (kind.exclude_seen and family.repeats_only)
    ]
    return [*kind.families, *others]
