"""The classic baselines as model families that can be champion: recency, the RFM score and BG/NBD for churn; the
run rate and BG/NBD + Gamma-Gamma for value. A dataset whose learned model cannot beat them is served by the best
of them, so every dataset has answers after its first `train`.

Churn baselines are scores (higher: more at risk), made probabilities by Platt scaling fitted on the newest
training cutoff (strictly increasing: the ranking is the baseline's own). Value baselines predict spend as they
are. The BG/NBD families fit their population parameters on the population they score (serving/models/inputs.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from serving.models.base import MemberModel
from serving.models.calibration import logit, platt
from serving.models.inputs import INPUT_SOURCES, InputContext, recency_rank, with_inputs
from serving.models.kinds import Target

# What a score reads: a frame, or (a request's few members, without building one) columns as arrays.
Columns = pd.DataFrame | Mapping[str, np.ndarray]


# The snapshot's spend windows a run rate may read (features/pipelines/schema.py: WINDOWS), and the long rate's name.
RATE_WINDOWS = (30, 90, 180)
LIFETIME = 0  # spend since the first purchase, per day over at least LONG_DAYS: the longest window there is
LONG_DAYS = 365


def run_rate(frame: Columns, horizon_days: int) -> np.ndarray:
    """Expected spend: what the member spent over the last period of the same length, or pro rata of 90 days."""
    column = f"spend_{horizon_days}d"
    if column in frame:
        return np.clip(np.asarray(frame[column], dtype=float), 0, None)
    return window_rate(frame, 90) * horizon_days


def window_rate(frame: Columns, days: int) -> np.ndarray:
    """Spend per day over the last `days` days, refunds as nothing; LIFETIME: gross spend since the first purchase
    over the days since it, at least a year of them (a month-old member's first order is not a monthly rate)."""
    if days == LIFETIME:
        since = np.clip(np.nan_to_num(np.asarray(frame["first_order_days_ago"], dtype=float)), 1, None)
        spent = np.nan_to_num(np.asarray(frame["spend_per_month"], dtype=float)) * since / 30
        return np.clip(spent, 0, None) / np.maximum(since, LONG_DAYS)
    return np.clip(np.nan_to_num(np.asarray(frame[f"spend_{days}d"], dtype=float)), 0, None) / days


def shrunk_rate(frame: Columns, horizon_days: int, params: Mapping[str, float]) -> np.ndarray:
    """Empirical Bayes: a member's spend rate over the chosen window, shrunk toward the population's as if the
    population had lent them `prior_days` more days at its own rate: (rate x window + population rate x prior) /
    (window + prior). The prior is chosen where a member's own few weeks say little and a long window alone
    would miss a change."""
    days, prior, population = int(params["window"]), params["prior_days"], params["population_rate"]
    window = LONG_DAYS if days == LIFETIME else days
    return horizon_days * (window_rate(frame, days) * window + population * prior) / (window + prior)


# The shrunk run rate's choices, made on the newest training cutoff by RMSE: the window, and the prior's days.
PRIOR_DAYS = (0.0, 7.0, 15.0, 30.0, 60.0, 90.0, 180.0, 365.0, 730.0)


def fit_shrunk_rate(frame: pd.DataFrame, horizon_days: int, actual: np.ndarray) -> dict[str, float]:
    """The window and prior with the lowest RMSE against `actual` (the newest training cutoff's spend over the
    horizon, never a held-out one), and the population's rate over that window."""
    best: tuple[float, dict[str, float]] | None = None
    for days in (*RATE_WINDOWS, LIFETIME):
        population = float(window_rate(frame, days).mean())
        for prior in PRIOR_DAYS:
            params = {"window": float(days), "prior_days": prior, "population_rate": population}
            error = float(np.sqrt(np.mean((shrunk_rate(frame, horizon_days, params) - actual) ** 2)))
            if best is None or error < best[0]:
                best = (error, params)
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class Baseline:
    family: str
    target: Target
    summary: str
    # The score (risk for a binary kind, amount for an amount kind) from the features with the model inputs
    # (a frame; amount baselines, which a LightGBM amount model starts from, also read columns as arrays) and the
    # parameters it was fitted with (most have none).
    score: Callable[[Columns, int, Mapping[str, float]], np.ndarray]
    # A strictly increasing transform of a churn score before Platt scaling, to a scale it is nearly linear on.
    link: Callable[[np.ndarray], np.ndarray] = np.asarray
    # What it fits on the newest training cutoff ((features with inputs, horizon, actual) -> parameters), if any.
    fit: Callable[[pd.DataFrame, int, np.ndarray], dict[str, float]] | None = None


def _windowed(days: int) -> Baseline:
    what = (
        f"since the first purchase (over at least {LONG_DAYS} days)"
        if days == LIFETIME
        else f"over the last {days} days"
    )
    name = "run-rate-lifetime" if days == LIFETIME else f"run-rate-{days}d"
    return Baseline(
        name,
        Target.amount,
        f"spend per day {what}, times the horizon",
        lambda f, h, p: window_rate(f, days) * h,
    )


BASELINES: dict[str, Baseline] = {
    b.family: b
    for b in (
        Baseline("recency", Target.binary, "days since the last purchase", lambda f, h, p: recency_rank(f), np.log1p),
        Baseline(
            "rfm",
            Target.binary,
            "the RFM score (recency, frequency and spend quintiles)",
            lambda f, h, p: f["rfm_score"].to_numpy(float),
        ),
        Baseline(
            "bgnbd-no-purchase",
            Target.binary,
            "BG/NBD's probability of no purchase over the horizon",
            lambda f, h, p: f["btyd_p_no_purchase"].to_numpy(float),
            logit,
        ),
        Baseline(
            "bgnbd-purchases",
            Target.binary,
            "BG/NBD's expected purchases over the horizon (fewer: more at risk)",
            lambda f, h, p: -f["btyd_purchases"].to_numpy(float),
            lambda s: -np.log1p(-s),
        ),
        Baseline(
            "run-rate",
            Target.amount,
            "spend over the last period of the horizon's length",
            lambda f, h, p: run_rate(f, h),
        ),
        *(_windowed(days) for days in (*RATE_WINDOWS, LIFETIME)),
        Baseline(
            "run-rate-shrunk",
            Target.amount,
            "a run rate shrunk toward the population's (empirical Bayes; window and prior chosen on the newest "
            "training cutoff)",
            shrunk_rate,
            fit=fit_shrunk_rate,
        ),
        Baseline(
            "bgnbd-gamma-gamma",
            Target.amount,
            "BG/NBD expected purchases x Gamma-Gamma expected order value",
            lambda f, h, p: np.asarray(f["btyd_value"], dtype=float),
        ),
    )
}


def baselines_of(target: Target) -> list[str]:
    return [name for name, b in BASELINES.items() if b.target is target]


class BaselineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str
    kind: str
    target: Target
    horizon_days: int
    calibration_slope: float = 1.0
    calibration_intercept: float = 0.0
    btyd: dict[str, float] | None = None  # the training population's fit, for populations too small to fit on
    params: dict[str, float] = {}  # what the baseline fitted on the newest training cutoff (run-rate-shrunk's)


class BaselineModel(MemberModel):
    """A baseline family, ready to score feature rows (with its calibration, for a churn kind)."""

    serves = tuple(BASELINES)  # recency, rfm, bgnbd-..., run-rate: one class, its spec says which

    def __init__(self, spec: BaselineSpec) -> None:
        self.spec, self.kind, self.family = spec, spec.kind, spec.family
        self.baseline = BASELINES[spec.family]
        # What any baseline reads: recency, frequency, spend, the customer's age (and the BG/NBD inputs from them).
        self.columns = [
            *INPUT_SOURCES,
            *(["spend_per_month", *(f"spend_{d}d" for d in RATE_WINDOWS)] if spec.target is Target.amount else []),
        ]

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        return with_inputs(features, self.spec.horizon_days, self.spec.btyd)

    def input_context(self, population: pd.DataFrame) -> InputContext:
        return InputContext.fit(population, self.spec.horizon_days, self.spec.btyd)

    def raw(self, features: pd.DataFrame) -> np.ndarray:
        """The baseline's own score or amount, before any calibration."""
        self.check_columns(features)
        return self.baseline.score(self.prepare(features), self.spec.horizon_days, self.spec.params)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        score = self.raw(features)
        if self.spec.target is Target.amount:
            return score
        return platt(self.baseline.link(score), self.spec.calibration_slope, self.spec.calibration_intercept)

    def summary(self) -> dict[str, Any]:
        return {"baseline": self.baseline.summary, **self.spec.model_dump(exclude={"family", "kind"})}

    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "spec.json"
        spec.write_text(self.spec.model_dump_json(indent=2))
        return {"spec": str(spec)}

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> BaselineModel:
        return cls(BaselineSpec.model_validate(json.loads(Path(artifacts["spec"]).read_text())))
