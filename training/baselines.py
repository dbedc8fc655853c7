"""Baselines every model must beat on the same cutoffs, by what the kind predicts: recency rank, RFM score and
BG/NBD for a yes/no label (churn); last-period run rate and BG/NBD + Gamma-Gamma for an amount (value)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from serving.models.families.gbm import run_rate  # the value model's offset, and a baseline
from serving.models.kinds import Target
from training.clv import clv_baselines

__all__ = ["baseline_scores", "recency_rank", "rfm_score", "run_rate"]


def recency_rank(frame: pd.DataFrame) -> np.ndarray:
    """Churn score: days since the last purchase; members who never bought rank as the most at risk."""
    never = frame["tenure_days"].max() + 1.0
    return frame["recency_days"].fillna(never).to_numpy(dtype=float)


def _quintile(values: pd.Series) -> pd.Series:
    return pd.Series(np.ceil(values.rank(pct=True, method="average") * 5).clip(1, 5), index=values.index)


def rfm_score(frame: pd.DataFrame) -> np.ndarray:
    """Churn score: 15 minus the classic RFM score (quintiles of recency, frequency and monetary value)."""
    recency = _quintile(pd.Series(-recency_rank(frame), index=frame.index))  # recent = high
    frequency = _quintile(frame["frequency"].astype(float))
    monetary = _quintile(frame["monetary"].astype(float))
    return (15 - (recency + frequency + monetary)).to_numpy(dtype=float)


def _binary(test: pd.DataFrame, horizon_days: int) -> dict[str, np.ndarray]:
    clv = clv_baselines(test, horizon_days)
    return {
        "recency rank": recency_rank(test),
        "RFM score": rfm_score(test),
        "BG/NBD P(alive)": clv.churn_p_alive,
        "BG/NBD expected purchases": clv.churn_expected,
    }


def _amount(test: pd.DataFrame, horizon_days: int) -> dict[str, np.ndarray]:
    return {
        "run rate": run_rate(test, horizon_days),
        "BG/NBD + Gamma-Gamma": clv_baselines(test, horizon_days).expected_value,
    }


BASELINES: dict[Target, Callable[[pd.DataFrame, int], dict[str, np.ndarray]]] = {
    Target.binary: _binary,
    Target.amount: _amount,
}


def baseline_scores(target: Target, test: pd.DataFrame, horizon_days: int) -> dict[str, np.ndarray]:
    """Each baseline's scores of the test members (fitted on their history before the cutoff only)."""
    return BASELINES[target](test, horizon_days)
