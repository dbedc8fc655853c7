"""The online feature store: each member's serving features, current as their events arrive.

- Base rows: the latest feature snapshot, laid out once beside it as memory-mapped arrays (`online/`). A lookup
  reads one row's pages, so a service's memory does not grow with the community, and start-up reads no rows.
- Fresh rows: a member with events since the snapshot has their row updated by the feature schema's online rules
  (features/pipelines/schema.py `Online`): counts and sums add the new events' own, recencies become 0, derived
  features are
  worked out again from the updated row, and what needs history (distinct products, gaps, channels) waits for the
  next build. The new events' aggregates are computed by the very expressions that build snapshots, in DuckDB.
  Fresh rows live in a `FreshStore` (records.py): in the process, or in Redis for several workers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import duckdb
import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from features.common.columns import LAYOUT_FILE, Columns, write_columns
from features.dataset.contract import ENGAGEMENTS, ORDERS
from features.dataset.store import made_once
from features.pipelines.interactions import ITEM_SOURCES, ItemSource
from features.pipelines.point_in_time import Sources, aggregated, derived_again, engagement_events, order_lines
from features.pipelines.schema import Feature, FeatureSchema, Needs, Online, View, feature

Row = dict[str, Any]  # feature name -> value (float, int, str, bool or None)
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class OnlineTable:
    """A snapshot's rows as memory-mapped arrays (features/common/columns.py): member ids (sorted, for binary
    search), numbers and text codes."""

    folder: Path  # where the layout lives: what is derived from it (the service's fitted context) goes beside it
    schema: FeatureSchema
    laid: Columns

    @classmethod
    def open(cls, snapshot_folder: Path, features: pd.DataFrame | None = None) -> OnlineTable:
        """The layout in `snapshot_folder/online`, written from the snapshot's features first when missing."""
        folder = snapshot_folder / "online"
        made_once(  # one worker writes it; the others wait and read it
            folder / LAYOUT_FILE,
            lambda: _write_layout(
                folder, features if features is not None else pd.read_parquet(snapshot_folder / "features.parquet")
            ),
            lock=snapshot_folder / ".online.lock",
        )
        laid = Columns.open(folder)
        return cls(folder, FeatureSchema(tuple(feature(c) for c in laid.layout["columns"])), laid)

    def __len__(self) -> int:
        return len(self.laid)

    @property
    def ids(self) -> np.ndarray:
        return self.laid.ids

    @property
    def columns(self) -> list[str]:
        return self.schema.columns

    def position(self, member_id: str) -> int | None:
        return self.laid.position(member_id)

    def row(self, member_id: str) -> Row | None:
        at = self.position(member_id)
        return None if at is None else self.row_at(at)

    def row_at(self, at: int) -> Row:
        """The row at a position `position` found: `typed`'s row, read by a plan worked out once per table."""
        numbers, codes = self.laid.numbers[at].tolist(), self.laid.codes[at].tolist()
        row: Row = {}
        for name, is_text, j, convert in self._plan:
            if is_text:
                code = codes[j]
                row[name] = None if code < 0 else convert[code]
            else:
                value = numbers[j]
                row[name] = None if value != value else convert(value)
        return row

    @cached_property
    def _plan(self) -> list[tuple[str, bool, int, Any]]:
        """Per column in the schema's order: its name, whether it is text, its place in `codes` or `numbers`, and
        how a stored value becomes the declared type (the vocabulary, for text)."""
        number_at = {c: j for j, c in enumerate(self.laid.number_columns)}
        text_at = {c: j for j, c in enumerate(self.laid.text_columns)}
        types = {"int64": int, "boolean": bool, "float64": float}
        plan: list[tuple[str, bool, int, Any]] = []
        for f in self.schema.features:
            if f.name in text_at:
                plan.append((f.name, True, text_at[f.name], [str(v) for v in self.laid.vocab[f.name]]))
            else:
                plan.append((f.name, False, number_at[f.name], types.get(f.dtype, str)))
        return plan


