"""The thresholds `community-ml monitor check` alerts on (configs/monitoring.yaml), as a strict typed config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.common.config import load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "monitoring.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataDriftSettings(_Strict):
    max_drift_share: float = Field(
        0.10, ge=0, le=1, description="alert when a larger share of the features drifted from the reference"
    )
    num_method: str | None = Field(None, description="Evidently's test for numeric features (default: by size)")
    cat_method: str | None = Field(None, description="Evidently's test for categorical features")
    threshold: float | None = Field(None, description="one drift threshold for every test (default: per method)")


class PredictionDriftSettings(_Strict):
    window_days: int = Field(7, ge=1, description="days of the prediction log that count as recent")
    alert_on: list[str] = Field(
        ["churn_probability", "expected_value"],
        description="predictions whose drift alone raises an alert (churn_probability, expected_value, tier, "
        "item_popularity)",
    )
    max_tier_share_change: float = Field(0.10, ge=0, le=1, description="largest move of any tier's share")


class PerformanceSettings(_Strict):
    min_churn_roc_auc: float = Field(0.65, ge=0, le=1)
    max_value_total_error_pct: float = Field(50.0, ge=0, description="|predicted - actual total spend| in %")
    min_precision_at_k: float = Field(0.01, ge=0, le=1)


class AlertSettings(_Strict):
    rule: Literal["calibrated", "drift-share"] = Field(
        "calibrated",
        description="calibrated: each figure against its largest move in the dataset's own history "
        "(monitoring/alerts.py); drift-share: the older rule (max_drift_share, prediction drift, tier shares)",
    )
    margin: float = Field(2.0, ge=1, description="a figure alerts past this many times its largest calm move")
    history_pairs: int = Field(6, ge=2, le=24, description="pairs of history dates calibrating each threshold")
    feature_share: float = Field(
        0.25, gt=0, le=1, description="features alert when those past their thresholds hold this share of the gain"
    )


class MonitorSettings(_Strict):
    alerts: AlertSettings = AlertSettings()
    data_drift: DataDriftSettings = DataDriftSettings()
    prediction_drift: PredictionDriftSettings = PredictionDriftSettings()
    performance: PerformanceSettings = PerformanceSettings()


def load_settings(path: Path | None = None) -> MonitorSettings:
    """configs/monitoring.yaml (or `path`); a wrong key or value stops with the file and field named."""
    if path is None and not DEFAULT_CONFIG.exists():  # an installed copy without the repository's configs/
        return MonitorSettings()
    return load_config(MonitorSettings, path or DEFAULT_CONFIG, {})
