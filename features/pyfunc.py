"""The MLflow pyfunc form of a member model: a JSON spec and a native LightGBM file, scored by features/scoring."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from features.scoring import MemberScorer


class MemberModel(mlflow.pyfunc.PythonModel):
    """Loads the scorer from the logged artefacts; `predict` takes feature rows and returns one score per row."""

    def load_context(self, context: Any) -> None:
        self.scorer = MemberScorer.load(context.artifacts["spec"], context.artifacts["booster"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
        return pd.Series(self.scorer.predict(model_input), index=model_input.index, name="prediction")
