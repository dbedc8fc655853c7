"""Batch scoring: every member of a snapshot through the champion models, with tiers and reasons."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from features.errors import DataError
from features.model_registry import connect, load_champion
from features.progress import step
from features.scoring import ModelKind
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot
from features.store import Dataset, write_parquet_atomic
from features.tiers import TierSettings, assign_tiers, tier_shares


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
        probability = churn.predict(features)
        expected = value.predict(features)
        out = pd.DataFrame(
            {
                "member_id": features["member_id"],
                "churn_probability": probability,
                "expected_value": expected,
                "tier": assign_tiers(
                    probability,
                    expected,
                    features["spend_180d"].to_numpy(dtype=float),
                    features["tenure_days"].to_numpy(dtype=float),
                    features["frequency"].to_numpy(dtype=float),
                    tiers,
                ),
                "top_reasons": [", ".join(r) for r in churn.top_reasons(features)],
            }
        )
    return out, {"churn": str(churn_version.version), "value": str(value_version.version)}


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
    return ScoreSummary(
        dataset=dataset.name,
        as_of=as_of,
        members=len(frame),
        churn_version=versions["churn"],
        value_version=versions["value"],
        tier_shares=tier_shares(frame["tier"]),
        out=str(out),
    )
