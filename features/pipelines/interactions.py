"""Member x item interaction matrices as of T, with id maps, one per declared item source (`ITEM_SOURCES`: products
from orders, contents from engagements). Snapshots build a matrix for every source, the online store folds new
events into every source's rows, and an item kind (serving/models/kinds.py) names the source it recommends from:
a new source of items is one entry here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from features.dataset.store import Dataset
from features.pipelines.point_in_time import Sources

# A share says more than a view: weights of content actions in the member x content matrix.
CONTENT_ACTION_WEIGHTS = {"view": 1.0, "read": 2.0, "like": 3.0, "comment": 4.0, "share": 5.0}


@dataclass
class Interactions:
    """A CSR matrix of members (rows) x items (columns) and the ids behind each row and column."""

    matrix: sp.csr_matrix
    member_ids: np.ndarray
    item_ids: np.ndarray

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(
            tmp, **csr_arrays(self.matrix), member_ids=self.member_ids.astype(str), item_ids=self.item_ids.astype(str)
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Interactions:
        with np.load(path, allow_pickle=False) as z:
            return cls(csr_from(z), z["member_ids"], z["item_ids"])


def csr_arrays(matrix: sp.csr_matrix, prefix: str = "") -> dict[str, np.ndarray]:
    """A CSR matrix as the named arrays `np.savez` stores (read back by `csr_from` with the same prefix)."""
    parts = {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr, "shape": np.array(matrix.shape)}
    return {f"{prefix}{name}": array for name, array in parts.items()}


def csr_from(arrays: Mapping[str, np.ndarray], prefix: str = "") -> sp.csr_matrix:
    parts = [arrays[f"{prefix}{name}"] for name in ("data", "indices", "indptr")]
    return sp.csr_matrix(tuple(parts), shape=tuple(arrays[f"{prefix}shape"]))


def product_interactions_expr(src: Sources, as_of: datetime) -> ir.Table:
    """How many orders of each member contained each product, before T (returns excluded)."""
    o = src.orders
    o = o.filter(
        o.ts < ibis.timestamp(as_of),
        o.member_id.notnull(),
        o.product_id.notnull(),
        ~o.is_return.fill_null(False),
    )
    visit = o.order_id.fill_null(o.ts.cast("string"))
    return o.group_by(["member_id", o.product_id.name("item_id")]).aggregate(weight=visit.nunique().cast("float32"))


def content_interactions_expr(src: Sources, as_of: datetime) -> ir.Table:
    """Sum of action weights of each member on each content item, before T."""
    assert src.engagements is not None
    e = src.engagements
    e = e.filter(e.ts < ibis.timestamp(as_of), e.content_id.notnull())
    weight = e.action.substitute(CONTENT_ACTION_WEIGHTS, else_=0.0)
    e = e.mutate(w=weight).filter(lambda t: t.w > 0)
    return e.group_by(["member_id", e.content_id.name("item_id")]).aggregate(weight=e.w.sum().cast("float32"))


def to_matrix(pairs: pa.Table) -> Interactions:
    """(member_id, item_id, weight) rows -> CSR with sorted id maps (the same input gives the same matrix).

    Ids are mapped to rows and columns in Arrow, without turning millions of strings into Python objects.
    """
    members = pc.unique(pairs["member_id"]).sort()
    items = pc.unique(pairs["item_id"]).sort()
    rows = pc.index_in(pairs["member_id"], value_set=members).to_numpy()
    cols = pc.index_in(pairs["item_id"], value_set=items).to_numpy()
    weights = pairs["weight"].to_numpy().astype(np.float32)
    matrix = sp.csr_matrix((weights, (rows, cols)), shape=(len(members), len(items)))
    matrix.sort_indices()
    return Interactions(matrix, np.asarray(members.to_pylist()), np.asarray(items.to_pylist()))


@dataclass(frozen=True)
class ItemSource:
    """One source of items members take: where its interactions come from and how they are weighed."""

    matrix: str  # the snapshot's member x item matrix, and the dataset table of the items' attributes
    id_column: str  # the item id in the events (and in the attributes table)
    events: str  # the table of members taking items: orders or engagements
    category_column: str  # the attribute a request's category filter matches
    pairs: Callable[[Sources, datetime], ir.Table]  # (member_id, item_id, weight) of every member and item before T
    # What counts as taking an item in a held-out window: these engagement actions (where the data has any),
    # or, for orders, every line that is not a return.
    test_actions: tuple[str, ...] = ()

    def available(self, src: Sources) -> bool:
        """Whether the dataset's tables hold this source's events."""
        table = getattr(src, self.events)
        return table is not None and self.id_column in table.columns


PRODUCT_ITEMS = ItemSource("products", "product_id", "orders", "category", product_interactions_expr)
CONTENT_ITEMS = ItemSource(
    "contents", "content_id", "engagements", "content_type", content_interactions_expr, ("read", "like", "share")
)
ITEM_SOURCES: dict[str, ItemSource] = {source.matrix: source for source in (PRODUCT_ITEMS, CONTENT_ITEMS)}


def catalogue(dataset: Dataset, source: ItemSource) -> pd.DataFrame:
    """A source's items and every attribute the table holds, by item_id (the last row of an id where the table
    holds it twice); empty where the dataset has no such table."""
    if not dataset.has(source.matrix):
        return pd.DataFrame(index=pd.Index([], name="item_id", dtype=str))
    frame = dataset.read(source.matrix).rename(columns={source.id_column: "item_id"})
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.drop_duplicates("item_id", keep="last").set_index("item_id")
