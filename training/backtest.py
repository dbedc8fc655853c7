"""Rolling-origin backtests: for each test cutoff, train on what precedes it and score the next H days."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.progress import step
from features.scoring import MemberScorer, ModelKind
from features.store import Dataset
from training import baselines
from training.clv import clv_baselines
from training.frames import labelled_snapshot, stacked, training_cutoffs
from training.metrics import churn_metrics, value_metrics
from training.models import FITTERS


class BacktestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cutoffs: list[date] = Field(min_length=1, description="test cutoffs, never seen in training")
    horizon_days: int = Field(90, ge=7, le=365)
    training_cutoffs: int = Field(6, ge=1, le=36, description="monthly training cutoffs before each test cutoff")
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters over the defaults")


class BacktestReport(BaseModel):
    kind: ModelKind
    dataset: str
    horizon_days: int
    rows: list[dict[str, Any]]  # one per (cutoff, method)
    seconds: float

    def mean_by_method(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows).drop(columns=["cutoff"])
        return frame.groupby("method", sort=False).mean(numeric_only=True)


def evaluate_churn(model: MemberScorer, test: pd.DataFrame, horizon_days: int) -> dict[str, dict[str, float]]:
    y = test["churned"].astype(int).to_numpy()
    clv = clv_baselines(test, horizon_days)
    return {
        "lightgbm": churn_metrics(y, model.predict(test), probability=True),
        "recency rank": churn_metrics(y, baselines.recency_rank(test), probability=False),
        "RFM score": churn_metrics(y, baselines.rfm_score(test), probability=False),
        "BG/NBD P(alive)": churn_metrics(y, clv.churn_p_alive, probability=False),
        "BG/NBD expected purchases": churn_metrics(y, clv.churn_expected, probability=False),
    }


def evaluate_value(model: MemberScorer, test: pd.DataFrame, horizon_days: int) -> dict[str, dict[str, float]]:
    y = test["future_value"].clip(lower=0).to_numpy(dtype=float)
    return {
        "lightgbm": value_metrics(y, model.predict(test)),
        "run rate": value_metrics(y, baselines.run_rate(test, horizon_days)),
        "BG/NBD + Gamma-Gamma": value_metrics(y, clv_baselines(test, horizon_days).expected_value),
    }


def backtest(dataset: Dataset, kind: ModelKind, settings: BacktestSettings) -> BacktestReport:
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for cutoff in settings.cutoffs:
        with step(f"{kind.value} backtest at {cutoff}: training on the {settings.training_cutoffs} cutoffs before it"):
            train = stacked(
                dataset,
                training_cutoffs(cutoff, settings.horizon_days, settings.training_cutoffs),
                settings.horizon_days,
            )
            test = labelled_snapshot(dataset, cutoff, settings.horizon_days)
            model = FITTERS[kind](train, settings.params, settings.seed, settings.horizon_days)
            evaluate = evaluate_churn if kind is ModelKind.churn else evaluate_value
            scores = evaluate(model, test, settings.horizon_days)
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
        kind=kind,
        dataset=dataset.name,
        horizon_days=settings.horizon_days,
        rows=rows,
        seconds=round(time.perf_counter() - started, 1),
    )
