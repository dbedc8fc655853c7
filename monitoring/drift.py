"""Data drift and prediction drift with Evidently: per-column tests, chosen by column type and size.

Evidently picks each column's test (Kolmogorov-Smirnov or chi-square for small samples, Wasserstein distance or
Jensen-Shannon distance for large ones) unless the settings name one; a column drifts when its test says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monitoring.thresholds import DataDriftSettings
from serving.models.base import ItemModel
from serving.models.tiers import TIERS

if TYPE_CHECKING:  # Evidently takes seconds to import: it loads where a report is made, not with the package
    from evidently import DataDefinition
    from evidently.core.report import Snapshot as EvidentlySnapshot

# Members whose recommendations stand for the reference: enough for a stable distribution, quick to compute.
REFERENCE_RECS_MEMBERS = 2_000


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    report: EvidentlySnapshot | None = None
    not_compared: list[str] = field(default_factory=list)  # empty on one side: nothing to compare

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted) / len(self.columns) if self.columns else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "columns": len(self.columns),
            "drifted": len(self.drifted),
            "drift_share": round(self.share, 4),
            "drifted_columns": self.drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "not_compared": self.not_compared,
            "tests": [vars(c) for c in self.columns],
        }


def _definition(frame: pd.DataFrame, columns: list[str]) -> DataDefinition:
    from evidently import DataDefinition

    numeric = [
        c for c in columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    return DataDefinition(numerical_columns=numeric, categorical_columns=[c for c in columns if c not in numeric])


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    settings: DataDriftSettings | None = None,
    preset: bool = True,
    when: date | None = None,
) -> DriftResult:
    """Evidently's drift test on every column present and non-empty on both sides."""
    from evidently import Dataset as EvidentlyDataset
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    usable = [c for c in columns if c in reference and c in current]
    usable = [c for c in usable if reference[c].notna().any() and current[c].notna().any()]
    not_compared = [c for c in columns if c not in usable]
    if not usable or reference.empty or current.empty:
        return DriftResult([], len(reference), len(current), None, not_compared)
    ref, cur = _evidently_frame(reference[usable]), _evidently_frame(current[usable])
    definition = _definition(ref, usable)
    s = settings or DataDriftSettings()
    metrics: list[Any] = (
        [DataDriftPreset(num_method=s.num_method, cat_method=s.cat_method, threshold=s.threshold)]
        if preset
        else [ValueDrift(column=c, threshold=s.threshold) for c in usable]
    )
    report = Report(metrics, include_tests=True).run(
        EvidentlyDataset.from_pandas(cur, data_definition=definition),
        EvidentlyDataset.from_pandas(ref, data_definition=definition),
        # the data's date, so that the ops console's drift over time reads as the community's history
        timestamp=None if when is None else datetime.combine(when, time()),
    )
    return DriftResult(_column_drifts(report), len(reference), len(current), report, not_compared)


def _evidently_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Booleans as text: Evidently treats them as categories either way, and text keeps its charts readable."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].astype(str)
    return out


def _column_drifts(report: EvidentlySnapshot) -> list[ColumnDrift]:
    """Each column's test, score, threshold and verdict, read from the report's own results."""
    result = report.dict()
    scores = {
        m["config"]["column"]: float(m["value"])
        for m in result["metrics"]
        if m["config"].get("type") == "evidently:metric_v2:ValueDrift"
    }
    drifts = []
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        column = params["column"]
        drifts.append(
            ColumnDrift(
                column=column,
                method=str(params.get("method")),
                score=round(scores.get(column, float("nan")), 6),
                threshold=float(params.get("threshold") or float("nan")),
                drifted=str(test["status"]).endswith("FAIL"),
            )
        )
    return drifts


def tier_share_changes(reference: pd.Series, current: pd.Series) -> dict[str, float]:
    """current share - reference share, per tier."""
    ref = reference.value_counts(normalize=True)
    cur = current.value_counts(normalize=True)
    return {t: round(float(cur.get(t, 0.0) - ref.get(t, 0.0)), 4) for t in TIERS}


def item_popularity(recommender: ItemModel, item_ids: pd.Series) -> np.ndarray:
    """Each recommended item's popularity percentile among the recommender's items (1 = the most bought or
    read); items it does not know count as 0."""
    ranks = pd.Series(recommender.popularity).rank(pct=True).to_numpy()
    position = pd.Series(np.arange(len(recommender.item_ids)), index=recommender.item_ids.astype(str))
    found = position.reindex(item_ids.astype(str).to_numpy())
    return np.where(found.isna(), 0.0, ranks[found.fillna(0).astype(int).to_numpy()])


def reference_recommendations(recommender: ItemModel, k: int, seed: int = 0) -> pd.Series:
    """The champion's lists for a sample of the members it was trained on: the items it recommended then."""
    rng = np.random.default_rng(seed)
    members = recommender.member_ids.astype(str)
    sample = rng.choice(members, min(REFERENCE_RECS_MEMBERS, len(members)), replace=False).tolist()
    return recommender.recommend(sample, k)["item_id"].astype(str)
