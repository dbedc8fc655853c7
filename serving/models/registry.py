"""The MLflow registry, the one place that reads and writes it: where it is, each dataset's registered models,
which version is champion, and loading a version's model.

Every dataset has its own registered models, named DATASET.KIND (`demo.churn`, `retail.product-recs`): training,
promotion, serving and monitoring of one dataset never see another's models.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from features.common.home import StateHome
from features.common.settings import project_settings
from serving.models.base import ItemModel, MemberModel
from serving.models.kinds import ModelKind

CHAMPION = "champion"


def connect(home: StateHome) -> MlflowClient:
    """Points MLflow at `$MLFLOW_TRACKING_URI` or the sqlite registry in the state home."""
    # MLflow narrates every step at INFO and draws download bars; our own progress lines say what matters.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # uv's environments have no pip, so MLflow cannot pin pip's version in a model's conda.yaml: harmless.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = home.mlflow_tracking_uri()
    named = project_settings().mlflow_tracking_uri is not None  # a server the caller named (read before MLflow writes)
    if uri.startswith("sqlite:///"):
        home.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not named:
        # MLflow writes the URIs it is given into the process's environment, where they would name the registry
        # of every state home after this one: a process that touches two homes (a benchmark's worlds, a pool's
        # seeds) would read the first home's champions in the second, and so would every command it starts. Only
        # a server the caller named stays (the registry always follows the tracking URI here).
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            os.environ.pop(name, None)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(client: MlflowClient, dataset: str, kind: ModelKind) -> ModelVersion | None:
    """The dataset's champion version of that kind, or None."""
    try:
        return client.get_model_version_by_alias(kind.registered_name(dataset), CHAMPION)
    except MlflowException:
        return None


def set_champion(client: MlflowClient, dataset: str, kind: ModelKind, version: str) -> None:
    client.set_registered_model_alias(kind.registered_name(dataset), CHAMPION, version)


def versions(client: MlflowClient, dataset: str, kind: ModelKind) -> list[ModelVersion]:
    """Every registered version of the dataset's model of that kind, oldest first."""
    found = client.search_model_versions(f"name='{kind.registered_name(dataset)}'")
    return sorted(found, key=lambda v: int(v.version))


def load_version(name: str, version: str) -> MemberModel | ItemModel:
    """A registered version's model, as MLflow loads it from the registry."""
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model


def unloadable(name: str, version: str) -> str | None:
    """Why the registered model cannot be loaded (a damaged or missing file), or None when it loads: a
    champion that the service could not load must never be named."""
    try:
        load_version(name, version)
    except Exception as exc:  # whatever broke (I/O, a parse error in the booster, a missing spec), it is refused
        return f"{name} version {version} cannot be loaded from the registry ({type(exc).__name__}: {exc})"
    return None


def run_params(client: MlflowClient, version: ModelVersion) -> dict[str, Any]:
    return dict(client.get_run(version.run_id).data.params)


def experiment(client: MlflowClient, home: StateHome, name: str) -> str:
    """The experiment's id; a new local experiment keeps its artefacts in the state home, not the cwd."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # (Not "is MLFLOW_TRACKING_URI set": a caller may have set it to this very registry.)
    local = client.tracking_uri == f"sqlite:///{home.mlflow_db}"
    location = home.mlflow_artifacts.as_uri() if local else None
    return client.create_experiment(name, artifact_location=location)
