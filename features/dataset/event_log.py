"""The event log on a Redis stream: where replicas on machines that share no disk make posted events durable.

With `$COMMUNITY_ML_REDIS_URL` set, every accepted entry (the journal's: table, key, row) is appended to the
dataset's stream, `community-ml:events:<dataset>`, before the service answers; any host's `data ingest` moves what
the stream holds into the tables exactly once: it reads through a consumer group, writes the tables, and only then
acknowledges and deletes the entries. An ingest killed in between leaves them pending in the group; the next one
claims them and merges them again, which changes nothing (an event table's key is its whole row), as with the
journal's sealed segments.

Durability is Redis's: an entry is acknowledged once Redis has it, so Redis must write it to its append-only file
before answering. `appendonly yes` with `appendfsync always` loses nothing acknowledged, even when Redis's host
loses power; `appendfsync everysec` (Redis's default when AOF is on) may lose the last second of acknowledged
events; without AOF a Redis restart loses them all. The log checks the server's settings when it opens and refuses
to take events on less than `$COMMUNITY_ML_REDIS_FSYNC` (always, by default; everysec accepts the second).

Kafka is the other log people run: the service needs only `EventLog` (append, pending, read_since, batches), which a
Kafka topic meets (a produce with acks=all; ingest as a consumer group committing offsets after the tables are
written), so a Kafka log would be a second implementation of the same class, not a change to its callers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from pydantic import BaseModel

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.settings import project_settings
from features.dataset.events import JOURNALED, Journal, entries_frame, entries_of
from features.dataset.store import Dataset

Entry = dict[str, Any]
GROUP = "ingest"
READ_BATCH = 10_000  # entries per ingest batch


class EventLog(Protocol):
    """Where accepted events wait for `data ingest`: the journal file (one machine) or a stream."""

    def append(self, rows: dict[str, list[dict[str, Any]]]) -> list[Entry]: ...

    def pending(self) -> tuple[list[Entry], Any]: ...

    def read_since(self, position: Any) -> tuple[list[Entry], Any]: ...

    def batches(self) -> Iterator[tuple[str, list[Entry], Callable[[], None]]]: ...


class Unavailable(DataError):
    """The event log cannot take events now (Redis unreachable): nothing was acknowledged."""


class RedisEventStream:
    """The dataset's event stream in Redis."""

    def __init__(self, url: str, dataset: str, fsync: str = "always") -> None:
        import redis  # only where Redis is configured

        self.key = f"community-ml:events:{dataset}"
        self._errors = redis.RedisError
        # A Redis that stops answering must not hold /events: 2 s (an fsync'd write takes milliseconds), then 503.
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._fsync = fsync
        self._checked = False

    def _durable(self) -> None:
        """Refuses a Redis that may lose acknowledged events (checked once, at the first append)."""
        if self._checked:
            return
        try:
            config = self._redis.config_get("append*")
        except self._errors as exc:
            raise Unavailable(f"Redis does not answer or refuses CONFIG GET ({exc}): events are not taken") from exc
        said = {_text(k): _text(v).lower() for k, v in config.items()}
        aof, fsync = said.get("appendonly", "?"), said.get("appendfsync", "?")
        wanted = ("always",) if self._fsync == "always" else ("always", "everysec")
        if aof != "yes" or fsync not in wanted:
            raise DataError(
                f"Redis keeps events with appendonly {aof}, appendfsync {fsync}: an acknowledged "
                "event could be lost. Run it with `appendonly yes` and `appendfsync always`, or set "
                "COMMUNITY_ML_REDIS_FSYNC=everysec to accept losing the last second of events"
            )
        self._checked = True

    def append(self, rows: dict[str, list[dict[str, Any]]]) -> list[Entry]:
        """Adds the checked events (`Checked.rows`) as entries in one transaction; returns them once Redis has them
        (and, by its settings, on disk)."""
        entries = entries_of(rows)
        if not entries:
            return entries
        self._durable()
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                for entry in entries:
                    pipe.xadd(self.key, {"e": json.dumps(entry, separators=(",", ":"))})
                pipe.execute()
        except self._errors as exc:
            raise Unavailable(f"Redis does not answer ({exc}): the events were not taken; post them again") from exc
        return entries

    def read_since(self, position: bytes | str) -> tuple[list[Entry], bytes | str]:
        """Entries after the stream id `position` ("0": from the start), and the id of the last one read."""
        try:
            found = self._redis.xrange(self.key, min=f"({_text(position)}" if _text(position) != "0" else "-")
        except self._errors as exc:
            raise Unavailable(f"Redis does not answer ({exc})") from exc
        if not found:
            return [], position
        return [json.loads(fields[b"e"]) for _, fields in found], found[-1][0]

    def pending(self) -> tuple[list[Entry], bytes | str]:
        """Every entry the stream holds: accepted, not yet ingested (ingest deletes what it wrote)."""
        return self.read_since("0")

    def batches(self) -> Iterator[tuple[str, list[Entry], Callable[[], None]]]:
        """The stream's entries in batches, each acknowledged and deleted by its callback once the tables hold it:
        first those a killed ingest left pending, then the new ones."""
        import os
        import socket

        consumer = f"{socket.gethostname()}-{os.getpid()}"
        try:
            self._redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except self._errors as exc:
            if "BUSYGROUP" not in str(exc):
                raise Unavailable(f"Redis does not answer ({exc})") from exc
        start = "0-0"
        while True:  # entries another ingest read and never acknowledged: it was killed (or is slow: harmless)
            start, claimed, _ = self._redis.xautoclaim(self.key, GROUP, consumer, 0, start, count=READ_BATCH)[:3]
            if claimed:
                yield self._batch(claimed)
            if _text(start) == "0-0":
                break
        while True:
            read = self._redis.xreadgroup(GROUP, consumer, {self.key: ">"}, count=READ_BATCH)
            found = read[0][1] if read else []
            if not found:
                return
            yield self._batch(found)

    def _batch(self, found: list[tuple[bytes, dict[bytes, bytes]]]) -> tuple[str, list[Entry], Callable[[], None]]:
        ids = [entry_id for entry_id, fields in found]
        entries = [json.loads(fields[b"e"]) for _, fields in found if fields and b"e" in fields]

        def done() -> None:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.key, GROUP, *ids)
                pipe.xdel(self.key, *ids)
                pipe.execute()

        return f"stream {self.key} {_text(ids[0])}..{_text(ids[-1])}", entries, done


