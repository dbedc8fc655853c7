"""Events as they happen: orders, engagements and impressions posted to the service (`POST /events`), and items as
they are published (`POST /items`: products and contents).

Each event is checked against the data contract like an imported row (a bad one is named with its field and
reason, the good ones are kept), then made durable in the dataset's append-only journal before the service
answers: `<home>/events/<dataset>/journal.jsonl`, written in one `write` and flushed to disk (fsync) under a file
lock, so several workers can append at once and a killed service loses nothing it accepted.

With `$COMMUNITY_ML_REDIS_URL` set, the log is a Redis stream instead (event_log.py: replicas on machines that share
no disk). `community-ml data ingest` (event_log.py; every `features build` runs it) folds the journal into the
dataset's tables exactly once:
the journal is first sealed (renamed to a segment, under the lock, so the service goes on in a new journal), each
segment is merged into the tables and only then deleted. A process killed between the two merges the segment again
at the next ingest, which changes nothing: an event table's key is the whole row (features/dataset/contract.py), the
same rule that makes re-importing a file harmless.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.common.home import StateHome
from features.dataset.contract import ITEM_TABLES, TABLES
from features.dataset.row_checks import ROW_CHECK_MAX, validate_rows
from features.dataset.store import Dataset, exclusively
from features.dataset.validation import jsonable, stored_dtype, validate

EVENT_TABLES = ("orders", "engagements", "impressions", "contacts")
# Everything the journal keeps: events, and catalogue items (upserted by id when ingested, like an import).
JOURNALED = (*EVENT_TABLES, *ITEM_TABLES)


@dataclass
class Checked:
    """A posted batch after the contract's checks: the good events by table, typed, and the rejected ones."""

    good: dict[str, pd.DataFrame]
    rejected: list[dict[str, Any]] = field(default_factory=list)  # table, index, field, reason, detail
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # the good ones in their JSON form

    @property
    def accepted(self) -> int:
        return sum(len(f) for f in self.good.values())


def check_events(batch: dict[str, list[dict[str, Any]]]) -> Checked:
    """Every event of `batch` (table -> events in canonical form) checked; `index` is its position in its list."""
    good: dict[str, pd.DataFrame] = {}
    rows_of: dict[str, list[dict[str, Any]]] = {}
    rejected: list[dict[str, Any]] = []
    for table, events in batch.items():
        spec = TABLES[table]
        unknown = {i: sorted(set(e) - set(spec.column_names)) for i, e in enumerate(events)}
        for i, names in unknown.items():
            if names:
                rejected.append(
                    _rejection(table, i, names[0], "unknown field", f"fields: {', '.join(spec.column_names)}")
                )
        # Every contract column present, so an event without a required field is named, not dropped.
        kept = [i for i, names in unknown.items() if not names]
        rows = [{c: events[i].get(c) for c in spec.column_names} for i in kept]
        if not rows:
            continue
        source = f"POST /events {table}"
        # A few rows: checked row by row (row_checks.py); many, or a value only pandas reads: column by column.
        validated = validate_rows(spec, rows, source, kept) if len(rows) <= ROW_CHECK_MAX else None
        if validated is None:
            frame = pd.DataFrame(
                {c: pd.Series([r[c] for r in rows], index=kept, dtype=object) for c in spec.column_names}
            )
            validated = validate(spec, frame.where(frame.notna(), None), source=source)
        for row in validated.quarantine.itertuples():
            rejected.append(_rejection(table, int(row.row), row.field, row.reason, row.detail))
        if len(validated.good):
            good[table] = validated.good
            rows_of[table] = validated.rows if validated.rows is not None else event_rows(validated.good)
    return Checked(good, sorted(rejected, key=lambda r: (r["table"], r["index"])), rows_of)


def _rejection(table: str, index: int, field_name: Any, reason: Any, detail: Any) -> dict[str, Any]:
    return {
        "table": table,
        "index": index,
        "field": None if pd.isna(field_name) else str(field_name),
        "reason": str(reason),
        "detail": None if detail is None or pd.isna(detail) else str(detail),
    }


