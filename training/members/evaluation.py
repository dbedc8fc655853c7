"""Rolling-origin backtests of member kinds: for each test cutoff, every family of the kind (its learned family
and the baselines of what it predicts) trains on what precedes the cutoff and scores the next H days."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from features.common.progress import step
from features.common.settings import project_settings
from features.dataset.store import Dataset
from serving.models.inputs import with_inputs, with_inputs_by_cutoff
from serving.models.kinds import ModelKind, Target
from training.gate import HeldOutPredictions
from training.members.fit import families_of, fitted
from training.members.frames import LabelledFrame, labelled_snapshot, stacked, training_cutoffs
from training.metrics import target_metrics


class BacktestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cutoffs: list[date] = Field(min_length=1, description="test cutoffs, never seen in training")
    horizon_days: int = Field(90, ge=7, le=365)
    training_cutoffs: int = Field(6, ge=1, le=36, description="monthly training cutoffs before each test cutoff")
    training_members: int | None = Field(
        default_factory=lambda: project_settings().training_members,
        ge=1_000,
        description="members learned from and judged on at most: a fixed sample (None: all)",
    )
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
    # Every method's prediction per member and cutoff: what the gate's bootstrap and the decile charts read.
    _predictions: HeldOutPredictions = PrivateAttr(default_factory=HeldOutPredictions)

    @property
    def predictions(self) -> HeldOutPredictions:
        return self._predictions

    def deciles(self, method: str) -> pd.DataFrame:
        """The decile chart of an amount: members split into ten equal groups by predicted value (highest
        first), each group's mean prediction against its mean actual spend, over every cutoff."""
        return decile_chart(self._predictions, method)

    def mean_by_method(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows).drop(columns=["cutoff"])
        return frame.groupby("method", sort=False).mean(numeric_only=True)


def backtest(
    dataset: Dataset, kind: ModelKind, settings: BacktestSettings, families: list[str] | None = None
) -> BacktestReport:
    """Every family of the kind (or those named; `settings.params`: the learned families') on every test cutoff.
    Each cutoff's model inputs (BG/NBD and Gamma-Gamma outputs, the RFM score) are computed once and shared."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    predictions = HeldOutPredictions()
    for cutoff in settings.cutoffs:
        with step(f"{kind.name} backtest at {cutoff}: training on the {settings.training_cutoffs} cutoffs before it"):
            train = stacked(
                dataset,
                training_cutoffs(cutoff, settings.horizon_days, settings.training_cutoffs),
                settings.horizon_days,
                settings.training_members,
            )
            train = LabelledFrame(with_inputs_by_cutoff(train.frame, settings.horizon_days))
            tested = labelled_snapshot(dataset, cutoff, settings.horizon_days, settings.training_members)
            test = with_inputs(tested, settings.horizon_days)
            predictions.add_cutoff(str(cutoff), test["member_id"].to_numpy(), _actual(kind, test))
            scores = {}
            for family in families or families_of(kind):
                params = settings.params.get(family, {})
                model = fitted(family, train, kind, params, settings.seed, settings.horizon_days)
                predicted = model.predict(test)
                predictions.add(family, predicted)
                scores[family] = target_metrics(kind, test, predicted)
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
    report = BacktestReport(
        kind=kind.name,
        families=list(kind.families),
        dataset=dataset.name,
        horizon_days=settings.horizon_days,
        rows=rows,
        seconds=round(time.perf_counter() - started, 1),
    )
    report._predictions = predictions
    return report


def _actual(kind: ModelKind, test: pd.DataFrame) -> np.ndarray:
    """What the metrics judge against: the yes/no label as 0/1, or the amount (refunds as nothing)."""
    label = test[str(kind.label)]
    return label.astype(int).to_numpy(float) if kind.target is Target.binary else label.clip(lower=0).to_numpy(float)


def decile_chart(predictions: HeldOutPredictions, method: str) -> pd.DataFrame:
    """Deciles of predicted value over every cutoff's members (1: the highest predictions): members, mean
    predicted and mean actual spend, and each decile's share of all that was spent."""
    predicted = np.concatenate(predictions.predicted[method])
    actual = np.concatenate(predictions.actual)
    order = np.lexsort((np.arange(len(predicted)), -predicted))
    decile = np.empty(len(predicted), dtype=int)
    decile[order] = np.arange(len(predicted)) * 10 // max(len(predicted), 1) + 1
    frame = pd.DataFrame({"decile": decile, "predicted": predicted, "actual": actual})
    chart = frame.groupby("decile").agg(
        members=("actual", "size"), mean_predicted=("predicted", "mean"), mean_actual=("actual", "mean")
    )
    chart["share_of_spend"] = frame.groupby("decile")["actual"].sum() / max(actual.sum(), 1e-12)
    return chart
