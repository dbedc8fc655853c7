"""The online store as the service uses it: the snapshot's rows, members' fresh records, and the journal they
are kept from.

A posted event is checked by the data contract (features/dataset/events.py), made durable in the dataset's journal,
then folded into its member's fresh record here: the member's next answer counts it. Workers of one host follow
each other's events through the journal; at start the store replays the journal and what was ingested after the
snapshot was built.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pandas as pd

from features.common.errors import DataError
from features.common.progress import step
from features.dataset.event_log import RedisEventStream, event_log
from features.dataset.events import (
    EVENT_TABLES,
    Checked,
    Journal,
    check_events,
    entries_frame,
    entries_of,
    event_rows,
    events_since,
)
from features.dataset.store import Dataset
from features.pipelines.interactions import ITEM_SOURCES, ItemSource
from features.pipelines.snapshots import Snapshot
from serving.online.activity import ItemActivity
from serving.online.records import Entry, FreshStore, MemoryStore, Record, merged, open_store, unseen
from serving.online.table import EventFolder, OnlineTable, Row

SHARED_READ_SECONDS = 0.5


@dataclass
class OnlineStore:
    table: OnlineTable  # the snapshot's rows
    folder: EventFolder  # folds new events into rows
    fresh: FreshStore  # the records of members with events since the snapshot
    journal: Journal  # this host's event journal: the log where no Redis is configured
    stream: RedisEventStream | None  # the dataset's event stream in Redis, where one is
    journal_position: tuple[int, int] = (0, 0)  # how far this worker has read the journal (inode, offset)
    # Items posted and what happened to items since the snapshot, as this worker has seen them.
    activity: ItemActivity = field(default_factory=ItemActivity)
    shared_position: int = 0  # how far this worker has read the entries shared through Redis
    stream_position: bytes | str = "0"  # how far this worker has followed the event stream (a stream id)
    _folding: set[Future] = field(default_factory=set)  # this worker's folds of its own posts, under way
    shared_read_at: float = 0.0  # when (time.monotonic) it last looked
    listeners: list[Callable[[list[Entry]], None]] = field(default_factory=list)  # told of every new entry
    _following: threading.Lock = field(default_factory=threading.Lock)
    # Folds posted events in after their answer (`post`); one thread: folds take turns anyway.
    _background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="fold")
    )

    @classmethod
    def open(cls, dataset: Dataset, snapshot: Snapshot, as_of: date) -> OnlineStore:
        """The store of the dataset's snapshot as of `as_of`, with every event since it folded in."""
        table = OnlineTable.open(snapshot.path)
        cutoff = datetime.combine(as_of, datetime.min.time())
        folder = EventFolder(table.schema, cutoff, {name: _catalogue(dataset, s) for name, s in ITEM_SOURCES.items()})
        # Records belong to one snapshot: a rebuilt one (which holds the ingested events) starts from none.
        namespace = f"{dataset.name}:{as_of}:{snapshot.meta().get('built_at', '')}"
        log = event_log(dataset.home, dataset.name)
        stream = log if isinstance(log, RedisEventStream) else None
        store = cls(table, folder, open_store(namespace), Journal(dataset.home, dataset.name), stream)
        store.replay(dataset, cutoff)
        return store

    @property
    def log_name(self) -> str:
        """Where accepted events are kept until ingested."""
        return "journal" if self.stream is None else "redis stream"

    def describe(self) -> dict[str, Any]:
        return {
            "members": len(self.table),
            "fresh_members": self.fresh.size(),
            "online_store": self.fresh.description,
            "event_log": self.log_name,
            **self.activity.describe(),
        }

    def post(self, batch: dict[str, list[dict[str, Any]]]) -> tuple[Checked, list[Entry], list[str]]:
        """Checks the events and makes the good ones durable in the journal: (the checks, the entries kept, the
        members updated). In-process records fold them in from the journal right after, in the background, as
        they fold in other workers' events (`follow`): folding takes tens of milliseconds of DuckDB, which the
        caller need not wait for, and a read of this worker's first folds whatever is pending, so every answer
        after this one counts them. Records in Redis, shared by every worker, are folded in the background too:
        this worker's reads wait for it, the others fold from the stream, before their next answer, what nobody
        has yet (follow_stream)."""
        checked = check_events(batch)
        entries = (self.stream or self.journal).append(checked.rows)
        self.heard(entries)  # this worker's next answer counts them; the others' through the journal or Redis
        if self.fresh.shares:
            self.fresh.share(entries)
        if not isinstance(self.fresh, MemoryStore):
            # Records in Redis are folded after the answer too (a fold is tens of milliseconds of DuckDB): this
            # worker's reads wait for it; other workers and replicas fold from the stream what is not folded yet
            # (follow_stream), so a worker killed right after answering delays their count by a tick, no more.
            future = self._background.submit(self.fold, entries)
            self._folding.add(future)
            future.add_done_callback(self._folding.discard)
        else:
            self._background.submit(self.follow)
        return checked, entries, sorted({str(m) for e in entries if (m := e["row"].get("member_id")) is not None})

    def replay(self, dataset: Dataset, cutoff: datetime) -> None:
        """Folds in what the snapshot lacks: the journal's events, and those ingested since the snapshot was built.
        An event already folded in (another worker replayed it first) counts once."""
        entries, self.journal_position = self.journal.pending()  # a journal left from before Redis, too
        if self.stream is not None:
            streamed, self.stream_position = self.stream.pending()
            entries += streamed
        entries += entries_of({table: event_rows(frame) for table, frame in events_since(dataset, cutoff).items()})
        if entries:
            with step(f"folding {len(entries):,} events since the snapshot into members' rows"):
                self.fold(entries)
        self.heard(entries)
        self.read_shared(force=True)

    def follow(self) -> None:
        """Folds in the events other workers of this host accepted since this one last looked (their in-process
        stores are separate; the journal they all append to is not). One stat when nothing is new; Redis is shared
        by every worker already."""
        if not isinstance(self.fresh, MemoryStore):
            for folding in list(self._folding):  # this worker's own posts count in its next answer
                folding.result()
            with self._following:  # and every other worker's: what they took and have not folded yet
                self.follow_stream()
            self.read_shared()
            return
        try:
            stat = os.stat(self.journal.current)
            now = (stat.st_ino, stat.st_size)
        except FileNotFoundError:
            now = (0, 0)
        if now == self.journal_position:
            return
        with self._following:
            entries, position = self.journal.read_since(self.journal_position)
            if entries:
                self.fold(entries)
                self.heard(entries)
            # Moved only once folded: a read that finds the journal no longer than this (the check above, without
            # the lock) must find its events in the records, not a fold still under way in the background.
            self.journal_position = position

    def read_shared(self, force: bool = False) -> None:
        """Counts the items and evidence other workers and replicas shared through Redis since this one last
        looked, at most every SHARED_READ_SECONDS: a posted item is in every replica's answers within a second."""
        if not self.fresh.shares or (not force and time.monotonic() - self.shared_read_at < SHARED_READ_SECONDS):
            return
        with self._following:
            entries, self.shared_position = self.fresh.shared_since(self.shared_position)
            self.shared_read_at = time.monotonic()
        self.heard(entries)

    def follow_stream(self) -> None:
        """Folds the stream's entries since this worker last looked into the shared records where no worker has,
        before each read: an event another worker acknowledged counts in this worker's next answer even while
        its own fold is under way, or if it died (one Redis round trip when nothing is new; an entry already
        folded is skipped by its key, no DuckDB)."""
        if self.stream is None:
            return
        try:
            entries, self.stream_position = self.stream.read_since(self.stream_position)
        except DataError:  # Redis down: the records say so (fresh.down); the next tick asks again
            return
        if entries:
            self.fold(entries)

    def heard(self, entries: list[Entry]) -> None:
        """New entries, whichever way they came (posted here, the journal, Redis): the items' activity counts them,
        and so does every listener (the outreach desk's live contact log)."""
        self.activity.add(entries)
        for listener in self.listeners:
            listener(entries)

    def fold(self, entries: list[Entry]) -> list[str]:
        """Folds journal entries into the fresh records of their members (guest orders have none); returns them."""
        by_member: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            member = entry["row"].get("member_id")
            if member is not None:
                by_member[str(member)].append(entry)
        members = sorted(by_member)
        if members:
            self.fresh.update(members, lambda records: self._folded(records, by_member))
        return members

    def _folded(self, records: dict[str, Record | None], by_member: dict[str, list[Entry]]) -> dict[str, Record]:
        """The changed records: each member's row and items with their unseen entries folded in, in one pass."""
        new = {m: es for m in records if (es := unseen(records[m], by_member[m]))}
        if not new:
            return {}
        flat = [e for es in new.values() for e in es]
        base = {m: (record["row"] if (record := records[m]) else self.table.row(m)) for m in new}
        frames = {t: entries_frame(flat, t) for t in EVENT_TABLES}  # an empty frame where none
        folded = self.folder.fold(base, frames["orders"], frames["engagements"])
        return {
            m: merged(records[m], es, folded.rows[m], {x: by.get(m, {}) for x, by in folded.items.items()})
            for m, es in new.items()
        }

    def rows(self, member_ids: list[str]) -> dict[str, tuple[Row, float, bool]]:
        """Each known member's current row, their place in the snapshot's population, and whether events changed
        it."""
        self.follow()
        fresh = self.fresh.get(member_ids)
        out: dict[str, tuple[Row, float, bool]] = {}
        for member in member_ids:
            position = self.table.position(member)
            place = float(len(self.table) if position is None else position)
            if member in fresh:
                out[member] = (fresh[member]["row"], place, True)
            elif position is not None:
                out[member] = (self.table.row_at(position), place, False)
        return out

    def items(self, member_ids: list[str], matrix: str) -> dict[str, dict[str, float]]:
        """The new item interactions (of one matrix) of those members who have any since the snapshot."""
        self.follow()
        return {m: r["items"][matrix] for m, r in self.fresh.get(member_ids).items() if r["items"].get(matrix)}


def _catalogue(dataset: Dataset, source: ItemSource) -> pd.DataFrame:
    """A source's item ids and the attribute features read (category, content type): what new events are joined
    with."""
    table, columns = source.matrix, [source.id_column, source.category_column]
    frame = dataset.read(table, columns) if dataset.has(table) else pd.DataFrame(columns=columns)
    return frame.astype("string")
