"""Real performance, once outcomes are known: what was actually predicted (the prediction log) against what
members then did in the horizon. Predictions made as of T mature when the data reaches T + H.

What is measured follows the table of model kinds: each member kind's logged output against its label (ROC-AUC
and Brier score of a probability, RMSE, MAE and total error of an amount), and each item kind's logged lists
against the items members then took (precision@k).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from features.common.errors import DataError
from features.dataset.pseudonyms import pseudonym, pseudonym_key
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, dataset_span
from serving.models.kinds import ModelKind, Target, Task, kinds_of

if TYPE_CHECKING:  # Evidently loads where a report is made (monitoring/drift.py)
    from evidently.core.report import Snapshot as EvidentlySnapshot

MEMBERS = "members"  # the performance point of the member answers (churn, value, ...)
BOOTSTRAP_SAMPLES = 200  # resamples behind each variant's 95% intervals


@dataclass
class PerformancePoint:
    as_of: date
    model: str  # "members", or an item kind (product-recs, content-recs); "KIND (variant)" split by variant
    members: int
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95%, where split by variant


def kind_performance(kind: ModelKind, predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """One member kind's figures, named KIND_METRIC: churn_roc_auc, churn_brier, value_rmse, ..."""
    if kind.target is Target.binary:
        outcome = actual.astype(int)
        metrics = {"rate": float(outcome.mean()), "brier": float(brier_score_loss(outcome, predicted))}
        if 0 < outcome.sum() < len(outcome):  # ROC-AUC needs both outcomes
            metrics["roc_auc"] = float(roc_auc_score(outcome, predicted))
    else:
        metrics = {
            "rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))),
            "mae": float(np.mean(np.abs(predicted - actual))),
        }
        if actual.sum() > 0:
            metrics["total_error_pct"] = float(100 * (predicted.sum() - actual.sum()) / actual.sum())
    return {f"{kind.name}_{k}": round(v, 6) for k, v in metrics.items()}


def member_performance(predictions: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, float]:
    """Every member kind's figures where both its output and its label are there. `predictions`: member and the
    kinds' outputs (churn_probability, expected_value, ...); `outcomes`: member and the labels."""
    return joined_performance(predictions.merge(outcomes, on="member", how="inner"))


def joined_performance(joined: pd.DataFrame) -> dict[str, float]:
    """`member_performance` of predictions already joined with their outcomes (one row per member)."""
    metrics: dict[str, float] = {}
    for kind in kinds_of(Task.member):
        if kind.output in joined and kind.label in joined:
            rows = joined.dropna(subset=[kind.output, kind.label])
            if len(rows):
                predicted = rows[kind.output].to_numpy(dtype=float)
                metrics |= kind_performance(kind, predicted, rows[kind.label].to_numpy(dtype=float))
    return metrics