def event_log(home: StateHome, dataset: str) -> EventLog:
    """The dataset's event log: its Redis stream where `$COMMUNITY_ML_REDIS_URL` names a Redis, else the journal
    file in the home."""
    settings = project_settings()
    if settings.redis_url:
        return RedisEventStream(settings.redis_url, dataset, settings.redis_fsync)
    return Journal(home, dataset)


def pending_entries(home: StateHome, dataset: str) -> list[Entry]:
    """Every accepted entry not yet in the tables: the journal's (one left from before Redis, too) and the
    stream's."""
    log = event_log(home, dataset)
    entries = Journal(home, dataset).pending()[0]
    return entries if isinstance(log, Journal) else entries + log.pending()[0]


class IngestSummary(BaseModel):
    dataset: str
    segments: int
    events: dict[str, int]  # table -> events (or items) read from the journal
    added: dict[str, int]  # table -> rows new to the table (items: new ids; an update of one is not counted)
    seconds: float


def ingest(dataset: Dataset) -> IngestSummary:
    """Folds the accepted events into the dataset's tables, exactly once: the journal's, and the Redis stream's
    where one is configured (a journal left from before keeps its events until ingested)."""
    started = time.perf_counter()
    logs = [Journal(dataset.home, dataset.name)]
    stream = event_log(dataset.home, dataset.name)
    if not isinstance(stream, Journal):
        logs.append(stream)  # type: ignore[arg-type]
    events = dict.fromkeys(JOURNALED, 0)
    added = dict.fromkeys(JOURNALED, 0)
    batches = 0
    for log in logs:
        for source, entries, done in log.batches():
            for table in JOURNALED:
                frame = entries_frame(entries, table)
                if len(frame):
                    result = dataset.merge(table, frame)
                    events[table] += len(frame)
                    added[table] += result.added
            dataset.record({"source": source, "events": len(entries)})
            done()  # only now: killed before this line, the next ingest merges them again, changing nothing
            batches += 1
    read = [t for t in JOURNALED if events[t] or t in ("orders", "engagements")]  # the tables the log held
    return IngestSummary(
        dataset=dataset.name,
        segments=batches,
        events={t: events[t] for t in read},
        added={t: added[t] for t in read},
        seconds=round(time.perf_counter() - started, 2),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
