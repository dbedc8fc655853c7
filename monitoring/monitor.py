"""One monitoring pass: the current snapshot and the recent predictions against the champion's reference, and
real performance where outcomes are known. `report` writes it out; `check` compares it with the thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.common.home import StateHome
from features.common.progress import step
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from monitoring.alerts import Alert, Profile, assess, calibrate, calibration_pairs, feature_weights, profile
from monitoring.drift import (
    DriftResult,
    compare,
    item_popularity,
    reference_recommendations,
    tier_share_changes,
)
from monitoring.performance import PerformancePoint, matured_performance, member_predictions, recommended_lists
from monitoring.reference import Reference, champion_reference
from monitoring.thresholds import MonitorSettings
from serving.models.base import ItemModel
from serving.models.kinds import Task
from serving.models.tiers import score_snapshot
from serving.prediction_log import read_log

if TYPE_CHECKING:  # Evidently loads where a report is made (monitoring/drift.py)
    from evidently.core.report import Snapshot as EvidentlySnapshot


@dataclass
class MonitorResult:
    dataset: str
    as_of: date
    reference: Reference
    data_drift: DriftResult
    prediction_drift: DriftResult
    prediction_source: str  # "prediction log" or "scored snapshot"
    tier_changes: dict[str, float]
    recs_drift: dict[str, DriftResult] = field(default_factory=dict)
    performance: list[PerformancePoint] = field(default_factory=list)
    performance_report: EvidentlySnapshot | None = None
    alerts: list[Alert] = field(default_factory=list)  # the calibrated rule's (monitoring/alerts.py)
    prediction_means: dict[str, float] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def model_label(self) -> str:
        """The champion versions, for report names: churn-v3_value-v2."""
        return "_".join(f"{name}-v{version}" for name, version in self.reference.versions.items())


def run_monitor(home: StateHome, dataset: Dataset, as_of: date, settings: MonitorSettings) -> MonitorResult:
    reference = champion_reference(dataset)
    with step(f"comparing {dataset.name} as of {as_of} with the reference snapshot as of {reference.as_of}"):
        build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=reference.horizon_days))
        current = Snapshot(dataset, as_of).features()
        reference_features = reference.features()
        columns = [c for c in reference_features.columns if c != "member_id"]
        data_drift = compare(reference_features, current, columns, settings.data_drift, when=as_of)

    # The whole log is read once: its recent days for prediction drift, all of it for matured performance.
    full_log = read_log(home)
    full_log = full_log[full_log["dataset"] == dataset.name] if "dataset" in full_log else pd.DataFrame()
    since = datetime.now(UTC).date() - timedelta(days=settings.prediction_drift.window_days)
    log = full_log[full_log["at"].str[:10] >= since.isoformat()] if not full_log.empty else full_log
    with step("comparing recent predictions with the champions' reference predictions"):
        reference_predictions = score_snapshot(reference_features, reference.champions)
        current_predictions, source = _current_predictions(log, current, reference)
        columns = [str(c.kind.output) for c in reference.champions.of(Task.member)] + ["tier"]
        prediction_drift = compare(
            reference_predictions, current_predictions, columns, settings.data_drift, preset=False
        )
        tiers = tier_share_changes(reference_predictions["tier"], current_predictions["tier"])
        recs_drift = _recs_drift(reference, log, settings)

    with step("measuring matured predictions against what members then did"):
        performance, performance_report = matured_performance(dataset, full_log, reference.horizon_days)
    alerts = calibrated_alerts(dataset, reference, as_of, settings) if settings.alerts.rule == "calibrated" else []
    return MonitorResult(
        dataset=dataset.name,
        as_of=as_of,
        reference=reference,
        data_drift=data_drift,
        prediction_drift=prediction_drift,
        prediction_source=source,
        tier_changes=tiers,
        recs_drift=recs_drift,
        performance=performance,
        performance_report=performance_report,
        alerts=alerts,
        prediction_means={
            c: float(current_predictions[c].mean())
            for c in ("churn_probability", "expected_value")
            if c in current_predictions
        },
    )


def calibrated_alerts(dataset: Dataset, reference: Reference, as_of: date, settings: MonitorSettings) -> list[Alert]:
    """The calibrated rule: the current profile against the reference's, each figure's threshold from pairs of
    history dates with the same gap (monitoring/alerts.py)."""
    with step(f"calibrating alerts on {settings.alerts.history_pairs} pairs of history dates"):
        profiles: dict[date, Profile] = {}  # the pairs share dates (a 30-day gap: every date twice)

        def at(day: date) -> Profile:
            if day not in profiles:
                profiles[day] = profile(reference.dataset, day, reference.champions, reference.horizon_days)
            return profiles[day]

        pairs = calibration_pairs(reference.as_of, as_of, settings.alerts.history_pairs)
        calibration = calibrate([(at(a), at(b)) for a, b in pairs], settings.alerts.margin)
        current = profile(dataset, as_of, reference.champions, reference.horizon_days)
    weights = feature_weights(reference.champions)
    return assess(at(reference.as_of), current, calibration, weights, settings.alerts.feature_share)


def _current_predictions(log: pd.DataFrame, current: pd.DataFrame, reference: Reference) -> tuple[pd.DataFrame, str]:
    """The recent logged answers, one per member (the latest); without any, the champions' answers on the
    current snapshot, so that prediction drift is still measured."""
    answers = member_predictions(log)
    if len(answers):
        rows = log.loc[answers.index]
        return rows.drop(columns=["member"]).reset_index(drop=True), f"prediction log ({len(rows):,} members)"
    return score_snapshot(current, reference.champions), "scored snapshot (no recent predictions logged)"


def _recs_drift(reference: Reference, log: pd.DataFrame, settings: MonitorSettings) -> dict[str, DriftResult]:
    """Popularity of recommended items, now against the champion's own lists on its training members: a
    recommender sliding towards best-sellers (or away from them) shows here first."""
    out = {}
    for champion in reference.champions.of(Task.items):
        recommender = champion.model
        assert isinstance(recommender, ItemModel)
        lists = recommended_lists(log, champion.kind)["items"]
        current_items = pd.Series([i for items in lists for i in items], dtype=str)
        if current_items.empty:
            continue
        reference_items = reference_recommendations(recommender, k=10)
        out[champion.kind.name] = compare(
            pd.DataFrame({"item_popularity": item_popularity(recommender, reference_items)}),
            pd.DataFrame({"item_popularity": item_popularity(recommender, current_items)}),
            ["item_popularity"],
            settings.data_drift,
            preset=False,
        )
    return out


def headline(result: MonitorResult) -> dict[str, Any]:
    """The figures ops read first, for the index page and for `check`."""
    latest = {p.model: p.metrics for p in result.performance}
    tier, change = max(result.tier_changes.items(), key=lambda item: abs(item[1]), default=("none", 0.0))
    return {
        "features": len(result.data_drift.columns),
        "drifted_features": len(result.data_drift.drifted),
        "drift_share": round(result.data_drift.share, 4),
        "drifted_predictions": result.prediction_drift.drifted,
        "largest_tier_share_change": {"tier": tier, "change": change},
        "drifted_recommendations": [k for k, d in result.recs_drift.items() if d.drifted],
        "performance": latest,
    }
