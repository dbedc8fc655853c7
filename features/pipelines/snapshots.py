"""Feature snapshots on disk: built in DuckDB from a dataset's Parquet tables, versioned, reused when unchanged.

A snapshot lives in `<home>/features/<dataset>/v<FEATURE_SET_VERSION>/as_of=<T>/`:
`features.parquet` (one row per member known before T), `labels_h<H>.parquet` (where the data reaches T+H),
`interactions_products.npz` / `interactions_contents.npz` (member x item matrices with id maps), and
`meta.json` (what it was built from). The "latest" snapshot (T = the day after the last event) is the online
feature table that serving reads: the same code builds both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from features.common.errors import DataError
from features.common.progress import say, step
from features.dataset.contract import FEATURE_SOURCES, ORDERS
from features.dataset.store import Dataset, write_json_atomic, write_parquet_atomic
from features.dataset.validation import empty_frame
from features.pipelines import engines, interactions, point_in_time, schema
from features.pipelines.engines import Engine
from features.pipelines.interactions import (
    ITEM_SOURCES,
    Interactions,
    to_matrix,
)
from features.pipelines.point_in_time import Sources, known_members, labels_expr, snapshot_expr
from features.pipelines.schema import ATTRIBUTES, FeatureSchema, Needs, resolve

# Bump when a feature's definition changes: snapshots of another version are never reused.
FEATURE_SET_VERSION = 3


class SnapshotSettings(BaseModel):
    """What a snapshot is built for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: date
    horizon_days: int = Field(90, ge=1, le=730)
    churn_needs_no_engagement: bool = Field(
        False, description="a member churns only with no order and no engagement in the horizon"
    )
    sample_members: int | None = Field(
        None,
        ge=1,
        description="only the members of the dataset's fixed sample of this size (member_sample), where it has more; "
        "None: every member",
    )
    interactions: bool = Field(
        True,
        description="a sample's interaction matrices too (recommenders read them; churn and value do not); a "
        "snapshot of every member, which every reader shares, always has them",
    )


@dataclass(frozen=True)
class Snapshot:
    dataset: Dataset
    as_of: date
    sample: int | None = None  # the size of the member sample it holds (member_sample); None: every member

    @property
    def path(self) -> Path:
        return _version_dir(self.dataset, self.sample) / f"as_of={self.as_of}"

    @property
    def features_path(self) -> Path:
        return self.path / "features.parquet"

    def labels_path(self, horizon_days: int, churn_needs_no_engagement: bool = False) -> Path:
        suffix = "_quiet" if churn_needs_no_engagement else ""
        return self.path / f"labels_h{horizon_days}{suffix}.parquet"

    def interactions_path(self, kind: str) -> Path:
        return self.path / f"interactions_{kind}.npz"

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}

    def features(self) -> pd.DataFrame:
        if not self.features_path.exists():
            raise DataError(
                f"no feature snapshot for {self.dataset.name} as of {self.as_of}; build it with "
                f"`community-ml features build --dataset {self.dataset.name} --as-of {self.as_of}`"
            )
        return pd.read_parquet(self.features_path)

    def labels(self, horizon_days: int, churn_needs_no_engagement: bool = False) -> pd.DataFrame:
        path = self.labels_path(horizon_days, churn_needs_no_engagement)
        if not path.exists():
            raise DataError(f"no labels for {self.dataset.name} as of {self.as_of} with horizon {horizon_days} days")
        return pd.read_parquet(path)

    def interactions(self, kind: str) -> Interactions:
        path = self.interactions_path(kind)
        if not path.exists():
            raise DataError(f"no {kind} interactions for {self.dataset.name} as of {self.as_of}")
        return Interactions.load(path)


def _version_dir(dataset: Dataset, sample: int | None) -> Path:
    """Where a dataset's snapshots of this feature set live; a member sample's in their own folder, so that
    nothing that reads the full snapshots (serving, scoring, the online store) ever finds them."""
    path = dataset.home.features / dataset.name / f"v{FEATURE_SET_VERSION}"
    return path if sample is None else path / f"sample={sample}"


