"""Baselines every model must beat on the same cutoffs: recency rank, RFM score, last-period run rate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.scoring import run_rate  # the value model's offset, and a baseline

__all__ = ["recency_rank", "rfm_score", "run_rate"]


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
