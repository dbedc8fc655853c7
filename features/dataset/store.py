"""Datasets on disk: a Parquet file per canonical table, a quarantine beside it, a manifest of imports."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.contract import TABLE_NAMES, TABLES, Kind, TableSpec
from features.dataset.validation import QUARANTINE_COLUMNS, arrow_schema, conformed, empty_frame

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class MergeResult:
    added: int
    updated: int
    unchanged: int
    total: int


# Times in microseconds, which every engine reads (Spark cannot read nanoseconds); a time with a finer digit fails
# the write instead of losing it.
PARQUET_TIMES: dict[str, Any] = {"coerce_timestamps": "us", "allow_truncated_timestamps": False}


def write_parquet_atomic(frame: pd.DataFrame | pa.Table, path: Path, schema: pa.Schema | None = None) -> None:
    """Writes beside the target and renames, so a crash half-way leaves the previous file readable. `schema`: the
    types a frame is stored as, where pyarrow should not infer them (a list column with no row holding a list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(frame, pa.Table):
            pq.write_table(frame, tmp, **PARQUET_TIMES)
        else:
            frame.to_parquet(tmp, index=False, schema=schema, **PARQUET_TIMES)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ParquetAppender:
    """Writes one Parquet file a frame at a time (a table too large to hold at once), beside the target; `close`
    renames it into place, so a crash half-way leaves no half-written table."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.schema, self.rows = path, schema, 0
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._writer = pq.ParquetWriter(self.tmp, schema, **PARQUET_TIMES)

    def write(self, frame: pd.DataFrame) -> None:
        self._writer.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        self.rows += len(frame)

    def close(self) -> None:
        self._writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._writer.close()
        self.tmp.unlink(missing_ok=True)


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


@contextmanager
def exclusively(lock: Path) -> Iterator[None]:
    """The block runs in one process of the host at a time: under an exclusive lock on the file `lock` (created
    where missing). A process that waits for it should look again for what the other one wrote meanwhile."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def made_once(target: Path, make: Callable[[], object], lock: Path) -> None:
    """Where `target` is missing, `make()` writes it, in one process of the host at a time (under `lock`): a
    process that waited for another finds `target` written and makes nothing. For what several service workers
    would otherwise each build at once from the same inputs (a population's scorer, the online layout)."""
    if target.exists():
        return
    with exclusively(lock):
        if not target.exists():
            make()


@dataclass(frozen=True)
class Dataset:
    """A named dataset under `<home>/datasets/<name>/`."""

    home: StateHome
    name: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise DataError(
                f"dataset name {self.name!r} is not allowed: use letters, digits, '_', '-' or '.', "
                "starting with a letter or digit (at most 64 characters)"
            )

    @property
    def path(self) -> Path:
        return self.home.datasets / self.name

    @property
    def manifest_path(self) -> Path:
        return self.path / "dataset.json"

    def table_path(self, table: str) -> Path:
        return self.path / f"{table}.parquet"

    def quarantine_path(self, table: str) -> Path:
        return self.path / "quarantine" / f"{table}.parquet"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def require(self) -> Dataset:
        """Self, or a DataError naming the datasets that do exist."""
        if not self.exists():
            known = sorted(p.parent.name for p in self.home.datasets.glob("*/dataset.json"))
            hint = f"known datasets: {', '.join(known)}" if known else "there are no datasets yet"
            raise DataError(
                f"dataset {self.name!r} not found under {self.home.datasets} ({hint}); "
                "create it with `community-ml data import ...` or `community-ml data generate ...`"
            )
        return self

    def tables(self, among: tuple[str, ...] = TABLE_NAMES) -> list[str]:
        """The canonical tables the dataset holds (of `among`)."""
        return [t for t in among if self.table_path(t).exists()]

    def has(self, table: str) -> bool:
        return self.table_path(table).exists()

    def columns(self, table: str) -> set[str]:
        """The columns the stored table has (none where the dataset has no such table)."""
        return set(pq.read_schema(self.table_path(table)).names) if self.has(table) else set()

    def read(self, table: str, columns: list[str] | None = None, filters: list[Any] | None = None) -> pd.DataFrame:
        """The canonical table, typed; an empty typed frame when the dataset has no such table."""
        spec = TABLES[table]
        if not self.has(table):
            frame = empty_frame(spec)
            return frame[columns] if columns else frame
        stored = pq.read_table(self.table_path(table), columns=columns, filters=filters)
        # Tables store microseconds (what Spark reads); frames get nanoseconds, as tables written earlier and every
        # frame built in memory have, so rows compare and hash alike.
        return stored.to_pandas(coerce_temporal_nanoseconds=True)

    def row_count(self, table: str) -> int:
        return pq.ParquetFile(self.table_path(table)).metadata.num_rows if self.has(table) else 0

    def write(self, table: str, frame: pd.DataFrame) -> None:
        write_parquet_atomic(in_stored_order(table, frame), self.table_path(table), arrow_schema(TABLES[table]))

    def appender(self, table: str) -> ParquetAppender:
        """A writer of the table a part at a time (parts in `in_stored_order`), replacing it when closed."""
        return ParquetAppender(self.table_path(table), arrow_schema(TABLES[table]))

    def merge(self, table: str, incoming: pd.DataFrame) -> MergeResult:
        """Adds rows; a row whose key is already stored replaces it, so re-importing changes nothing."""
        spec = TABLES[table]
        existing = self.read(table)
        existing = conformed(spec, existing) if not existing.empty else existing
        incoming = conformed(spec, incoming).reset_index(drop=True)
        received = len(incoming)
        # The event log may hold one event twice (posted to a replica killed before it answered, then again to
        # another): the later copy counts, once.
        incoming = incoming.drop_duplicates(list(spec.key), keep="last").reset_index(drop=True)
        if existing.empty:
            merged, added, updated = incoming, len(incoming), 0
        else:
            known_key = _key_index(spec, incoming).isin(_key_index(spec, existing))
            tags = [c.name for c in spec.columns if c.kind is Kind.TAGS]
            same_row = _row_index(incoming, tags).isin(_row_index(existing, tags))
            added = int((~known_key).sum())
            updated = int((known_key & ~same_row).sum())
            merged = pd.concat([existing, incoming], ignore_index=True)
            merged = merged.drop_duplicates(list(spec.key), keep="last")
        self.write(table, merged)
        return MergeResult(added, updated, received - added - updated, len(merged))

    def read_quarantine(self, table: str) -> pd.DataFrame:
        path = self.quarantine_path(table)
        if not path.exists():
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "string") for c in QUARANTINE_COLUMNS})
        return pd.read_parquet(path)

    def add_quarantine(self, table: str, rows: pd.DataFrame) -> int:
        """Keeps set-aside rows beside the dataset; the same row from the same source is kept once."""
        if rows.empty:
            return 0
        existing = self.read_quarantine(table)
        merged = pd.concat([existing, rows], ignore_index=True).drop_duplicates(["source", "row", "raw"])
        write_parquet_atomic(merged, self.quarantine_path(table))
        return len(merged) - len(existing)

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"name": self.name, "created_at": None, "imports": []}
        return json.loads(self.manifest_path.read_text())

    def generated_with(self) -> dict[str, Any] | None:
        """The settings of the `data generate` that made the dataset (None: its data were imported)."""
        generated = [e.get("config") for e in self.manifest().get("imports", []) if e.get("kind") == "generate"]
        return generated[-1] if generated else None

    def record(self, entry: dict[str, Any]) -> None:
        """Appends an entry (an import, a generation) to the dataset's manifest."""
        manifest = self.manifest()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        manifest["created_at"] = manifest.get("created_at") or now
        manifest["imports"].append({"at": now, **entry})
        write_json_atomic(manifest, self.manifest_path)

    def delete(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)


def in_stored_order(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The table's columns in contract order; events in time order, which lets an engine skip row groups when it
    filters by date."""
    spec = TABLES[table]
    frame = conformed(spec, frame)
    if spec.is_event:
        frame = frame.sort_values(["ts", "member_id"], kind="stable", na_position="first")
    return frame.reset_index(drop=True)


def _key_index(spec: TableSpec, frame: pd.DataFrame) -> pd.Series:
    return _row_index(frame[list(spec.key)])


def _row_index(frame: pd.DataFrame, tags: list[str] | None = None) -> pd.Series:
    # A 64-bit hash per row: fast to compare over millions of rows, and missing values hash equal. Lists of `tags`
    # (lists in memory, arrays as read back) hash as their joined text.
    lists = {c: frame[c].map(_joined) for c in tags or []}
    return pd.util.hash_pandas_object(frame.assign(**lists) if lists else frame, index=False)


def _joined(value: object) -> object:
    return "|".join(map(str, value)) if isinstance(value, (list, tuple, np.ndarray)) else value