def event_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Typed events as JSON-ready dicts, every contract column present."""
    return [{k: jsonable(v) for k, v in record.items()} for record in frame.to_dict(orient="records")]


def event_key(table: str, row: dict[str, Any]) -> str:
    """The event's identity: its table and whole row (the contract's key for events)."""
    return hashlib.sha1(json.dumps([table, row], sort_keys=True, default=str).encode()).hexdigest()[:20]


def entries_of(rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Checked events (`Checked.rows`: rows in their JSON form) as the event log keeps them: table, key, row."""
    return [{"table": table, "key": event_key(table, row), "row": row} for table, each in rows.items() for row in each]


class Journal:
    """The dataset's append-only journal of accepted events (one JSON line each: table, key, row)."""

    def __init__(self, home: StateHome, dataset: str) -> None:
        self.folder = home.events / dataset
        self.current = self.folder / "journal.jsonl"

    def _locked(self) -> AbstractContextManager[None]:
        return exclusively(self.folder / ".lock")

    def append(self, rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Writes the checked events (`Checked.rows`) and flushes them to disk before returning them as journal
        entries."""
        entries = entries_of(rows)
        if not entries:
            return entries
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        with self._locked():
            fd = os.open(self.current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                while data:  # a regular file takes it whole; a full disk raises rather than losing events
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        return entries

    def batches(self) -> Iterator[tuple[str, list[dict[str, Any]], Callable[[], None]]]:
        """The journal sealed, then each segment's entries, deleted by its callback once the tables hold them."""
        self.seal()
        for segment in self.segments():
            yield f"events journal {segment.name}", read_entries(segment), segment.unlink

    def segments(self) -> list[Path]:
        """Sealed segments, oldest first."""
        return sorted(self.folder.glob("sealed-*.jsonl"))

    def seal(self) -> None:
        """Moves the journal aside as a segment; the next append starts a new journal."""
        with self._locked():
            if self.current.exists() and self.current.stat().st_size:
                self.current.rename(self.folder / f"sealed-{time.time_ns()}.jsonl")
                _fsync_folder(self.folder)

    def read_since(self, position: tuple[int, int]) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        """Entries appended since `position` (the journal's inode and an offset in it; (0, 0): from the start),
        and the position after them: how a worker follows what the others accepted. When the journal was sealed
        meanwhile, the rest of the sealed segment comes first."""
        inode, offset = position
        entries: list[dict[str, Any]] = []
        try:
            current = os.stat(self.current).st_ino
        except FileNotFoundError:
            current = 0
        if inode and inode != current:
            for segment in self.segments():
                if segment.stat().st_ino == inode:
                    entries += _read_from(segment, offset)[0]
            offset = 0
        if not current:
            return entries, (0, 0)
        more, offset = _read_from(self.current, offset)
        return entries + more, (current, offset)

    def pending(self) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        """Every accepted event not yet in the tables (the segments', then the journal's), and the journal's
        position after them, for `read_since` to go on from."""
        sealed = [e for segment in self.segments() for e in read_entries(segment)]
        current, position = self.read_since((0, 0))
        return sealed + current, position


def read_entries(path: Path) -> list[dict[str, Any]]:
    """A journal file's entries; a torn last line (a crash mid-write, never acknowledged) is skipped."""
    if not path.exists():
        return []
    entries = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def _read_from(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Whole lines from `offset` on, and the offset after the last whole line (a line being written is left)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    whole = data[: data.rfind(b"\n") + 1]
    entries = []
    for line in whole.splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries, offset + len(whole)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def entries_frame(entries: list[dict[str, Any]], table: str) -> pd.DataFrame:
    """The entries of one table as a typed canonical frame. They were checked when accepted, and the journal holds
    them as `event_rows` wrote them: they are typed again, not checked again (a check costs tens of milliseconds
    however few the rows)."""
    spec = TABLES[table]
    rows = [e["row"] for e in entries if e["table"] == table]
    frame = pd.DataFrame.from_records(rows, columns=list(spec.column_names))
    return frame.astype({c.name: stored_dtype(c) for c in spec.columns})


def events_since(dataset: Dataset, as_of: datetime) -> dict[str, pd.DataFrame]:
    """The dataset's stored events at or after `as_of` (ingested after the snapshot was built), by table."""
    out = {}
    for table in EVENT_TABLES:
        if dataset.has(table):
            frame = dataset.read(table, filters=[("ts", ">=", pd.Timestamp(as_of))])
            if len(frame):
                out[table] = frame
    return out
