"""What the catalogue's items went through since the snapshot: items posted (`POST /items`), and each item's takes
and impressions, as evidence for new items (serving/models/families/new_items.py: Evidence).

Every worker keeps its own `ItemActivity`, fed with every accepted entry exactly once (an entry's key is its
identity: a retry or a replay counts once): in the process, from the journal it follows; with Redis, from the
dataset's shared list of entries (records.py), which every worker and replica reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from features.dataset.contract import ITEM_TABLES
from features.dataset.events import entries_frame
from features.pipelines.interactions import ITEM_SOURCES
from serving.models.families.new_items import Evidence
from serving.online.records import Entry


@dataclass
class ItemActivity:
    items: dict[str, dict[str, Entry]] = field(default_factory=lambda: {t: {} for t in ITEM_TABLES})
    evidence: dict[str, Evidence] = field(default_factory=lambda: {t: Evidence() for t in ITEM_TABLES})
    version: int = 0  # grows with each item posted: the served models place the new ones
    _seen: set[str] = field(default_factory=set)
    _takers: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _shown_to: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _clickers: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entries: list[Entry]) -> int:
        """Counts the entries not yet counted; returns how many items were posted among them."""
        posted = 0
        with self._lock:
            for entry in entries:
                if entry["key"] in self._seen:
                    continue
                self._seen.add(entry["key"])
                table, row = entry["table"], entry["row"]
                if table in ITEM_TABLES:
                    self.items[table][str(row[ITEM_SOURCES[table].id_column])] = entry
                    posted += 1
                elif table == "impressions":
                    self._shown(row["source"], str(row["item_id"]), str(row["member_id"]))
                elif table == "orders" and row.get("product_id") and row.get("member_id") and not row.get("is_return"):
                    self._taken("products", str(row["product_id"]), str(row["member_id"]))
                elif table == "engagements" and row.get("content_id"):
                    self._taken("contents", str(row["content_id"]), str(row["member_id"]))
            if posted:
                self.version += 1
        return posted

    def _shown(self, source: str, item: str, member: str) -> None:
        evidence = self.evidence[source]
        evidence.shown[item] = evidence.shown.get(item, 0.0) + 1.0
        self._shown_to.setdefault((source, item), set()).add(member)

    def _taken(self, source: str, item: str, member: str) -> None:
        """A member took the item: one more taker (once per member), and a click where it was shown to them."""
        evidence = self.evidence[source]
        takers = self._takers.setdefault((source, item), set())
        if member not in takers:
            takers.add(member)
            evidence.takes[item] = float(len(takers))
        if member in self._shown_to.get((source, item), ()):
            clickers = self._clickers.setdefault((source, item), set())
            if member not in clickers:
                clickers.add(member)
                evidence.clicked[item] = float(len(clickers))

    def posted(self, table: str) -> pd.DataFrame:
        """The items posted to a catalogue table since the snapshot, typed, by item_id (the latest of each)."""
        with self._lock:
            entries = list(self.items[table].values())
        frame = entries_frame(entries, table)
        id_column = ITEM_SOURCES[table].id_column
        return frame.rename(columns={id_column: "item_id"}).astype({"item_id": str}).set_index("item_id")

    def describe(self) -> dict[str, Any]:
        return {
            "items_posted": {t: len(v) for t, v in self.items.items()},
            "impressions": {t: int(sum(e.shown.values())) for t, e in self.evidence.items()},
        }
