"""The prediction log: one JSON line per answered member, written by the service and by batch scoring,
read by monitoring. Member ids are keyed hashes (HMAC-SHA256), never raw: the log can be kept and shared.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.common.home import StateHome
from features.dataset.pseudonyms import pseudonym, pseudonym_key


class PredictionLog:
    """Appends one JSON line per prediction. Each batch of lines goes to the OS in one `write` before the call
    returns, so a crash of the service loses nothing already answered. Member ids are keyed hashes, never raw."""

    def __init__(self, home: StateHome, dataset: str) -> None:
        self.dataset = dataset
        self.folder = home.logs
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = pseudonym_key(home)
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._fd: int | None = None
        self._inode = -1
        self._pseudonyms: dict[str, str] = {}  # members come back: hash each once (bounded below)

    def pseudonym(self, member_id: str) -> str:
        known = self._pseudonyms.get(member_id)
        if known is None:
            if len(self._pseudonyms) > 200_000:
                self._pseudonyms.clear()
            known = self._pseudonyms[member_id] = pseudonym(self.key, member_id)
        return known

    def _replaced(self) -> bool:
        """Whether the open file is no longer the one at its path (`privacy forget` rewrote it): one stat."""
        try:
            return os.stat(self._path).st_ino != self._inode if self._path else False
        except FileNotFoundError:
            return True

    def write(
        self,
        endpoint: str,
        records: list[dict[str, Any]],
        versions: dict[str, str],
        started: float,
        inputs: dict[str, Any] | None = None,
        as_of: date | None = None,
    ) -> None:
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        now = datetime.now(UTC)
        path = self.folder / f"predictions-{now:%Y-%m-%d}.jsonl"
        common = {
            "at": now.isoformat(timespec="milliseconds"),
            "dataset": self.dataset,
            "endpoint": endpoint,
            "as_of": None if as_of is None else str(as_of),
        }
        shared_inputs = inputs or {}
        tail = {"versions": versions, "latency_ms": latency_ms}
        text = "".join(
            json.dumps(
                {
                    **common,
                    "member": self.pseudonym(r["member_id"]),
                    "output": {k: v for k, v in r.items() if k not in ("member_id", "inputs")},
                    # a record's own inputs (the feature values behind it) join the request's
                    "inputs": {**shared_inputs, **r["inputs"]} if "inputs" in r else shared_inputs,
                    **tail,
                },
                default=str,
            )
            + "\n"
            for r in records
        )
        with self._lock:
            if self._fd is None or self._path != path or self._replaced():  # a new day, or a forget rewrote it
                if self._fd is not None:
                    os.close(self._fd)
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._path, self._inode = path, os.fstat(self._fd).st_ino
            data = text.encode()
            while data:  # a regular file takes it whole; a full disk raises instead of losing lines quietly
                data = data[os.write(self._fd, data) :]


def read_log(home: StateHome) -> pd.DataFrame:
    """Every logged prediction, one row per line: at, dataset, endpoint, as_of, member, versions, and the
    output's fields (churn_probability, expected_value, tier, items). A torn last line (a crash mid-write) is
    skipped: everything before it was written whole."""
    rows: list[dict[str, Any]] = []
    for path in sorted(home.logs.glob("predictions-*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                output = entry.pop("output", {}) or {}
                entry.pop("inputs", None)
                rows.append({**entry, **output})
    return pd.DataFrame(rows)
