"""Where the project keeps its state: one folder for datasets, features, MLflow, logs and reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from features.common.settings import project_settings


@dataclass(frozen=True)
class StateHome:
    """The state folder and its well-known sub-folders. Nothing is created until someone writes."""

    root: Path

    @classmethod
    def from_env(cls) -> StateHome:
        """`$COMMUNITY_ML_HOME`, else `.community-ml/` in the working directory."""
        return cls(project_settings().home.expanduser().resolve())

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def mlflow_tracking_uri(self) -> str:
        """`MLFLOW_TRACKING_URI` from the environment wins (a shared server); else a local sqlite registry."""
        return project_settings().mlflow_tracking_uri or f"sqlite:///{self.mlflow_db}"
