"""Writing to MLflow: experiments, run parameters and moving the `champion` alias (reading: features/model_registry)."""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from features.home import StateHome
from features.model_registry import CHAMPION, champion, connect
from features.progress import say

__all__ = ["champion", "conclude", "connect", "experiment", "run_params", "set_champion", "unloadable"]


def experiment(client: MlflowClient, home: StateHome, name: str) -> str:
    """The experiment's id; a new local experiment keeps its artefacts in the state home, not the cwd."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # (Not "is MLFLOW_TRACKING_URI set": mlflow.set_tracking_uri sets that variable itself.)
    local = client.tracking_uri == f"sqlite:///{home.mlflow_db}"
    location = home.mlflow_artifacts.as_uri() if local else None
    return client.create_experiment(name, artifact_location=location)


def run_params(client: MlflowClient, version: ModelVersion) -> dict[str, Any]:
    return dict(client.get_run(version.run_id).data.params)


def set_champion(client: MlflowClient, name: str, version: str) -> None:
    client.set_registered_model_alias(name, CHAMPION, version)


def unloadable(name: str, version: str) -> str | None:
    """Why the registered model cannot be loaded (a damaged or missing file), or None when it loads: a
    champion that the service could not load must never be named."""
    try:
        mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    except Exception as exc:  # whatever broke (I/O, a parse error in the booster, a missing spec), it is refused
        return f"{name} version {version} cannot be loaded from the registry ({type(exc).__name__}: {exc})"
    return None


def conclude(
    client: MlflowClient, name: str, version: str, reasons: list[str], promote: bool
) -> tuple[bool, list[str]]:
    """Moves the champion alias to `version` when the gate gave no reasons, promotion is on and the registered
    model loads; says which. Returns whether it moved, and every reason it did not."""
    if not reasons and promote and (problem := unloadable(name, version)):
        reasons = [problem]
    if not reasons and promote:
        set_champion(client, name, version)
        say(f"{name} version {version} is the new champion")
        return True, []
    say(f"{name} version {version} registered, champion unchanged: " + ("; ".join(reasons) or "--no-promote"))
    return False, reasons
