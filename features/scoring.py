"""How a trained member model turns feature rows into scores: encoding, the booster, calibration or offset.

Training fits these pieces (training/models.py); the registry stores them as a JSON spec and a native LightGBM
model file; serving and batch scoring load them back. Keeping inference here, beside the features, means the
service never imports training code and both sides score a member the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict


class ModelKind(StrEnum):
    churn = "churn"
    value = "value"


def run_rate(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Expected spend: what the member spent over the last period of the same length, or pro rata of 90 days."""
    column = f"spend_{horizon_days}d"
    if column in frame:
        return frame[column].clip(lower=0).to_numpy(dtype=float)
    return (frame["spend_90d"].clip(lower=0) * horizon_days / 90).to_numpy(dtype=float)


def run_rate_offset(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Log of the run rate: the value model's starting score. A floor of 10 keeps zero spenders off log(0)."""
    return np.log(run_rate(frame, horizon_days) + 10.0)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class ModelSpec(BaseModel):
    """Everything besides the booster that scoring needs, stored as JSON beside it."""

    model_config = ConfigDict(extra="forbid")

    kind: ModelKind
    columns: list[str]
    categories: dict[str, list[str]]
    horizon_days: int
    # Churn: Platt scaling of the booster's log-odds, p = sigmoid(slope * logit + intercept).
    calibration_slope: float = 1.0
    calibration_intercept: float = 0.0


def encode(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The model matrix: numbers as float, text as categories fixed at training time, absent columns empty."""
    out = pd.DataFrame(index=frame.index)
    for c in spec.columns:
        values = frame[c] if c in frame else pd.Series(np.nan, index=frame.index)
        if c in spec.categories:
            out[c] = pd.Categorical(values.astype("string").astype(object), categories=spec.categories[c])
        else:
            numeric = values.astype("Float64") if values.dtype == "boolean" else values
            out[c] = pd.to_numeric(numeric, errors="coerce").astype("float64")
    return out


def categories_of(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """The categories of every text column, as seen in the training data."""
    return {
        c: sorted(frame[c].dropna().astype(str).unique())
        for c in columns
        if not pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    }


@dataclass
class MemberScorer:
    """A fitted churn or value model, ready to score feature rows."""

    spec: ModelSpec
    booster: lgb.Booster

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability, or expected spend over the horizon, per row."""
        x = encode(self.spec, frame)
        if self.spec.kind is ModelKind.churn:
            z = self.spec.calibration_slope * logit(self.booster.predict(x)) + self.spec.calibration_intercept
            return 1.0 / (1.0 + np.exp(-z))
        return np.exp(self.booster.predict(x, raw_score=True) + run_rate_offset(frame, self.spec.horizon_days))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row feature contributions (SHAP values) to the booster's raw score."""
        values = self.booster.predict(encode(self.spec, frame), pred_contrib=True)
        return pd.DataFrame(values[:, :-1], columns=self.spec.columns, index=frame.index)

    def top_reasons(self, frame: pd.DataFrame, k: int = 3) -> list[list[str]]:
        """The k features that push each member's score up the most, strongest first."""
        contributions = self.contributions(frame).to_numpy()
        order = np.argsort(-contributions, axis=1)[:, :k]
        names = np.array(self.spec.columns)
        return [[str(names[j]) for j in row if contributions[i, j] > 0] for i, row in enumerate(order)]

    def save(self, folder: Path) -> dict[str, str]:
        """Writes the spec and the native booster; returns their paths by artefact name."""
        folder.mkdir(parents=True, exist_ok=True)
        spec_path, booster_path = folder / "spec.json", folder / "booster.txt"
        spec_path.write_text(self.spec.model_dump_json(indent=2))
        self.booster.save_model(str(booster_path))
        return {"spec": str(spec_path), "booster": str(booster_path)}

    @classmethod
    def load(cls, spec_path: Path, booster_path: Path) -> MemberScorer:
        spec = ModelSpec.model_validate_json(Path(spec_path).read_text())
        return cls(spec, lgb.Booster(model_file=str(booster_path)))