class BuildResult(BaseModel):
    dataset: str
    as_of: date
    path: str
    sample: int | None = None  # the member sample's size, where the snapshot holds only that sample
    members: int
    features: int
    labels_written: bool
    labelled_members: int | None = None
    churn_rate: float | None = None
    events: int
    seconds: float
    stage_seconds: dict[str, float] = {}
    reused: bool


def fingerprint(dataset: Dataset) -> str:
    """Changes whenever a canonical table is rewritten (size and modification time), or the feature code."""
    code = b"".join(Path(m.__file__).read_bytes() for m in (schema, point_in_time, interactions) if m.__file__)
    parts: list[Any] = [FEATURE_SET_VERSION, hashlib.sha256(code).hexdigest()]
    if engines.selected() is Engine.spark and engines.spark_tables_uri() is not None:
        # Tables elsewhere: the same facts, read through Hadoop's FileSystem.
        parts += [[table, stat] for table, (_, stat) in _lake_tables(dataset).items()]
    else:
        for table in dataset.tables(FEATURE_SOURCES):
            stat = dataset.table_path(table).stat()
            parts.append([table, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def connect(dataset: Dataset) -> tuple[Any, Sources]:
    """An Ibis connection of the selected engine (`engines.selected()`) with the dataset's tables."""
    dataset.require()
    if engines.selected() is Engine.spark:
        return _connect_spark(dataset)
    if not dataset.has("orders") and not dataset.has("engagements"):
        raise DataError(f"dataset {dataset.name!r} has no orders or engagements; import one of them first")
    # A training run connects a dozen times (each cutoff's snapshot, the data's span): reading the tables'
    # schemas costs ~0.1 s a time, so a connection is kept while its tables are unchanged (their size and
    # modification time), per process and thread (DuckDB connections are not shared across either).
    present = dataset.tables(FEATURE_SOURCES)
    key = (os.getpid(), str(dataset.path), *((t, *_stat(dataset, t)) for t in present))
    cache: OrderedDict[tuple[Any, ...], tuple[Any, Sources]] = _CONNECTIONS.__dict__.setdefault("kept", OrderedDict())
    if key not in cache:
        con = ibis.duckdb.connect()
        engines.configure_duckdb(con)
        tables = {t: con.read_parquet(dataset.table_path(t), table_name=t) for t in present}
        cache[key] = (con, _sources(tables, {t: dataset.row_count(t) for t in tables}))
        while len(cache) > _CONNECTIONS_KEPT:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


_CONNECTIONS = threading.local()
_CONNECTIONS_KEPT = 4


def _stat(dataset: Dataset, table: str) -> tuple[int, int]:
    stat = dataset.table_path(table).stat()
    return stat.st_size, stat.st_mtime_ns


def _sources(tables: dict[str, ir.Table], rows: dict[str, int]) -> Sources:
    if "orders" not in tables:
        # An interactions-only dataset: no orders is zero orders, so every feature and matrix still builds.
        tables["orders"] = ibis.memtable(empty_frame(ORDERS))

    def nonempty(name: str) -> Any:
        return tables[name] if rows.get(name) else None

    return Sources(
        orders=tables["orders"],
        engagements=nonempty("engagements"),
        members=nonempty("members"),
        products=nonempty("products"),
        contents=nonempty("contents"),
        rows=rows,
    )


def _connect_spark(dataset: Dataset) -> tuple[Any, Sources]:
    """The dataset's tables as Spark views: from `$COMMUNITY_ML_SPARK_TABLES/<dataset>/` when set, else its own
    Parquet files. View names carry the dataset's name, so two datasets in one session never meet."""
    session = engines.spark_session()
    con = ibis.pyspark.connect(session)
    located = _spark_locations(dataset)
    if "orders" not in located and "engagements" not in located:
        where = engines.spark_tables_uri() or dataset.path
        raise DataError(f"dataset {dataset.name!r} has no orders or engagements under {where}")
    prefix = "cm_" + re.sub(r"[^A-Za-z0-9]", "_", dataset.name)
    tables = {t: con.read_parquet(uri, table_name=f"{prefix}_{t}") for t, uri in located.items()}
    if engines.spark_tables_uri() is None:
        rows = {t: dataset.row_count(t) for t in tables}
    else:  # one job counts every table
        counts = [table.aggregate(table=ibis.literal(t), rows=table.count()) for t, table in tables.items()]
        rows = {r["table"]: r["rows"] for r in run(con, ibis.union(*counts)).to_pylist()}
    return con, _sources(tables, rows)


def _spark_locations(dataset: Dataset) -> dict[str, str]:
    """Where Spark reads each canonical table the dataset has."""
    if engines.spark_tables_uri() is None:
        for table in dataset.tables(FEATURE_SOURCES):
            upgrade_timestamps(dataset, table)
        return {t: str(dataset.table_path(t)) for t in dataset.tables(FEATURE_SOURCES)}
    return {table: uri for table, (uri, _) in _lake_tables(dataset).items()}


def _lake_tables(dataset: Dataset) -> dict[str, tuple[str, tuple[int, int]]]:
    """The dataset's tables under `$COMMUNITY_ML_SPARK_TABLES`: each one's URI and (bytes, last modification)."""
    session, base = engines.spark_session(), engines.spark_tables_uri()
    found = {t: f"{base}/{dataset.name}/{t}.parquet" for t in FEATURE_SOURCES}
    stats = {t: engines.hadoop_stat(session, uri) for t, uri in found.items()}
    return {t: (found[t], stat) for t, stat in stats.items() if stat is not None}


def upgrade_timestamps(dataset: Dataset, table: str) -> None:
    """Rewrites a table written with nanosecond timestamps (before tables were written in microseconds), which
    Spark cannot read; the rewrite fails rather than drop a digit (`write_parquet_atomic`)."""
    path = dataset.table_path(table)
    stored = pq.read_schema(path)
    if any(pa.types.is_timestamp(f.type) and f.type.unit == "ns" for f in stored):
        say(f"  rewriting {path} with microsecond timestamps, which Spark reads (once)")
        write_parquet_atomic(pq.read_table(path), path)


def event_span(src: Sources) -> tuple[datetime, datetime]:
    """First and last event time over orders and engagements."""
    tables = [t for t in (src.orders, src.engagements) if t is not None]
    # One query for both tables (on Spark each query is a job: seconds on a small community).
    parts = [t.aggregate(lo=t.ts.min().cast("timestamp"), hi=t.ts.max().cast("timestamp")) for t in tables]
    spans = [s for s in ibis.union(*parts).to_pyarrow().to_pylist() if s["lo"] is not None]
    if not spans:
        raise DataError("the dataset has no events")
    return min(s["lo"] for s in spans), max(s["hi"] for s in spans)


def dataset_span(dataset: Dataset) -> tuple[datetime, datetime]:
    """First and last event time of a dataset."""
    _, src = connect(dataset)
    return event_span(src)


def resolve_as_of(dataset: Dataset, value: str | date | None) -> date:
    """A date, or "latest"/None: the day after the last event (the online snapshot)."""
    if isinstance(value, date):
        return value
    if value is None or value == "latest":
        return (dataset_span(dataset)[1] + timedelta(days=1)).date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise DataError(f"--as-of {value!r}: expected a date like 2011-09-10, or 'latest'") from exc


def _columns_with_values(src: Sources, table_name: str, columns: tuple[str, ...]) -> list[str]:
    table = getattr(src, table_name)
    if table is None:
        return []
    present = [c for c in columns if c in table.columns]
    if not present:
        return []
    counts = table.aggregate(**{c: table[c].count() for c in present}).to_pyarrow().to_pylist()[0]
    return [c for c in present if counts[c]]


def feature_schema(src: Sources) -> FeatureSchema:
    """The features this dataset has, from what its tables hold (whole tables, not a cutoff's history: every
    snapshot of a dataset has the same columns)."""
    available: set[str] = {Needs.orders}
    if _columns_with_values(src, "products", ("category",)):
        available.add(Needs.categories)
    if _columns_with_values(src, "orders", ("channel",)):
        available.add(Needs.channels)
    if src.engagements is not None:
        available.add(Needs.engagements)
        if _columns_with_values(src, "contents", ("content_type",)):
            available.add(Needs.content_types)
    available |= {f"members.{a}" for a in _columns_with_values(src, "members", ATTRIBUTES)}
    return resolve(available)


def dataset_schema(dataset: Dataset) -> FeatureSchema:
    _, src = connect(dataset)
    return feature_schema(src)


def member_sample(dataset: Dataset, members: int, current: str | None = None) -> pa.Table | None:
    """The dataset's fixed sample of `members` members (their ids), or None where it has no more than that.

    A member is in the sample when a hash of their id is among the `members` smallest: the same members for the
    same data on every machine and engine, and every cutoff's snapshot of the sample holds the same people (a
    population's fits are then shared between cutoffs and between training and judging). Drawn once per version
    of the data (its fingerprint, `current` where the caller has it) and kept beside the sample's snapshots."""
    folder = _version_dir(dataset, members)
    ids_path, meta_path = folder / "members.parquet", folder / "members.json"
    current = current or fingerprint(dataset)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("fingerprint") != current or (meta.get("sampled") and not ids_path.exists()):
        con, src = connect(dataset)
        ids = run(con, known_members(src, _SENTINEL)).column("member_id").to_numpy(zero_copy_only=False)
        sampled = len(ids) > members
        if sampled:
            keys = pd.util.hash_array(ids.astype(object), categorize=False)
            chosen = np.sort(ids[np.argsort(keys, kind="stable")[:members]])
            write_parquet_atomic(pa.table({"member_id": pa.array(chosen, pa.string())}), ids_path)
            say(f"a fixed sample of {members:,} of {dataset.name}'s {len(ids):,} members learns and judges")
        write_json_atomic({"fingerprint": current, "members": len(ids), "sampled": sampled}, meta_path)
        meta = {"sampled": sampled}
    return pq.read_table(ids_path) if meta["sampled"] else None


def _of_members(src: Sources, sample: pa.Table) -> Sources:
    """The sources restricted to the sample's members (tables of items stay whole)."""
    ids = ibis.memtable(sample)

    def kept(table: ir.Table | None) -> ir.Table | None:
        return None if table is None else table.semi_join(ids, "member_id")

    return replace(src, orders=kept(src.orders), engagements=kept(src.engagements), members=kept(src.members))


def build_snapshot(dataset: Dataset, settings: SnapshotSettings, force: bool = False) -> BuildResult:
    """Builds (or reuses) the feature snapshot, labels and interaction matrices as of `settings.as_of`.

    Features and matrices are rebuilt only when the data or the feature code changed; labels of a horizon not
    built yet are added to an up-to-date snapshot without touching its features.
    """
    started = time.perf_counter()
    as_of = datetime.combine(settings.as_of, datetime.min.time())
    con, src = connect(dataset)
    current = fingerprint(dataset)
    sample = None if settings.sample_members is None else member_sample(dataset, settings.sample_members, current)
    snapshot = Snapshot(dataset, settings.as_of, None if sample is None else settings.sample_members)
    first, last = event_span(src)
    if as_of <= first:
        raise DataError(
            f"--as-of {settings.as_of} is not after the first event ({first:%Y-%m-%d}): no history to learn from"
        )
    labels_path = snapshot.labels_path(settings.horizon_days, settings.churn_needs_no_engagement)
    # Labels need the whole horizon observed: the last event must fall on the horizon's last day or later.
    can_label = last >= as_of + timedelta(days=settings.horizon_days - 1)
    matrices = snapshot.sample is None or settings.interactions
    meta = snapshot.meta()
    up_to_date = not force and meta.get("fingerprint") == current and snapshot.features_path.exists()
    # A sample built without its matrices is built again for a reader that needs them, and a snapshot built before
    # an item source was declared, for its matrix (snapshots of before the list was kept had the first two).
    up_to_date = up_to_date and (snapshot.sample is None or bool(meta.get("matrices")) or not matrices)
    built_sources = meta.get("item_sources", ["products", "contents"])
    up_to_date = up_to_date and (not matrices or built_sources == list(ITEM_SOURCES))
    if up_to_date and (labels_path.exists() or not can_label):
        say(f"snapshot {snapshot.path} is up to date; reusing it")
        return _result(snapshot, settings, can_label, started, reused=True)

    stages: dict[str, float] = {}
    if sample is not None:
        # Every feature and label is a member's own aggregate: those of the sample's members from their events
        # alone are exactly those of the full snapshot (tests/features/test_snapshots.py).
        src = _of_members(src, sample)
    if not up_to_date:
        stages |= _build_features(con, src, dataset, snapshot, as_of, current, (first, last), matrices)
    mark = time.perf_counter()
    if can_label:
        with step(f"labelling members over the {settings.horizon_days} days from {settings.as_of}"):
            # The snapshot's members, from its file (read here, not by the engine: Spark's executors need not reach
            # the state home), instead of finding them in every event again.
            members = ibis.memtable(pq.read_table(snapshot.features_path, columns=["member_id"]))
            labels = labels_expr(src, members, as_of, settings.horizon_days, settings.churn_needs_no_engagement)
            write_parquet_atomic(run(con, labels), labels_path)
    else:
        say(f"  no labels: the data ends {last:%Y-%m-%d}, before the {settings.horizon_days}-day horizon does")
    stages["labels"] = time.perf_counter() - mark
    result = _result(snapshot, settings, can_label, started, reused=False)
    return result.model_copy(update={"stage_seconds": {k: round(v, 2) for k, v in stages.items()}})


def _build_features(
    con: Any,
    src: Sources,
    dataset: Dataset,
    snapshot: Snapshot,
    as_of: datetime,
    current: str,
    span: tuple[datetime, datetime],
    matrices: bool,
) -> dict[str, float]:
    """Writes features, interaction matrices (where `matrices`) and meta.json afresh; returns the seconds of each
    stage."""
    # Labels and matrices built from older data must go: none of it may be reused with the new features.
    for stale in (snapshot.meta_path, *snapshot.path.glob("labels_h*.parquet"), *snapshot.path.glob("*.npz")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(snapshot.path / "online", ignore_errors=True)  # the serving layout of the old features
    events = src.rows.get("orders", 0) + src.rows.get("engagements", 0)
    mark = time.perf_counter()
    of = "" if snapshot.sample is None else f" (a sample of {snapshot.sample:,} members)"
    with step(f"building features of {dataset.name}{of} as of {snapshot.as_of} from {events:,} events"):
        declared = feature_schema(src)
        write_parquet_atomic(_features_table(con, src, as_of, declared), snapshot.features_path)
    features_seconds, mark = time.perf_counter() - mark, time.perf_counter()

    # A sample's matrices are the full matrices' rows of its members (each cell is one member's own aggregate):
    # what recommenders are tuned and judged on at scale (the recommender_members setting).
    with step("building interaction matrices" if matrices else "no interaction matrices (none asked of a sample)"):
        for source in ITEM_SOURCES.values():
            if source.available(src) and matrices:
                pairs = run(con, source.pairs(src, as_of))
                if pairs.num_rows:
                    to_matrix(pairs).save(snapshot.interactions_path(source.matrix))
    interactions_seconds = time.perf_counter() - mark

    write_json_atomic(
        {
            "dataset": dataset.name,
            "as_of": str(snapshot.as_of),
            "feature_set_version": FEATURE_SET_VERSION,
            "fingerprint": current,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "events": events,
            "first_event": str(span[0]),
            "last_event": str(span[1]),
            "columns": declared.columns,
            "matrices": matrices,
            "item_sources": list(ITEM_SOURCES),
        },
        snapshot.meta_path,
    )
    return {"features": features_seconds, "interactions": interactions_seconds}


# Compiling the feature query (Ibis to SQL) takes longer than DuckDB takes to run it on a community of thousands
# (0.6-0.8 s against 0.2 s at 2,000 members), and between a backtest's cutoffs only the cutoff changes. So the query
# is compiled once per source tables and feature schema, at a sentinel cutoff, and each cutoff runs that SQL with
# its own cutoff's literals in place of the sentinel's (checked: where a sentinel literal is not found, or one is
# left over, the query is compiled for the cutoff as it always was).
_SENTINEL = datetime(2999, 1, 1)
_COMPILED: OrderedDict[tuple[Any, ...], tuple[str, pa.Schema, list[str]]] = OrderedDict()
_COMPILED_KEPT = 16


def _features_table(con: Any, src: Sources, as_of: datetime, declared: FeatureSchema) -> pa.Table:
    """The features as of `as_of`: exactly what `run(con, snapshot_expr(src, as_of, declared))` gives."""
    # The compiled SQL is DuckDB's; ibis registers an in-memory table with DuckDB only when it runs a query itself.
    if con.name != "duckdb" or _in_memory(src):
        return run(con, snapshot_expr(src, as_of, declared))
    key = (_tables_key(src), tuple(declared.columns))
    if key not in _COMPILED:
        expr = snapshot_expr(src, _SENTINEL, declared)
        _COMPILED[key] = (con.compile(expr), expr.schema().to_pyarrow(), _cutoff_literals(con, _SENTINEL))
        while len(_COMPILED) > _COMPILED_KEPT:
            _COMPILED.popitem(last=False)
    sql, arrow_schema, sentinels = _COMPILED[key]
    for sentinel, actual in zip(sentinels, _cutoff_literals(con, as_of), strict=True):
        if sentinel not in sql:
            return con.to_pyarrow(snapshot_expr(src, as_of, declared))
        sql = sql.replace(sentinel, actual)
    if str(_SENTINEL.year) in sql:
        return con.to_pyarrow(snapshot_expr(src, as_of, declared))
    return con.con.sql(sql).to_arrow_table().cast(arrow_schema)


def run(con: Any, expr: ir.Table) -> pa.Table:
    """An expression's rows as Arrow, typed as the expression says on every engine (Spark's results come back
    through pandas, whose integer columns with nulls are floats)."""
    return con.to_pyarrow(expr).cast(expr.schema().to_pyarrow())


def _cutoff_literals(con: Any, as_of: datetime) -> list[str]:
    """How the feature query spells a cutoff: as a timestamp, and as seconds since the epoch (point_in_time's
    `_before` and `_days_ago`)."""
    values = [ibis.timestamp(as_of), ibis.literal(as_of.replace(tzinfo=UTC).timestamp())]
    spelt = [con.compile(value.name("v")) for value in values]
    return [sql.removeprefix("SELECT ").rsplit(' AS "v"', 1)[0] for sql in spelt]


def _in_memory(src: Sources) -> bool:
    """Whether any source is not a table of the connection (an in-memory one, or a member sample's join)."""
    tables = (src.orders, src.engagements, src.members, src.products, src.contents)
    return any(not isinstance(t.op(), ops.DatabaseTable) for t in tables if t is not None)


def _tables_key(src: Sources) -> tuple[Any, ...]:
    """What the compiled query depends on: each source table's name in the connection and its columns."""
    tables = {name: getattr(src, name) for name in ("orders", "engagements", "members", "products", "contents")}
    return tuple(
        (name, table.get_name(), tuple((c, str(t)) for c, t in table.schema().items()))
        for name, table in tables.items()
        if table is not None
    )


def _result(
    snapshot: Snapshot, settings: SnapshotSettings, can_label: bool, started: float, reused: bool
) -> BuildResult:
    info = pq.ParquetFile(snapshot.features_path)
    labelled = churn_rate = None
    if can_label:
        labels = snapshot.labels(settings.horizon_days, settings.churn_needs_no_engagement)
        labelled, churn_rate = len(labels), round(float(labels["churned"].mean()), 4) if len(labels) else None
    return BuildResult(
        dataset=snapshot.dataset.name,
        as_of=settings.as_of,
        path=str(snapshot.path),
        members=info.metadata.num_rows,
        features=info.metadata.num_columns - 1,
        labels_written=can_label,
        labelled_members=labelled,
        churn_rate=churn_rate,
        events=snapshot.meta().get("events", 0),
        seconds=round(time.perf_counter() - started, 2),
        reused=reused,
        sample=snapshot.sample,
    )
