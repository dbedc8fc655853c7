"""Real performance, once outcomes are known: what was actually predicted (the prediction log) against what
members then did in the horizon. Predictions made as of T mature when the data reaches T + H."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition, Regression, Report
from evidently import Dataset as EvidentlyDataset
from evidently.core.report import Snapshot as EvidentlySnapshot
from evidently.presets import ClassificationPreset, RegressionPreset
from sklearn.metrics import brier_score_loss, roc_auc_score

from features.errors import DataError
from features.pseudonyms import pseudonym, pseudonym_key
from features.recommending import RecsKind
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot, dataset_span
from features.store import Dataset

MEMBER_ENDPOINTS = ("churn", "value", "batch/score")


@dataclass
class PerformancePoint:
    as_of: date
    model: str  # "churn-value", "product-recs" or "content-recs"
    members: int
    metrics: dict[str, float]


def member_performance(predictions: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, float]:
    """ROC-AUC and Brier score of churn probabilities; RMSE, MAE and total-spend error of expected value.
    `predictions`: member, churn_probability, expected_value; `outcomes`: member, churned, future_value."""
    joined = predictions.merge(outcomes, on="member", how="inner").dropna(subset=["churn_probability"])
    if joined.empty:
        return {}
    churned = joined["churned"].astype(int).to_numpy()
    probability = joined["churn_probability"].to_numpy(dtype=float)
    actual = joined["future_value"].to_numpy(dtype=float)
    predicted = joined["expected_value"].to_numpy(dtype=float)
    metrics = {
        "churn_rate": float(churned.mean()),
        "churn_brier": float(brier_score_loss(churned, probability)),
        "value_rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))),
        "value_mae": float(np.mean(np.abs(predicted - actual))),
    }
    if 0 < churned.sum() < len(churned):  # ROC-AUC needs both outcomes
        metrics["churn_roc_auc"] = float(roc_auc_score(churned, probability))
    if actual.sum() > 0:
        metrics["value_total_error_pct"] = float(100 * (predicted.sum() - actual.sum()) / actual.sum())
    return {k: round(v, 6) for k, v in metrics.items()}


def precision_at_k(lists: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Mean share of each list's items the member then bought or engaged with, over the members with any
    interaction in the horizon. `lists`: member, items (list of item ids); `truth`: member, item_id."""
    bought = truth.groupby("member")["item_id"].agg(set)
    scored = lists[lists["member"].isin(bought.index)]
    if scored.empty:
        return {}
    pairs = zip(scored["member"], scored["items"], strict=True)
    hits = [len(set(items) & bought[m]) / max(len(items), 1) for m, items in pairs]
    return {"precision_at_k": round(float(np.mean(hits)), 6), "k": int(scored["items"].map(len).max())}


def matured_performance(
    dataset: Dataset, log: pd.DataFrame, horizon_days: int
) -> tuple[list[PerformancePoint], EvidentlySnapshot | None]:
    """One point per (as-of date, model) whose horizon has passed in the data, oldest first, and Evidently's
    classification and regression report of the latest matured churn and value predictions."""
    if log.empty or "as_of" not in log:
        return [], None
    data_end = dataset_span(dataset)[1]
    logged = log[(log["dataset"] == dataset.name) & log["as_of"].notna()]
    key = pseudonym_key(dataset.home)
    points: list[PerformancePoint] = []
    latest: tuple[date, pd.DataFrame] | None = None
    for as_of_text, rows in logged.groupby("as_of"):
        as_of = date.fromisoformat(str(as_of_text))
        if datetime.combine(as_of + timedelta(days=horizon_days), datetime.min.time()) > data_end + timedelta(days=1):
            continue  # the horizon has not passed yet
        members = _member_predictions(rows)
        if not members.empty:
            outcomes = _outcomes(dataset, as_of, horizon_days, key)
            metrics = member_performance(members, outcomes)
            if metrics:
                points.append(PerformancePoint(as_of, "churn-value", len(members), metrics))
                latest = (as_of, members.merge(outcomes, on="member"))
        for kind in RecsKind:
            lists = recommended_lists(rows, kind).drop_duplicates("member", keep="last")
            if lists.empty:
                continue
            metrics = precision_at_k(lists, _interactions(dataset, kind, as_of, horizon_days, key))
            if metrics:
                points.append(PerformancePoint(as_of, kind.value, len(lists), metrics))
    points.sort(key=lambda p: (p.as_of, p.model))
    return points, (None if latest is None else _evidently_report(latest[1]))


def _member_predictions(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[rows["endpoint"].isin(MEMBER_ENDPOINTS)]
    if rows.empty or "churn_probability" not in rows:
        return pd.DataFrame()
    rows = rows.dropna(subset=["churn_probability"]).drop_duplicates("member", keep="last")
    return rows[["member", "churn_probability", "expected_value"]]


def recommended_lists(log: pd.DataFrame, kind: RecsKind) -> pd.DataFrame:
    """member, items (ids in rank order): every list the service or a batch export logged for `kind`."""
    if log.empty or "items" not in log:
        return pd.DataFrame({"member": [], "items": []})
    rows = log[log["endpoint"].isin([kind.value, f"batch/{kind.value}"])].dropna(subset=["items"])
    return pd.DataFrame({"member": rows["member"], "items": [[i["item_id"] for i in items] for items in rows["items"]]})


def _outcomes(dataset: Dataset, as_of: date, horizon_days: int, key: bytes) -> pd.DataFrame:
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon_days))
    labels = Snapshot(dataset, as_of).labels(horizon_days)
    return pd.DataFrame(
        {
            "member": [pseudonym(key, str(m)) for m in labels["member_id"]],
            "churned": labels["churned"].to_numpy(),
            "future_value": labels["future_value"].to_numpy(),
        }
    )


def _interactions(dataset: Dataset, kind: RecsKind, as_of: date, horizon_days: int, key: bytes) -> pd.DataFrame:
    """(member, item_id) for every purchase or content engagement in (as_of, as_of + H]."""
    table, item = ("orders", "product_id") if kind is RecsKind.products else ("engagements", "content_id")
    if not dataset.has(table):
        raise DataError(f"{dataset.name}: no {table} table to measure {kind.value} against")
    events = dataset.read(table, ["member_id", "ts", item])
    start = pd.Timestamp(as_of, tz=events["ts"].dt.tz)
    window = events[(events["ts"] >= start) & (events["ts"] < start + pd.Timedelta(days=horizon_days))]
    window = window.dropna(subset=[item])
    pseudonyms = {m: pseudonym(key, str(m)) for m in window["member_id"].unique()}
    return pd.DataFrame({"member": window["member_id"].map(pseudonyms), "item_id": window[item].astype(str)})


def _evidently_report(joined: pd.DataFrame) -> EvidentlySnapshot:
    frame = pd.DataFrame(
        {
            "churned": joined["churned"].astype(int),
            "churn_probability": joined["churn_probability"].astype(float),
            "future_value": joined["future_value"].astype(float),
            "expected_value": joined["expected_value"].astype(float),
        }
    )
    definition = DataDefinition(
        numerical_columns=list(frame.columns),
        classification=[BinaryClassification(target="churned", prediction_probas="churn_probability")],
        regression=[Regression(target="future_value", prediction="expected_value")],
    )
    report = Report([ClassificationPreset(), RegressionPreset()])
    return report.run(EvidentlyDataset.from_pandas(frame, data_definition=definition), None)


def performance_summary(points: list[PerformancePoint]) -> list[dict[str, Any]]:
    return [{"as_of": str(p.as_of), "model": p.model, "members": p.members, **p.metrics} for p in points]
