"""What member models read beyond the snapshot's columns: the classic models' view of each member, computed for
the population being scored (from its own history before the cutoff, never from labels), so that a model trained
on stacked cutoffs and a model scoring today see them computed the same way.

- BG/NBD and Gamma-Gamma outputs (serving/models/btyd.py), fitted on the scored population itself; a population
  too small to fit on (under MIN_BUYERS members who bought) uses the parameters a model was trained with.
- The RFM score: quintiles within the scored population.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.models.btyd import BTYD, OUTPUTS

MIN_BUYERS = 200
INPUTS = (*OUTPUTS, "rfm_score")
# What the model inputs are computed from: a model that reads them needs these snapshot columns.
INPUT_SOURCES = ("recency_days", "frequency", "monetary", "avg_basket", "first_order_days_ago", "tenure_days")
_MARK = "model_inputs_horizon"  # frames that already carry the inputs for a horizon say so in their attrs


def recency_rank(frame: pd.DataFrame) -> np.ndarray:
    """Days since the last purchase; members who never bought rank as the longest gone."""
    never = frame["tenure_days"].max() + 1.0
    return frame["recency_days"].fillna(never).to_numpy(dtype=float)


def _quintile(values: pd.Series) -> pd.Series:
    return pd.Series(np.ceil(values.rank(pct=True, method="average") * 5).clip(1, 5), index=values.index)


def rfm_score(frame: pd.DataFrame) -> np.ndarray:
    """15 minus the classic RFM score (quintiles of recency, frequency and monetary value): high is at risk."""
    recency = _quintile(pd.Series(-recency_rank(frame), index=frame.index))  # recent = high
    frequency = _quintile(frame["frequency"].astype(float))
    monetary = _quintile(frame["monetary"].astype(float))
    return (15 - (recency + frequency + monetary)).to_numpy(dtype=float)


def fit_btyd(features: pd.DataFrame, fallback: BTYD | None = None) -> BTYD:
    """BG/NBD and Gamma-Gamma fitted on this population, or the fallback where too few members bought."""
    buyers = int(((features["frequency"] > 0) & features["first_order_days_ago"].notna()).sum())
    if buyers < MIN_BUYERS and fallback is not None:
        return fallback
    return BTYD.fit(features)


def with_inputs(features: pd.DataFrame, horizon_days: int, fallback: dict[str, float] | None = None) -> pd.DataFrame:
    """The features and the model inputs for this horizon (computed once: a frame that has them is returned).
    `fallback`: the BTYD parameters a model was trained with, for a population too small to fit on."""
    if features.attrs.get(_MARK) == horizon_days and all(c in features for c in INPUTS):
        return features
    btyd = fit_btyd(features, BTYD.from_params(fallback) if fallback else None)
    out = pd.concat([features, btyd.outputs(features, horizon_days)], axis=1)
    out["rfm_score"] = rfm_score(features)
    out.attrs[_MARK] = horizon_days
    return out


def with_inputs_by_cutoff(frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """For stacked training frames: each cutoff's inputs from that cutoff's population alone."""
    if frame.attrs.get(_MARK) == horizon_days and all(c in frame for c in INPUTS):
        return frame
    parts = [with_inputs(part, horizon_days) for _, part in frame.groupby("cutoff", sort=True)]
    out = pd.concat(parts).loc[frame.index]
    out.attrs[_MARK] = horizon_days
    return out
