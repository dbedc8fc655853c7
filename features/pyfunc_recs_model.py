"""The file MLflow loads a recommender from ("models from code"): factors and rules, no pickled objects."""

from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

from features.recommending import Recommender


class RecsModel(mlflow.pyfunc.PythonModel):
    """`predict` takes a frame with a member_id column; params k (default 10) and exclude_seen."""

    def load_context(self, context: Any) -> None:
        self.recommender = Recommender.load(context.artifacts["recommender"], context.artifacts["spec"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        return self.recommender.recommend(
            [str(m) for m in model_input["member_id"]],
            k=int(params.get("k", 10)),
            exclude_seen=params.get("exclude_seen"),
        )


set_model(RecsModel())
