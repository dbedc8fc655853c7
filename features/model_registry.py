"""Reading the MLflow registry: where it is, which version is champion, and loading a champion's scorer.

Training writes to the registry (training/registry.py); batch scoring and the service read from it here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from features.errors import DataError
from features.home import StateHome
from features.recommending import Recommender, RecsKind
from features.scoring import MemberScorer, ModelKind

CHAMPION = "champion"


def connect(home: StateHome) -> MlflowClient:
    """Points MLflow at `$MLFLOW_TRACKING_URI` or the sqlite registry in the state home."""
    # MLflow narrates every step at INFO and draws download bars; our own progress lines say what matters.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # uv's environments have no pip, so MLflow cannot pin pip's version in a model's conda.yaml: harmless.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = home.mlflow_tracking_uri()
    if uri.startswith("sqlite:///"):
        home.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _champion_model(client: MlflowClient, name: str) -> tuple[Any, ModelVersion]:
    """The champion's Python model as MLflow loads it, and its registry entry; a clear error when none yet."""
    version = champion(client, name)
    if version is None:
        raise DataError(
            f"no champion {name} model in the registry at {mlflow.get_tracking_uri()}; train one with "
            f"`community-ml train {name} --dataset NAME`"
        )
    return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}").unwrap_python_model(), version


def load_champion(client: MlflowClient, kind: ModelKind) -> tuple[MemberScorer, ModelVersion]:
    """The champion churn or value scorer and its registry entry."""
    model, version = _champion_model(client, kind.value)
    return model.scorer, version


def load_recommender(client: MlflowClient, kind: RecsKind) -> tuple[Recommender, ModelVersion]:
    """The champion recommender and its registry entry."""
    model, version = _champion_model(client, kind.value)
    return model.recommender, version
