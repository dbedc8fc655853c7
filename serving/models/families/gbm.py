"""The "lightgbm" family of member models: a LightGBM booster over the snapshot's features and the model inputs
(the classic models' view of each member, serving/models/inputs.py), with its output turned into what the kind
predicts: a calibrated probability, or an amount as a correction of the best baseline's prediction.

Training fits the booster (training/member_fit.py); this module scores with it, for the service, batch scoring
and monitoring alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from serving.models.base import MemberModel
from serving.models.calibration import logit, platt
from serving.models.families.baselines import BASELINES
from serving.models.inputs import INPUT_SOURCES, INPUTS, with_inputs
from serving.models.kinds import Target


class GBMSpec(BaseModel):
    """Everything besides the booster that scoring needs, stored as JSON beside it."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["lightgbm"] = "lightgbm"
    kind: str
    target: Target
    columns: list[str]
    categories: dict[str, list[str]]
    horizon_days: int
    # Binary targets: Platt scaling of the booster's log-odds, p = sigmoid(slope * logit + intercept).
    calibration_slope: float = 1.0
    calibration_intercept: float = 0.0
    # Amount targets: the baseline family whose prediction the booster corrects (its log is the starting score).
    offset: str | None = None
    # The BG/NBD and Gamma-Gamma fit of the newest training population: for populations too small to fit on.
    btyd: dict[str, float] | None = None

    @property
    def reads_inputs(self) -> bool:
        return any(c in INPUTS for c in self.columns) or self.offset is not None


def offset_of(spec: GBMSpec, frame: pd.DataFrame) -> np.ndarray:
    """The log of the offset baseline's prediction: an amount model's starting score. A floor of 10 keeps members
    predicted to spend nothing off log(0)."""
    assert spec.offset is not None
    return np.log(BASELINES[spec.offset].score(frame, spec.horizon_days).clip(min=0) + 10.0)


def encode(spec: GBMSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The model matrix: numbers as float, text as the categories fixed at training time."""
    out = pd.DataFrame(index=frame.index)
    for c in spec.columns:
        values = frame[c]
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


class GBMModel(MemberModel):
    """A fitted LightGBM churn or value model (any binary or amount kind), ready to score feature rows."""

    family = "lightgbm"

    def __init__(self, spec: GBMSpec, booster: lgb.Booster) -> None:
        self.spec, self.booster = spec, booster
        self.kind = spec.kind
        snapshot_columns = [c for c in spec.columns if c not in INPUTS]
        self.columns = snapshot_columns + [c for c in INPUT_SOURCES if spec.reads_inputs and c not in snapshot_columns]

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        if not self.spec.reads_inputs:
            return features
        return with_inputs(features, self.spec.horizon_days, self.spec.btyd)

    def _frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features, with the model inputs where the model reads them."""
        self.check_columns(features)
        return self.prepare(features)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability (binary kinds), or expected amount over the horizon (amount kinds), per row."""
        frame = self._frame(features)
        x = encode(self.spec, frame)
        if self.spec.target is Target.binary:
            return platt(logit(self.booster.predict(x)), self.spec.calibration_slope, self.spec.calibration_intercept)
        return np.exp(self.booster.predict(x, raw_score=True) + offset_of(self.spec, frame))

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per-row feature contributions (SHAP values) to the booster's raw score."""
        values = self.booster.predict(encode(self.spec, self._frame(features)), pred_contrib=True)
        return pd.DataFrame(values[:, :-1], columns=self.spec.columns, index=features.index)

    def top_reasons(self, features: pd.DataFrame, k: int = 3) -> list[list[str]]:
        """The k features that push each member's score up the most, strongest first."""
        contributions = self.contributions(features).to_numpy()
        order = np.argsort(-contributions, axis=1)[:, :k]
        names = np.array(self.spec.columns)
        return [[str(names[j]) for j in row if contributions[i, j] > 0] for i, row in enumerate(order)]

    def summary(self) -> dict[str, Any]:
        """Total split gain per feature, largest first."""
        gains = self.booster.feature_importance(importance_type="gain")
        ranked = sorted(zip(self.spec.columns, map(float, gains), strict=True), key=lambda kv: -kv[1])
        return {"feature_importance": dict(ranked)}

    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        spec_path, booster_path = folder / "spec.json", folder / "booster.txt"
        spec_path.write_text(self.spec.model_dump_json(indent=2))
        self.booster.save_model(str(booster_path))
        return {"spec": str(spec_path), "booster": str(booster_path)}

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> GBMModel:
        spec = GBMSpec.model_validate_json(Path(artifacts["spec"]).read_text())
        return cls(spec, lgb.Booster(model_file=str(artifacts["booster"])))
