"""Packing the service into a Bento with a dataset's champion models.

`community-ml bento build --dataset D` copies each of D's champions from the MLflow registry into BentoML's model
store (as `community-ml-KIND`, labelled with the dataset and the registry name and version), then builds
bentofile.yaml with those models listed and `COMMUNITY_ML_MODEL_SOURCE=bento` set: the Bento serves the models
it carries (serving/models/champions.py), with no registry to reach.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.settings import Settings
from serving.models import registry
from serving.models.champions import MODEL_SOURCE_ENV, packed_name, untrained
from serving.models.kinds import KINDS


def export_champions(home: StateHome, dataset: str) -> list[str]:
    """Every champion of the dataset, copied into BentoML's model store; returns their BentoML tags."""
    import bentoml
    import mlflow

    client = registry.connect(home)
    tags = []
    for kind in KINDS.values():
        version = registry.champion(client, dataset, kind)
        if version is None:
            continue
        labels = {"dataset": dataset, "mlflow_name": version.name, "mlflow_version": str(version.version)}
        with bentoml.models.create(packed_name(kind), labels=labels) as model:
            uri = f"models:/{version.name}/{version.version}"
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=model.path)
        tags.append(str(model.tag))
    if not tags:
        raise DataError(f"no champion model of {dataset!r} to pack: {untrained(dataset, list(KINDS.values()))}")
    return tags


def build_bento(home: StateHome, dataset: str, project: Path, lock_packages: bool = True) -> str:
    """Builds the Bento from bentofile.yaml with the dataset's champions packed in; returns the Bento's tag."""
    import bentoml

    config: dict[str, Any] = yaml.safe_load((project / "bentofile.yaml").read_text())
    config["models"] = export_champions(home, dataset)
    config["envs"] = [
        *config.get("envs", []),
        {"name": MODEL_SOURCE_ENV, "value": "bento"},
        {"name": Settings.variable("dataset"), "value": dataset},
    ]
    config.setdefault("python", {})["lock_packages"] = lock_packages
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=project, prefix=".bentofile-") as bentofile:
        yaml.safe_dump(config, bentofile)
        bentofile.flush()
        bento = bentoml.bentos.build_bentofile(bentofile.name, build_ctx=str(project))
    return str(bento.tag)
