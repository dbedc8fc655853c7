"""Rolling-origin backtests of member kinds: for each test cutoff, train on what precedes it and score the next
H days, beside the baselines of what the kind predicts."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.progress import step
from features.store import Dataset
from serving.models.kinds import ModelKind, Target
from training.baselines import baseline_scores
from training.frames import labelled_snapshot, stacked, training_cutoffs
from training.member_fit import MEMBER_FITTERS
from training.metrics import churn_metrics, value_metrics


class BacktestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cutoffs: list[date] = Field(min_length=1, description="test cutoffs, never seen in training")
    horizon_days: int = Field(90, ge=7, le=365)
    training_cutoffs: int = Field(6, ge=1, le=36, description="monthly training cutoffs before each test cutoff")
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict, description="the family's parameters over its defaults")


class BacktestReport(BaseModel):
    kind: str
    family: str  # the candidate's method name in the rows
    dataset: str
    horizon_days: int
    rows: list[dict[str, Any]]  # one per (cutoff, method)
    seconds: float

    def mean_by_method(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows).drop(columns=["cutoff"])
        return frame.groupby("method", sort=False).mean(numeric_only=True)


def target_metrics(kind: ModelKind, test: pd.DataFrame, scores: np.ndarray, calibrated: bool) -> dict[str, float]:
    """The metrics of what the kind predicts: ranking (and calibration, for a model's probabilities) of a yes/no
    label; error and ranking of an amount."""
    label = test[str(kind.label)]
    if kind.target is Target.binary:
        return churn_metrics(label.astype(int).to_numpy(), scores, probability=calibrated)
    return value_metrics(label.clip(lower=0).to_numpy(dtype=float), scores)


def backtest(dataset: Dataset, kind: ModelKind, settings: BacktestSettings, baselines: bool = True) -> BacktestReport:
    """The kind's family (and, unless told not to, its baselines) on every test cutoff."""
    started = time.perf_counter()
    fit = MEMBER_FITTERS[kind.family]
    rows: list[dict[str, Any]] = []
    for cutoff in settings.cutoffs:
        with step(f"{kind.name} backtest at {cutoff}: training on the {settings.training_cutoffs} cutoffs before it"):
            train = stacked(
                dataset,
                training_cutoffs(cutoff, settings.horizon_days, settings.training_cutoffs),
                settings.horizon_days,
            )
            test = labelled_snapshot(dataset, cutoff, settings.horizon_days)
            model = fit(train, kind, settings.params, settings.seed, settings.horizon_days)
            scores = {kind.family: target_metrics(kind, test, model.predict(test), calibrated=True)}
            if baselines:
                for name, values in baseline_scores(kind.target, test, settings.horizon_days).items():
                    scores[name] = target_metrics(kind, test, values, calibrated=False)
        for method, metrics in scores.items():
            rows.append(
                {
                    "cutoff": str(cutoff),
                    "method": method,
                    "train_rows": len(train.frame),
                    "test_members": len(test),
                    **metrics,
                }
            )
    return BacktestReport(
        kind=kind.name,
        family=kind.family,
        dataset=dataset.name,
        horizon_days=settings.horizon_days,
        rows=rows,
        seconds=round(time.perf_counter() - started, 1),
    )