def precision_at_k(lists: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Mean share of each list's items the member then bought or engaged with, over the members with any
    interaction in the horizon. `lists`: member, items (list of item ids); `truth`: member, item_id."""
    return list_precision(lists, taken_items(truth))


def taken_items(truth: pd.DataFrame) -> pd.Series:
    """Each member's set of items taken: (member, item_id) rows grouped once."""
    return truth.groupby("member")["item_id"].agg(set)


def list_precision(lists: pd.DataFrame, bought: pd.Series) -> dict[str, float]:
    """`precision_at_k` against each member's items taken (`taken_items`)."""
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
    classification and regression report of the latest matured member predictions."""
    if log.empty or "as_of" not in log:
        return [], None
    data_end = dataset_span(dataset)[1]
    logged = log[(log["dataset"] == dataset.name) & log["as_of"].notna()]
    key = pseudonym_key(dataset.home)
    points: list[PerformancePoint] = []
    latest: pd.DataFrame | None = None
    for as_of_text, rows in logged.groupby("as_of"):
        as_of = date.fromisoformat(str(as_of_text))
        if datetime.combine(as_of + timedelta(days=horizon_days), datetime.min.time()) > data_end + timedelta(days=1):
            continue  # the horizon has not passed yet
        members = member_predictions(rows)
        if not members.empty:
            outcomes = _outcomes(dataset, as_of, horizon_days, key)
            joined = members.merge(outcomes, on="member", how="inner")
            metrics = joined_performance(joined)
            if metrics:
                points.append(PerformancePoint(as_of, MEMBERS, len(members), metrics))
                latest = joined
                points += by_variant(as_of, MEMBERS, joined, joined_performance)
        for kind in kinds_of(Task.items):
            lists = recommended_lists(rows, kind).drop_duplicates("member", keep="last")
            if lists.empty:
                continue
            bought = taken_items(_interactions(dataset, kind, as_of, horizon_days, key))
            metrics = list_precision(lists, bought)
            if metrics:
                points.append(PerformancePoint(as_of, kind.name, len(lists), metrics))
                points += by_variant(as_of, kind.name, lists, partial(list_precision, bought=bought))
    points.sort(key=lambda p: (p.as_of, p.model))
    return points, (None if latest is None else _evidently_report(latest))


def by_variant(
    as_of: date,
    model: str,
    predictions: pd.DataFrame,
    measure: Callable[[pd.DataFrame], dict[str, float]],
    samples: int = BOOTSTRAP_SAMPLES,
) -> list[PerformancePoint]:
    """Where a challenger answered some members (the log names each answer's variant), each variant's figures
    with 95% bootstrap intervals (members resampled), so champion and challenger are compared on the outcomes of
    their own members. `predictions` carry what `measure` needs (joined with outcomes already: a resample is
    measured, not joined again)."""
    if "variant" not in predictions or predictions["variant"].dropna().nunique() < 2:
        return []
    points = []
    rng = np.random.default_rng(0)
    for variant, part in predictions.dropna(subset=["variant"]).groupby("variant"):
        metrics = measure(part)
        if not metrics:
            continue
        draws = [measure(part.iloc[rng.integers(0, len(part), len(part))]) for _ in range(samples)]
        intervals = {
            name: (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
            for name in metrics
            if name != "k" and len(values := [d[name] for d in draws if name in d]) >= samples // 2
        }
        points.append(PerformancePoint(as_of, f"{model} ({variant})", len(part), metrics, intervals))
    return points


def member_predictions(rows: pd.DataFrame) -> pd.DataFrame:
    """member, each member kind's output (and the variant, where a challenger answered): the latest logged member
    answer of each member."""
    outputs = [str(k.output) for k in kinds_of(Task.member) if k.output in rows]
    if rows.empty or not outputs:
        return pd.DataFrame()
    rows = rows.dropna(subset=outputs, how="all").drop_duplicates("member", keep="last")
    return rows[["member", *outputs, *(["variant"] if "variant" in rows else [])]]


def recommended_lists(log: pd.DataFrame, kind: ModelKind) -> pd.DataFrame:
    """member, items (ids in rank order), and the variant where a challenger answered: every list the service or a
    batch export logged for `kind`."""
    if log.empty or "items" not in log:
        return pd.DataFrame({"member": [], "items": []})
    rows = log[log["endpoint"].isin([kind.name, f"batch/{kind.name}"])].dropna(subset=["items"])
    items = [[i["item_id"] for i in listed] for listed in rows["items"]]
    lists = pd.DataFrame({"member": rows["member"], "items": items})
    return lists.assign(variant=rows["variant"]) if "variant" in rows else lists


def _outcomes(dataset: Dataset, as_of: date, horizon_days: int, key: bytes) -> pd.DataFrame:
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon_days))
    labels = Snapshot(dataset, as_of).labels(horizon_days)
    out = labels.drop(columns=["member_id"]).assign(member=[pseudonym(key, str(m)) for m in labels["member_id"]])
    return out


def _interactions(dataset: Dataset, kind: ModelKind, as_of: date, horizon_days: int, key: bytes) -> pd.DataFrame:
    """(member, item_id) for every purchase or content engagement in (as_of, as_of + H]."""
    assert kind.items is not None
    table, item = kind.items.events, kind.items.id_column
    if not dataset.has(table):
        raise DataError(f"{dataset.name}: no {table} table to measure {kind.name} against")
    events = dataset.read(table, ["member_id", "ts", item])
    start = pd.Timestamp(as_of, tz=events["ts"].dt.tz)
    window = events[(events["ts"] >= start) & (events["ts"] < start + pd.Timedelta(days=horizon_days))]
    window = window.dropna(subset=[item])
    pseudonyms = {m: pseudonym(key, str(m)) for m in window["member_id"].unique()}
    return pd.DataFrame({"member": window["member_id"].map(pseudonyms), "item_id": window[item].astype(str)})


def _evidently_report(joined: pd.DataFrame) -> EvidentlySnapshot:
    """Evidently's classification report of each binary kind and regression report of each amount kind."""
    from evidently import BinaryClassification, DataDefinition, Regression, Report
    from evidently import Dataset as EvidentlyDataset
    from evidently.presets import ClassificationPreset, RegressionPreset

    frame, classification, regression = pd.DataFrame(index=joined.index), [], []
    for kind in kinds_of(Task.member):
        if kind.output not in joined or kind.label not in joined:
            continue
        binary = kind.target is Target.binary
        frame[kind.label] = joined[kind.label].astype(int if binary else float)
        frame[kind.output] = joined[kind.output].astype(float)
        if binary:
            classification.append(BinaryClassification(target=kind.label, prediction_probas=kind.output))
        else:
            regression.append(Regression(target=kind.label, prediction=kind.output))
    frame = frame.dropna()
    definition = DataDefinition(
        numerical_columns=list(frame.columns), classification=classification, regression=regression
    )
    presets: list[Any] = [ClassificationPreset()] * bool(classification) + [RegressionPreset()] * bool(regression)
    return Report(presets).run(EvidentlyDataset.from_pandas(frame, data_definition=definition), None)


def performance_summary(points: list[PerformancePoint]) -> list[dict[str, Any]]:
    return [
        {
            "as_of": str(p.as_of),
            "model": p.model,
            "members": p.members,
            **p.metrics,
            **({"intervals": {k: list(v) for k, v in p.intervals.items()}} if p.intervals else {}),
        }
        for p in points
    ]
