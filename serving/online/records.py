"""Where fresh records live: members whose events arrived since the snapshot the service serves (table.py).

One record per member: their updated feature row, their new item interactions by matrix, and the keys of the
events already folded into it, so an event delivered twice (a client's retry, two workers replaying the journal
at start) counts once. A record is updated as a whole, atomically:
- `MemoryStore`: in the service process (the default): one worker sees its own events.
- `RedisStore`: in Redis (`$COMMUNITY_ML_REDIS_URL`), shared by every worker and replica; an optimistic
  transaction (WATCH/MULTI) per batch, retried when another worker changed one of its members meanwhile.

Records belong to one snapshot (the namespace names the dataset, the as-of date and when it was built): a new
snapshot, which holds the ingested events itself, starts from empty records.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from features.common.errors import DataError
from features.common.settings import Settings, project_settings

REDIS_URL_ENV = Settings.variable("redis_url")
RECORD_TTL_SECONDS = 14 * 24 * 3600  # records of a snapshot no longer served expire by themselves
Record = dict[str, Any]  # {"row": {...}, "items": {"products": {item: weight}}, "events": [key, ...]}
Entry = dict[str, Any]  # a journal entry: {"table": ..., "key": ..., "row": {...}}
Change = Callable[[dict[str, Record | None]], dict[str, Record]]


def unseen(record: Record | None, entries: list[Entry]) -> list[Entry]:
    """The entries not yet folded into the record: an event delivered twice (a retry, a replay) counts once."""
    seen = set((record or {}).get("events", []))
    return [e for e in entries if e["key"] not in seen]


def merged(
    record: Record | None, entries: list[Entry], row: dict[str, Any], items: dict[str, dict[str, float]]
) -> Record:
    """The record with `entries` folded in: `row`, the member's row with them (table.py's `EventFolder`), and
    `items`, their new item weights by matrix, added to the record's own."""
    record = record or {"row": None, "items": {}, "events": []}
    weights = {matrix: dict(by_item) for matrix, by_item in record["items"].items()}
    for matrix, by_item in items.items():
        for item, weight in by_item.items():
            weights.setdefault(matrix, {})[item] = weights.get(matrix, {}).get(item, 0.0) + weight
    return {"row": row, "items": weights, "events": [*record["events"], *(e["key"] for e in entries)]}


class FreshStore(ABC):
    """Fresh records of one snapshot's members."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.down: str | None = None  # why fresh records cannot be read now (answers are the snapshot's)

    @abstractmethod
    def get(self, member_ids: list[str]) -> dict[str, Record]:
        """The records of those members that have one."""

    @abstractmethod
    def update(self, member_ids: list[str], change: Change) -> None:
        """Applies `change` to these members' current records (None: none yet) and stores what it returns, as
        one atomic step."""

    @abstractmethod
    def size(self) -> int:
        """How many members have a fresh record."""

    def share(self, entries: list[Entry]) -> None:
        """Makes accepted entries visible to every worker and replica (`shared_since`). In the process, workers
        read each other's from the journal instead: nothing to do."""
        return None

    def shared_since(self, position: int) -> tuple[list[Entry], int]:
        """The entries shared since `position` (0: all of this snapshot's), and the position after them."""
        return [], position

    @property
    def shares(self) -> bool:
        """Whether entries reach other workers through this store (else through the journal)."""
        return False

    @property
    def description(self) -> str:
        return type(self).__name__


class MemoryStore(FreshStore):
    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self._records: dict[str, Record] = {}
        self._lock = threading.Lock()

    def get(self, member_ids: list[str]) -> dict[str, Record]:
        records = self._records
        return {m: records[m] for m in member_ids if m in records}

    def update(self, member_ids: list[str], change: Change) -> None:
        with self._lock:
            changed = change({m: self._records.get(m) for m in member_ids})
            self._records.update(changed)

    def size(self) -> int:
        return len(self._records)

    @property
    def description(self) -> str:
        return "in-process"


class RedisStore(FreshStore):
    def __init__(self, namespace: str, url: str) -> None:
        import redis  # only where Redis is configured

        super().__init__(namespace)
        self.url = url
        # A Redis that stops answering must not hold requests: half a second, then the snapshot answers.
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._watch_error, self._errors = redis.WatchError, redis.RedisError
        self._retry_at = 0.0
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise DataError(f"${REDIS_URL_ENV}={url}: Redis does not answer ({exc})") from exc

    def _guarded(self, call: Callable[[], Any], default: Any) -> Any:
        """`call`, or `default` while Redis does not answer (`down` says so; it is asked again after a second,
        not at every request)."""
        if self.down is not None and time.monotonic() < self._retry_at:
            return default
        try:
            result = call()
        except self._errors as exc:
            self.down = (
                f"Redis does not answer ({type(exc).__name__}): answers are the snapshot's, without events since"
            )
            self._retry_at = time.monotonic() + 1.0
            return default
        self.down = None
        return result

    def _key(self, member_id: str) -> str:
        return f"community-ml:{self.namespace}:member:{member_id}"

    def get(self, member_ids: list[str]) -> dict[str, Record]:
        values = self._guarded(lambda: self._redis.mget([self._key(m) for m in member_ids]), [None] * len(member_ids))
        return {m: json.loads(v) for m, v in zip(member_ids, values, strict=True) if v is not None}

    def update(self, member_ids: list[str], change: Change) -> None:
        keys = [self._key(m) for m in member_ids]
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*keys)
                    values = pipe.mget(keys)
                    current = {m: None if v is None else json.loads(v) for m, v in zip(member_ids, values, strict=True)}
                    changed = change(current)
                    pipe.multi()
                    for member, record in changed.items():
                        pipe.set(self._key(member), json.dumps(record), ex=RECORD_TTL_SECONDS)
                    pipe.execute()
                    return
                except self._watch_error:  # another worker changed one of these members: read them again
                    continue

    def size(self) -> int:
        return sum(1 for _ in self._redis.scan_iter(match=self._key("*"), count=1000))

    @property
    def _shared(self) -> str:
        return f"community-ml:{self.namespace}:shared"

    def share(self, entries: list[Entry]) -> None:
        if entries:
            with self._redis.pipeline() as pipe:
                pipe.rpush(self._shared, *(json.dumps(e) for e in entries))
                pipe.expire(self._shared, RECORD_TTL_SECONDS)
                pipe.execute()

    def shared_since(self, position: int) -> tuple[list[Entry], int]:
        values = self._guarded(lambda: self._redis.lrange(self._shared, position, -1), [])
        return [json.loads(v) for v in values], position + len(values)

    @property
    def shares(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return "redis"  # not the URL: it may hold a password, and answers show this


def open_store(namespace: str) -> FreshStore:
    """Redis where `$COMMUNITY_ML_REDIS_URL` names one, else the in-process store."""
    url = project_settings().redis_url
    return RedisStore(namespace, url) if url else MemoryStore(namespace)
