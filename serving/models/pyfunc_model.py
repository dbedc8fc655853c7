"""The file MLflow loads every registered model from ("models from code"): no pickled Python objects in the
registry. The spec the model was saved with says its family (serving/models/families)."""

from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

from serving.models.base import MemberModel
from serving.models.families import load_model


class ChampionModel(mlflow.pyfunc.PythonModel):
    """`predict` takes feature rows (member kinds: one value per row) or a frame with a member_id column (item
    kinds: ranked items per member; params k, default 10, and exclude_seen)."""

    def load_context(self, context: Any) -> None:
        self.model = load_model(context.artifacts)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        if isinstance(self.model, MemberModel):
            return pd.Series(self.model.predict(model_input), index=model_input.index, name="prediction")
        params = params or {}
        return self.model.recommend(
            [str(m) for m in model_input["member_id"]],
            k=int(params.get("k", 10)),
            exclude_seen=params.get("exclude_seen"),
        )


set_model(ChampionModel())
