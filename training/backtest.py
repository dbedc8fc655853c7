"""Rolling-origin backtests of member kinds: for each test cutoff, every family of the kind (its learned family
and the baselines of what it predicts) trains on what precedes the cutoff and scores the next H days."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.progress import step
from features.store import Dataset
from serving.models.families.baselines import baselines_of
from serving.models.inputs import with_inputs, with_inputs_by_cutoff
from serving.models.kinds import ModelKind, Target
from training.frames import LabelledFrame, labelled_snapshot, stacked, training_cutoffs
from training.member_fit import member_family
from training.metrics import churn_metrics, value_metrics


class BacktestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cutoffs: list[date] = Field(min_length=1, description="test cutoffs, never seen in training")
    horizon_days: int = Field(90, ge=7, le=365)
    training_cutoffs: int = Field(6, ge=1, le=36, description="monthly training cutoffs before each test cutoff")
    seed: int = 0
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="learned families' parameters over their defaults, by family"
    )


class BacktestReport(BaseModel):
    kind: str
    families: list[str]  # the kind's learned families (the rows' methods are families)
    dataset: str
    horizon_days: int
    rows: list[dict[str, Any]]  # one per (cutoff, method)
    seconds: float

    def mean_by_method(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows).drop(columns=["cutoff"])
        return frame.groupby("method", sort=False).mean(numeric_only=True)


def target_metrics(kind: ModelKind, test: pd.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    """The metrics of what the kind predicts: ranking and calibration of a yes/no label's probabilities; error
    and ranking of an amount."""
    label = test[str(kind.label)]
    if kind.target is Target.binary:
        return churn_metrics(label.astype(int).to_numpy(), predicted, probability=True)
    return value_metrics(label.clip(lower=0).to_numpy(dtype=float), predicted)


def families_of(kind: ModelKind) -> list[str]:
    """Every family judged for a member kind: the learned families it declares, then the baselines of its target."""
    return [*kind.families, *baselines_of(kind.target)]


def backtest(
    dataset: Dataset, kind: ModelKind, settings: BacktestSettings, families: list[str] | None = None
) -> BacktestReport:
    """Every family of the kind (or those named; `settings.params`: the learned families') on every test cutoff.
    Each cutoff's model inputs (BG/NBD and Gamma-Gamma outputs, the RFM score) are computed once and shared."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for cutoff in settings.cutoffs:
        with step(f"{kind.name} backtest at {cutoff}: training on the {settings.training_cutoffs} cutoffs before it"):
            train = stacked(
                dataset,
                training_cutoffs(cutoff, settings.horizon_days, settings.training_cutoffs),
                settings.horizon_days,
            )
            train = LabelledFrame(with_inputs_by_cutoff(train.frame, settings.horizon_days))
            test = with_inputs(labelled_snapshot(dataset, cutoff, settings.horizon_days), settings.horizon_days)
            scores = {}
            for family in families or families_of(kind):
                params = settings.params.get(family, {})
                model = member_family(family).fit(train, kind, params, settings.seed, settings.horizon_days)
                scores[family] = target_metrics(kind, test, model.predict(test))
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
        families=list(kind.families),
        dataset=dataset.name,
        horizon_days=settings.horizon_days,
        rows=rows,
        seconds=round(time.perf_counter() - started, 1),
    )
