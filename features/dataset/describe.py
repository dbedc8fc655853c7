"""A dataset at a glance: rows per table, time span, members, guests, returns and what was set aside."""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from features.dataset.contract import TABLE_NAMES
from features.dataset.store import Dataset
from features.dataset.validation import reason_counts


class DatasetDescription(BaseModel):
    dataset: str
    path: str
    rows: dict[str, int]
    first_event: str | None
    last_event: str | None
    members: int
    members_with_orders: int
    guest_order_lines: int
    return_lines: int
    quarantined: dict[str, dict[str, int]]
    imports: int


def describe(dataset: Dataset) -> DatasetDescription:
    dataset.require()
    rows = {t: dataset.row_count(t) for t in TABLE_NAMES if dataset.has(t)}
    spans: list[pd.Timestamp] = []
    for table in ("orders", "engagements"):
        if dataset.has(table) and rows[table]:
            ts = dataset.read(table, ["ts"])["ts"]
            spans += [ts.min(), ts.max()]
    orders = dataset.read("orders", ["member_id", "is_return"])
    member_ids = set(orders["member_id"].dropna().unique())
    if dataset.has("members"):
        member_ids |= set(dataset.read("members", ["member_id"])["member_id"])
    if dataset.has("engagements"):
        member_ids |= set(dataset.read("engagements", ["member_id"])["member_id"].unique())
    quarantined = {
        t: reason_counts(dataset.read_quarantine(t)) for t in TABLE_NAMES if dataset.quarantine_path(t).exists()
    }
    return DatasetDescription(
        dataset=dataset.name,
        path=str(dataset.path),
        rows=rows,
        first_event=str(min(spans)) if spans else None,
        last_event=str(max(spans)) if spans else None,
        members=len(member_ids),
        members_with_orders=int(orders["member_id"].nunique()),
        guest_order_lines=int(orders["member_id"].isna().sum()),
        return_lines=int(orders["is_return"].fillna(False).astype(bool).sum()),
        quarantined=quarantined,
        imports=len(dataset.manifest()["imports"]),
    )