def typed(schema: FeatureSchema, row: Row) -> Row:
    """Values as their declared types: whole numbers as int, flags as bool, in the schema's column order."""
    out: Row = {}
    for f in schema.features:
        value = row.get(f.name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[f.name] = None
        elif f.dtype == "int64":
            out[f.name] = int(value)
        elif f.dtype == "boolean":
            out[f.name] = bool(value)
        elif f.dtype == "float64":
            out[f.name] = float(value)
        else:
            out[f.name] = str(value)
    return out


def empty_row(schema: FeatureSchema) -> Row:
    """A member the snapshot does not know: no events, so counts are 0 and everything else is empty."""
    return {f.name: 0 if f.zero_when_absent else None for f in schema.features}


def _write_layout(folder: Path, features: pd.DataFrame) -> None:
    columns = [c for c in features.columns if c != "member_id"]
    text = [c for c in columns if feature(c).dtype == "string"]
    write_columns(folder, features, text, {"version": LAYOUT_VERSION})


@dataclass(frozen=True)
class Folded:
    """What a batch of new events changes: members' updated rows and their new item interactions by matrix."""

    rows: dict[str, Row]
    items: dict[str, dict[str, dict[str, float]]]  # item source (its matrix) -> member -> item -> weight


class EventFolder:
    """Folds new events into members' rows with the snapshot's own feature expressions, compiled once per snapshot.

    Events after the snapshot's as-of date count as on its eve (days ago 0): windows then need no history, and
    the next build, which counts them on their real days, agrees once the as-of date has moved past them.
    """

    def __init__(self, schema: FeatureSchema, as_of: datetime, catalogues: Mapping[str, pd.DataFrame]):
        """`catalogues`: each item source's item ids and the attribute features read (category, content type), by
        source: what new events are joined with."""
        self.schema, self.as_of = schema, as_of
        self._eve = as_of - timedelta(microseconds=1)
        self._lock = threading.Lock()
        self._con = duckdb.connect()
        # Its queries run over a few new events: optimising their ~80 aggregates took longer than running them.
        self._con.execute("PRAGMA disable_optimizer")
        for name, frame in catalogues.items():
            self._con.register(f"catalogue_{name}", pa.Table.from_pandas(frame, preserve_index=False))
        self._sql = _folding_sql(tuple(schema.columns), as_of, tuple(ITEM_SOURCES.values()))
        self.added = {
            view: [f for f in schema.of(view) if not f.derived and f.online_rule is not Online.build]
            for view in (View.orders, View.engagements)
        }

    def fold(self, base: dict[str, Row | None], orders: pd.DataFrame, engagements: pd.DataFrame) -> Folded:
        """`base`: the current row of every member the events are about (None: not in the snapshot)."""
        with self._lock:
            self._con.register("new_orders", self._events(orders, ORDERS.column_names))
            self._con.register("new_engagements", self._events(engagements, ENGAGEMENTS.column_names))
            rows = {m: dict(r) if r is not None else empty_row(self.schema) for m, r in base.items()}
            for view, table in ((View.orders, "orders"), (View.engagements, "engagements")):
                if table in self._sql and len(orders if table == "orders" else engagements):
                    for delta in self._records(self._sql[table]):
                        if delta["member_id"] in rows:
                            _merge(rows[delta["member_id"]], delta, self.added[view])
            items: dict[str, dict[str, dict[str, float]]] = {}
            for matrix in ITEM_SOURCES:
                if matrix in self._sql:
                    for pair in self._records(self._sql[matrix]):
                        member = items.setdefault(matrix, {}).setdefault(pair["member_id"], {})
                        member[pair["item_id"]] = member.get(pair["item_id"], 0.0) + float(pair["weight"])
            if rows:
                frame = pa.Table.from_pylist([{"member_id": m, **r} for m, r in rows.items()])
                self._con.register("fresh_rows", frame)
                rows = {r.pop("member_id"): typed(self.schema, r) for r in self._records(self._sql["derive"])}
            return Folded(rows, items)

    def _records(self, sql: str) -> list[Row]:
        """The query's rows as dicts. `execute` rather than a relation: a relation plans the statement again to
        hand over its result, and planning is most of a query over a handful of new events."""
        cursor = self._con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    def _events(self, frame: pd.DataFrame, columns: Iterable[str]) -> pa.Table:
        """The events as the canonical table, later ones moved to the as-of date's eve; guests left out."""
        frame = frame.reindex(columns=list(columns))
        frame = frame[frame["member_id"].notna()].copy()
        frame["ts"] = pd.to_datetime(frame["ts"]).clip(upper=self._eve)
        for c in frame.columns:
            if c != "ts" and frame[c].dtype == object:
                frame[c] = frame[c].astype("string")
        return pa.Table.from_pandas(frame.astype(_pandas_types(columns)), preserve_index=False)


@lru_cache(maxsize=8)
def _folding_sql(columns: tuple[str, ...], as_of: datetime, sources: tuple[ItemSource, ...]) -> dict[str, str]:
    """The queries that fold new events in, compiled once per feature schema and as-of date (a reload, another
    state of the same snapshot, reuses them: compiling takes half a second); `sources`: the item sources."""
    schema = FeatureSchema(tuple(feature(c) for c in columns))
    orders = ibis.table(_ibis_schema(ORDERS), name="new_orders")
    engagements = ibis.table(_ibis_schema(ENGAGEMENTS), name="new_engagements")
    catalogues = {
        s.matrix: ibis.table({s.id_column: "string", s.category_column: "string"}, name=f"catalogue_{s.matrix}")
        for s in sources
    }
    # The feature expressions join the catalogues Sources names (products' categories, contents' types).
    named = {name: table for name, table in catalogues.items() if name in {f.name for f in fields(Sources)}}
    src = Sources(orders=orders, engagements=engagements, **named)
    sql = {"orders": _sql(aggregated(order_lines(src, as_of, schema.requires(Needs.categories)), schema, View.orders))}
    folded = {"orders"}  # the events tables whose new rows are folded in
    if schema.has(View.engagements):
        e = engagement_events(src, as_of, with_types=schema.requires(Needs.content_types))
        sql["engagements"] = _sql(aggregated(e, schema, View.engagements))
        folded.add("engagements")
    for source in sources:
        if source.events in folded:
            sql[source.matrix] = _sql(source.pairs(src, as_of))
    # Derived features read their own view's aggregates; the member view's read every view's, so they come after.
    rows = ibis.table({"member_id": "string", **{f.name: f.dtype for f in schema.features}}, name="fresh_rows")
    again = [f for f in schema.features if f.online_rule is Online.derive]
    first = derived_again(rows, [f for f in again if f.view is not View.member])
    sql["derive"] = _sql(derived_again(first, [f for f in again if f.view is View.member]))
    return sql


def _merge(row: Row, delta: Row, features: list[Feature]) -> None:
    for f in features:
        new = delta.get(f.name)
        if new is None:
            continue
        new = float(new) if f.dtype == "float64" else new
        old = row.get(f.name)
        if f.online_rule is Online.add:
            row[f.name] = (old or 0) + new
        elif f.online_rule is Online.least:  # sub-second days of an event on the eve: it is today, 0 days ago
            row[f.name] = round(new, 6) if old is None else min(old, round(new, 6))
        elif f.online_rule is Online.greatest:
            row[f.name] = round(new, 6) if old is None else max(old, round(new, 6))


def _sql(expr: Any) -> str:
    return str(ibis.to_sql(expr, dialect="duckdb"))


_IBIS_TYPES = {
    "id": "string",
    "text": "string",
    "category": "string",
    "timestamp": "timestamp",
    "number": "float64",
    "bool": "boolean",
}


def _ibis_schema(spec: Any) -> dict[str, str]:
    return {c.name: _IBIS_TYPES[c.kind.value] for c in spec.columns}


def _pandas_types(columns: Iterable[str]) -> dict[str, str]:
    spec = {c.name: c for c in (*ORDERS.columns, *ENGAGEMENTS.columns)}
    kinds = {"string": "string", "timestamp": "datetime64[us]", "float64": "float64", "boolean": "boolean"}
    return {c: kinds[_IBIS_TYPES[spec[c].kind.value]] for c in columns}
