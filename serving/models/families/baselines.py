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


def run_rate(frame: Columns, horizon_days: int) -> np.ndarray:
    """Expected spend: what the member spent over the last period of the same length, or pro rata of 90 days."""
    column = f"spend_{horizon_days}d"
    if column in frame:
        return np.clip(np.asarray(frame[column], dtype=float), 0, None)
    return np.clip(np.asarray(frame["spend_90d"], dtype=float), 0, None) * horizon_days / 90


@dataclass(frozen=True)
class Baseline:
    family: str
    target: Target
    summary: str
    # The score (risk for a binary kind, amount for an amount kind) from the features with the model inputs
    # (a frame; amount baselines, which a LightGBM amount model starts from, also read columns as arrays).
    score: Callable[[Columns, int], np.ndarray]
    # A strictly increasing transform of a churn score before Platt scaling, to a scale it is nearly linear on.
    link: Callable[[np.ndarray], np.ndarray] = np.asarray


BASELINES: dict[str, Baseline] = {
    b.family: b
    for b in (
        Baseline("recency", Target.binary, "days since the last purchase", lambda f, h: recency_rank(f), np.log1p),
        Baseline(
            "rfm",
            Target.binary,
            "the RFM score (recency, frequency and spend quintiles)",
            lambda f, h: f["rfm_score"].to_numpy(float),
        ),
        Baseline(
            "bgnbd-no-purchase",
            Target.binary,
            "BG/NBD's probability of no purchase over the horizon",
            lambda f, h: f["btyd_p_no_purchase"].to_numpy(float),
            logit,
        ),
        Baseline(
            "bgnbd-purchases",
            Target.binary,
            "BG/NBD's expected purchases over the horizon (fewer: more at risk)",
            lambda f, h: -f["btyd_purchases"].to_numpy(float),
            lambda s: -np.log1p(-s),
        ),
        Baseline("run-rate", Target.amount, "spend over the last period of the horizon's length", run_rate),
        Baseline(
            "bgnbd-gamma-gamma",
            Target.amount,
            "BG/NBD expected purchases x Gamma-Gamma expected order value",
            lambda f, h: np.asarray(f["btyd_value"], dtype=float),
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


class BaselineModel(MemberModel):
    """A baseline family, ready to score feature rows (with its calibration, for a churn kind)."""

    serves = tuple(BASELINES)  # recency, rfm, bgnbd-..., run-rate: one class, its spec says which

    def __init__(self, spec: BaselineSpec) -> None:
        self.spec, self.kind, self.family = spec, spec.kind, spec.family
        self.baseline = BASELINES[spec.family]
        # What any baseline reads: recency, frequency, spend, the customer's age (and the BG/NBD inputs from them).
        self.columns = list(INPUT_SOURCES)

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        return with_inputs(features, self.spec.horizon_days, self.spec.btyd)

    def input_context(self, population: pd.DataFrame) -> InputContext:
        return InputContext.fit(population, self.spec.horizon_days, self.spec.btyd)

    def raw(self, features: pd.DataFrame) -> np.ndarray:
        """The baseline's own score or amount, before any calibration."""
        self.check_columns(features)
        return self.baseline.score(self.prepare(features), self.spec.horizon_days)

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
