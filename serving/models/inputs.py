"""What member models read beyond the snapshot's columns: the classic models' view of each member, computed for
the population being scored (from its own history before the cutoff, never from labels), so that a model trained
on stacked cutoffs and a model scoring today see them computed the same way.

- BG/NBD and Gamma-Gamma outputs (serving/models/btyd.py), fitted on the scored population itself; a population
  too small to fit on (under MIN_BUYERS members who bought) uses the parameters a model was trained with.
- The RFM score: quintiles within the scored population.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from serving.models.btyd import BTYD, OUTPUTS

MIN_BUYERS = 200
INPUTS = (*OUTPUTS, "rfm_score")
# What the model inputs are computed from: a model that reads them needs these snapshot columns.
INPUT_SOURCES = ("recency_days", "frequency", "monetary", "avg_basket", "first_order_days_ago", "tenure_days")
_MARK = "model_inputs_horizon"  # frames that already carry the inputs for a horizon say so in their attrs


def recency_rank(frame: pd.DataFrame, never: float | None = None) -> np.ndarray:
    """Days since the last purchase; members who never bought rank as the longest gone (`never`: the
    population's longest tenure and a day)."""
    never = frame["tenure_days"].max() + 1.0 if never is None else never
    return frame["recency_days"].fillna(never).to_numpy(dtype=float)


def _quintile(values: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Quintile of each value within the sorted population: its average rank there as a share (pandas'
    rank(pct=True, method="average") for the population's own members), in fifths."""
    below = np.searchsorted(population, values, side="left")
    up_to = np.searchsorted(population, values, side="right")
    pct = (below + up_to + 1) / 2 / max(len(population), 1)
    return np.ceil(pct * 5).clip(1, 5)


def fit_btyd(features: pd.DataFrame, fallback: BTYD | None = None) -> BTYD:
    """BG/NBD and Gamma-Gamma fitted on this population, or the fallback where too few members bought."""
    buyers = int(((features["frequency"] > 0) & features["first_order_days_ago"].notna()).sum())
    if buyers < MIN_BUYERS and fallback is not None:
        return fallback
    return BTYD.fit(features)


@dataclass(frozen=True)
class InputContext:
    """What one population's model inputs are computed against: its BTYD fit and its RFM distributions. Fitted
    once, it computes the inputs of any member, of the population or not: the service scores a member per request
    against the snapshot's population exactly as batch scoring does for all of them."""

    horizon_days: int
    btyd: BTYD
    never: float  # the recency rank of members who never bought
    recency: np.ndarray  # sorted: minus the recency rank (recent is high)
    frequency: np.ndarray  # sorted
    monetary: np.ndarray  # sorted
    # The fitted population's own inputs (members x INPUTS, in its order), where kept: a member whose row has not
    # changed since reads theirs instead of computing them again (`with_rows`).
    known: np.ndarray | None = None

    @classmethod
    def fit(cls, features: pd.DataFrame, horizon_days: int, fallback: dict[str, float] | None = None) -> InputContext:
        never = float(features["tenure_days"].max() + 1.0) if len(features) else 1.0
        return cls(
            horizon_days,
            fit_btyd(features, BTYD.from_params(fallback) if fallback else None),
            never,
            np.sort(-recency_rank(features, never)),
            np.sort(features["frequency"].to_numpy(dtype=float)),
            np.sort(features["monetary"].to_numpy(dtype=float)),
        )

    def rfm_score(self, frame: pd.DataFrame) -> np.ndarray:
        """15 minus the classic RFM score (quintiles of recency, frequency and monetary value): high is at risk."""
        return self._rfm({c: frame[c].to_numpy(dtype=float) for c in ("recency_days", "frequency", "monetary")})

    def _rfm(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        recency = np.where(np.isnan(columns["recency_days"]), self.never, columns["recency_days"])
        scores = _quintile(-recency, self.recency)
        scores = (
            scores + _quintile(columns["frequency"], self.frequency) + _quintile(columns["monetary"], self.monetary)
        )
        return (15 - scores).astype(float)

    def with_rows(self, rows: list[dict[str, Any]], known_at: list[int | None] | None = None) -> ModelRows:
        """Rows (feature name -> value) with their model inputs: `apply` for the few members of a request, from
        the columns the inputs read, without a frame. `known_at`: each row's place in the fitted population where
        the row is the one it had there (its inputs are then read from `known`), else None."""
        out = list(rows)
        todo = list(range(len(rows)))
        if self.known is not None and known_at is not None:
            todo = [i for i, at in enumerate(known_at) if at is None]
            for i, at in enumerate(known_at):
                if at is not None:
                    out[i] = {**rows[i], **dict(zip(INPUTS, self.known[at].tolist(), strict=True))}
        if todo:
            nan = float("nan")
            columns = {
                c: np.array([nan if rows[i].get(c) is None else float(rows[i][c]) for i in todo], dtype=float)
                for c in (*INPUT_SOURCES, "monetary")
            }
            inputs = self.btyd.output_columns(columns, self.horizon_days)
            inputs["rfm_score"] = self._rfm(columns)
            for j, i in enumerate(todo):
                out[i] = {**rows[i], **{name: float(inputs[name][j]) for name in INPUTS}}
        return ModelRows(out)

    def apply(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features and the model inputs for this context's horizon."""
        out = pd.concat([features, self.btyd.outputs(features, self.horizon_days)], axis=1)
        out["rfm_score"] = self.rfm_score(features)
        out.attrs[_MARK] = self.horizon_days
        return out


def with_inputs(features: pd.DataFrame, horizon_days: int, fallback: dict[str, float] | None = None) -> pd.DataFrame:
    """The features and the model inputs for this horizon (computed once: a frame that has them is returned).
    `fallback`: the BTYD parameters a model was trained with, for a population too small to fit on."""
    if has_inputs(features, horizon_days):
        return features
    return InputContext.fit(features, horizon_days, fallback).apply(features)


def has_inputs(features: pd.DataFrame, horizon_days: int) -> bool:
    return features.attrs.get(_MARK) == horizon_days and all(c in features for c in INPUTS)


class ModelRows(list[dict[str, Any]]):
    """A request's rows with their model inputs (`InputContext.with_rows`), and the model matrices built from them
    by set of columns: the models that read the same columns share one (serving/models/families/gbm.py)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__(rows)
        self.matrices: dict[Any, np.ndarray] = {}


class RowColumns(Mapping[str, np.ndarray]):
    """Rows (feature name -> value) read as columns of floats, each built when first read: what a score that takes
    a frame's columns reads, for a request's few members, without building a frame of a hundred columns."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self._built: dict[str, np.ndarray] = {}

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._built:
            if column not in self:
                raise KeyError(column)
            nan = float("nan")
            values = [nan if (v := r[column]) is None else float(v) for r in self.rows]
            self._built[column] = np.array(values, dtype=float)
        return self._built[column]

    def __contains__(self, column: object) -> bool:
        return bool(self.rows) and column in self.rows[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows[0] if self.rows else ())

    def __len__(self) -> int:
        return len(self.rows[0]) if self.rows else 0


def rows_frame(rows: list[dict[str, Any]], horizon_days: int | None) -> pd.DataFrame:
    """Rows that carry their model inputs (`InputContext.with_rows`) as a frame that says so."""
    frame = pd.DataFrame.from_records(rows)
    if horizon_days is not None:
        frame.attrs[_MARK] = horizon_days
    return frame


def with_inputs_by_cutoff(frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """For stacked training frames: each cutoff's inputs from that cutoff's population alone."""
    if frame.attrs.get(_MARK) == horizon_days and all(c in frame for c in INPUTS):
        return frame
    parts = [with_inputs(part, horizon_days) for _, part in frame.groupby("cutoff", sort=True)]
    out = pd.concat(parts).loc[frame.index]
    out.attrs[_MARK] = horizon_days
    return out
