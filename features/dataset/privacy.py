"""A member's right to see and delete their data: export everything held about them, or forget them.

Forgetting removes the member from the canonical tables, the quarantine, the synthetic ground truth, every
feature snapshot and interaction matrix of the dataset (derived data: they rebuild without the member), and the
prediction logs. The member's pseudonym joins the dataset's forgotten list, so a later import of the same
source file does not bring them back, and the service treats them as unknown after its next reload. The audit
log records each request by pseudonym only, never the raw id.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features.common.columns import LAYOUT_FILE, Columns
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.event_log import ingest
from features.dataset.pseudonyms import pseudonym, pseudonym_key
from features.dataset.store import Dataset, write_json_atomic, write_parquet_atomic

MEMBER_TABLES = ("members", "orders", "engagements", "exposures", "feedback", "surveys", "impressions", "contacts")
FORGOTTEN_FILE = "forgotten.json"


class ForgetSummary(BaseModel):
    dataset: str
    member: str  # the pseudonym
    removed: dict[str, int]


def forgotten(dataset: Dataset) -> set[str]:
    """Pseudonyms of the members forgotten in this dataset."""
    path = dataset.path / FORGOTTEN_FILE
    return set(json.loads(path.read_text())["members"]) if path.exists() else set()


def forgotten_mask(dataset: Dataset, member_ids: pd.Series) -> pd.Series:
    """True for rows of forgotten members (empty member ids, guest orders, are never forgotten members)."""
    gone = forgotten(dataset)
    if not gone or member_ids.empty:
        return pd.Series(False, index=member_ids.index)
    key = pseudonym_key(dataset.home)
    ids = member_ids.dropna().astype(str).unique()
    hit = {m for m in ids if pseudonym(key, m) in gone}
    return member_ids.astype("string").isin(hit).fillna(False).astype(bool)


def with_marketing_consent(
    dataset: Dataset, member_ids: list[str], unrecorded_agreed: bool = False
) -> tuple[list[str], int]:
    """The members who gave marketing consent, in the given order, and how many were left out. Push lists
    (batch recommendation exports, win-back lists) go through here: no recorded consent, no push, unless the
    caller vouches that consent missing here is recorded elsewhere (`unrecorded_agreed`, e.g. a dataset of
    interactions only). A recorded refusal is always honoured."""
    members = dataset.read("members", ["member_id", "consent_marketing"])
    consent = members.set_index("member_id")["consent_marketing"].astype("boolean")
    consent.index = consent.index.astype(str)
    recorded = consent.reindex(pd.Index(member_ids, dtype=str))
    allowed = recorded.fillna(unrecorded_agreed).astype(bool).to_numpy()
    kept = [m for m, ok in zip(member_ids, allowed, strict=True) if ok]
    return kept, len(member_ids) - len(kept)


def export_member(dataset: Dataset, member_id: str, out: Path) -> dict[str, int]:
    """Writes every row held about the member to `out` (JSON); returns the number of rows per part."""
    dataset.require()
    key = pseudonym_key(dataset.home)
    parts: dict[str, Any] = {"tables": {}, "quarantine": {}}
    for table in MEMBER_TABLES:
        rows = dataset.read(table)
        parts["tables"][table] = _records(rows[rows["member_id"] == member_id])
        parts["quarantine"][table] = _records(_quarantined(dataset, table, member_id))
    # Keyed by snapshot and file (as_of=T/features.parquet, as_of=T/labels_h90.parquet, and a member sample's
    # sample=N/as_of=T/...): each holds the member.
    root = dataset.home.features / dataset.name
    parts["features"] = {
        "/".join(path.relative_to(root).parts[1:]): _records(_member_rows(path, member_id))
        for path in _snapshot_files(dataset, "*.parquet")
    }
    # The profile's history kept beside each snapshot (favourites, price sensitivity, last contacts:
    # features/profiles/book.py) is a profile of the member: its own part, read from its lookup layout.
    parts["profiles"] = {
        "/".join(folder.relative_to(root).parts[1:]): _profile_rows(folder, member_id)
        for folder in (path.parent for path in _snapshot_files(dataset, f"profile-*/{LAYOUT_FILE}"))
    }
    parts["predictions"] = _log_lines(dataset.home, dataset.name, pseudonym(key, member_id))
    counts = {
        "tables": sum(len(v) for v in parts["tables"].values()),
        "quarantine": sum(len(v) for v in parts["quarantine"].values()),
        "features": sum(len(v) for v in parts["features"].values()),
        "profiles": sum(len(v) for v in parts["profiles"].values()),
        "predictions": len(parts["predictions"]),
    }
    if counts["tables"] == 0 and counts["quarantine"] == 0:
        raise DataError(f"member {member_id!r} is not in dataset {dataset.name!r}: nothing is held about them")
    payload = {
        "member_id": member_id,
        "dataset": dataset.name,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **parts,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    tmp.replace(out)
    audit(dataset.home, "export", dataset.name, pseudonym(key, member_id), counts)
    return counts


def forget_member(dataset: Dataset, member_id: str) -> ForgetSummary:
    """Removes the member everywhere the dataset's data lives; see the module's docstring."""
    dataset.require()
    key = pseudonym_key(dataset.home)
    member = pseudonym(key, member_id)
    removed: dict[str, int] = {}
    ingest(dataset)  # events the service accepted but nobody ingested yet join the tables first, and go with them
    for table in MEMBER_TABLES:
        if dataset.has(table):
            rows = dataset.read(table)
            keep = rows["member_id"] != member_id
            removed[table] = int((~keep.fillna(True)).sum())
            if removed[table]:
                dataset.write(table, rows[keep.fillna(True)])
        if dataset.quarantine_path(table).exists():
            quarantined = dataset.read_quarantine(table)
            mentions = _mentions(quarantined, member_id)
            removed[f"quarantine/{table}"] = int(mentions.sum())
            if mentions.any():
                write_parquet_atomic(quarantined[~mentions], dataset.quarantine_path(table))
    truth = dataset.path / "truth.parquet"
    if truth.exists():
        frame = pd.read_parquet(truth)
        removed["truth"] = int((frame["member_id"] == member_id).sum())
        write_parquet_atomic(frame[frame["member_id"] != member_id], truth)
    snapshots = dataset.home.features / dataset.name
    removed["feature_snapshots"] = sum(1 for _ in snapshots.glob("v*/**/as_of=*")) if snapshots.exists() else 0
    shutil.rmtree(snapshots, ignore_errors=True)  # derived data: rebuilt without the member when next needed
    removed["prediction_log_lines"] = _drop_log_lines(dataset.home, member)
    path = dataset.path / FORGOTTEN_FILE
    write_json_atomic({"members": sorted(forgotten(dataset) | {member})}, path)
    audit(dataset.home, "forget", dataset.name, member, removed)
    return ForgetSummary(dataset=dataset.name, member=member, removed=removed)


def audit(home: StateHome, action: str, dataset: str, member: str, counts: dict[str, int]) -> None:
    """One line per privacy request in `privacy/audit.jsonl`: when, what, which pseudonym, how many rows."""
    path = home.root / "privacy" / "audit.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "action": action, "dataset": dataset}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({**entry, "member": member, "rows": counts}) + "\n")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _mentions(quarantined: pd.DataFrame, member_id: str) -> pd.Series:
    """Set-aside rows whose raw row (JSON, or the broken CSV line inside it) holds the id as a whole value."""
    raw = quarantined["raw"].astype("string").fillna("")
    pattern = rf"(?:^|[,\t\"']){re.escape(member_id)}(?:$|[,\t\"'\\])"
    return raw.str.contains(pattern, regex=True).fillna(False).astype(bool)


def _quarantined(dataset: Dataset, table: str, member_id: str) -> pd.DataFrame:
    quarantined = dataset.read_quarantine(table)
    return quarantined[_mentions(quarantined, member_id)]


def _snapshot_files(dataset: Dataset, pattern: str) -> list[Path]:
    return sorted((dataset.home.features / dataset.name).glob(f"v*/**/as_of=*/{pattern}"))


def _profile_rows(folder: Path, member_id: str) -> list[dict[str, Any]]:
    history = Columns.open(folder)
    at = history.position(member_id)
    if at is None:
        return []
    values = history.arrays(np.array([at]))
    return [{"member_id": member_id, **{name: _plain(column[0]) for name, column in values.items()}}]


def _plain(value: Any) -> Any:
    return None if value is None or value != value else value.item() if hasattr(value, "item") else value


def _member_rows(path: Path, member_id: str) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    return frame[frame["member_id"] == member_id] if "member_id" in frame else frame.iloc[0:0]


def _log_lines(home: StateHome, dataset: str, member: str) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(home.logs.glob("predictions-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if member in line:
                entry = json.loads(line)
                if entry.get("member") == member and entry.get("dataset") in (dataset, None):
                    lines.append(entry)
    return lines


def _drop_log_lines(home: StateHome, member: str) -> int:
    """Rewrites each prediction log without the member's lines (atomically: a reader sees old or new, and the
    service reopens a replaced file before its next write)."""
    dropped = 0
    for path in sorted(home.logs.glob("predictions-*.jsonl")):
        text = path.read_text(encoding="utf-8")
        if member not in text:
            continue
        kept = [line for line in text.splitlines() if f'"member": "{member}"' not in line]
        dropped += len(text.splitlines()) - len(kept)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        tmp.replace(path)
    return dropped
