"""Batch scoring: every member of a snapshot through the champion models, with tiers and reasons."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from features.errors import DataError
from features.model_registry import connect, load_champion
from features.prediction_log import PredictionLog
from features.privacy import with_marketing_consent
from features.progress import step
from features.scoring import ModelKind
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot
from features.store import Dataset, write_parquet_atomic
from features.tiers import TierSettings, score_snapshot, tier_shares


class ScoreSummary(BaseModel):
    dataset: str
    as_of: date
    members: int
    churn_version: str
    value_version: str
    tier_shares: dict[str, float]
    out: str


def score_members(dataset: Dataset, as_of: date, tiers: TierSettings | None = None) -> tuple[pd.DataFrame, dict]:
    """member_id, churn_probability, expected_value, tier, top_reasons for every member known before `as_of`."""
    client = connect(dataset.home)
    churn, churn_version = load_champion(client, ModelKind.churn)
    value, value_version = load_champion(client, ModelKind.value)
    horizon = value.spec.horizon_days
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon))
    features = Snapshot(dataset, as_of).features()
    with step(f"scoring {len(features):,} members as of {as_of}"):
        out = score_snapshot(features, churn, value, tiers)
        out["top_reasons"] = [", ".join(r) for r in churn.top_reasons(features)]
    return out, {"churn": str(churn_version.version), "value": str(value_version.version)}


def log_batch(
    dataset: Dataset, endpoint: str, records: list[dict[str, Any]], versions: dict[str, str], as_of: date
) -> None:
    """Batch answers go to the prediction log like the service's: monitoring compares what was predicted."""
    started = time.perf_counter()
    PredictionLog(dataset.home, dataset.name).write(endpoint, records, versions, started, as_of=as_of)


def recommendation_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per member with its ranked items, from a member_id, rank, item_id, score table."""
    return [
        {"member_id": str(member), "items": group[["item_id", "rank", "score"]].to_dict("records")}
        for member, group in table.groupby("member_id", sort=False)
    ]


def check_out_path(path: Path) -> None:
    """Say so before any work, not after it, when the output file type is not one we write."""
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise DataError(f"--out {path}: use a .parquet or .csv file name")


def write_scores(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".parquet":
        write_parquet_atomic(frame, path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)


def score(dataset: Dataset, as_of: date, out: Path, tiers: TierSettings | None = None) -> ScoreSummary:
    check_out_path(out)
    frame, versions = score_members(dataset.require(), as_of, tiers)
    write_scores(frame, out)
    log_batch(dataset, "batch/score", frame.drop(columns=["top_reasons"]).to_dict("records"), versions, as_of)
    return ScoreSummary(
        dataset=dataset.name,
        as_of=as_of,
        members=len(frame),
        churn_version=versions["churn"],
        value_version=versions["value"],
        tier_shares=tier_shares(frame["tier"]),
        out=str(out),
    )


def winback(dataset: Dataset, as_of: date, out: Path, top: int | None = None) -> dict[str, int]:
    """Churn-risk members who gave marketing consent, most expected value first: a push list."""
    check_out_path(out)
    frame, _ = score_members(dataset.require(), as_of)
    at_risk = frame[frame["tier"] == "churn_risk"].sort_values("expected_value", ascending=False, kind="stable")
    kept, left_out = with_marketing_consent(dataset, at_risk["member_id"].astype(str).tolist())
    listed = at_risk[at_risk["member_id"].isin(set(kept))].head(top)
    write_scores(listed.reset_index(drop=True), out)
    return {"members": len(listed), "without_consent": left_out}
