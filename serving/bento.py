"""Packing the service into a Bento with its champion models, and loading those models inside the Bento.

`community-ml bento build` copies each champion from the MLflow registry into BentoML's model store (as
`community-ml-NAME`, labelled with the registry version), then builds bentofile.yaml with those models listed
and `COMMUNITY_ML_MODEL_SOURCE=bento` set: the Bento serves the models it carries, with no registry to reach.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from features.errors import DataError
from features.home import StateHome
from features.model_registry import champion, connect

MODEL_SOURCE_ENV = "COMMUNITY_ML_MODEL_SOURCE"  # "registry" (default) or "bento"
MODEL_PREFIX = "community-ml-"
CHAMPIONS = ("churn", "value", "product-recs", "content-recs")


def models_from_bento() -> bool:
    """`$COMMUNITY_ML_MODEL_SOURCE` when set (a container built from the Bento sets it); otherwise whether this
    code runs from a Bento that packs our models (`bentoml serve TAG` applies no Bento envs)."""
    configured = os.environ.get(MODEL_SOURCE_ENV, "").strip().lower()
    if configured:
        return configured == "bento"
    manifest = Path(__file__).resolve().parents[2] / "bento.yaml"  # <bento>/src/serving/bento.py
    return manifest.exists() and MODEL_PREFIX in manifest.read_text()


def export_champions(home: StateHome) -> list[str]:
    """Every champion, copied into BentoML's model store; returns their BentoML tags."""
    import bentoml
    import mlflow

    client = connect(home)
    tags = []
    for name in CHAMPIONS:
        version = champion(client, name)
        if version is None:
            if name in ("churn", "value"):
                raise DataError(f"no champion {name} model to pack; train one with `community-ml train {name}`")
            continue
        labels = {"mlflow_name": name, "mlflow_version": str(version.version)}
        with bentoml.models.create(f"{MODEL_PREFIX}{name}", labels=labels) as model:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=model.path)
        tags.append(str(model.tag))
    return tags


def build_bento(home: StateHome, project: Path, lock_packages: bool = True) -> str:
    """Builds the Bento from bentofile.yaml with the champions packed in; returns the Bento's tag."""
    import bentoml

    config: dict[str, Any] = yaml.safe_load((project / "bentofile.yaml").read_text())
    config["models"] = export_champions(home)
    config["envs"] = [*config.get("envs", []), {"name": MODEL_SOURCE_ENV, "value": "bento"}]
    config.setdefault("python", {})["lock_packages"] = lock_packages
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=project, prefix=".bentofile-") as bentofile:
        yaml.safe_dump(config, bentofile)
        bentofile.flush()
        bento = bentoml.bentos.build_bentofile(bentofile.name, build_ctx=str(project))
    return str(bento.tag)


def load_packed(name: str) -> tuple[Any, str]:
    """A champion packed in the Bento: its MLflow Python model and its registry version."""
    import bentoml
    import mlflow

    try:
        model = bentoml.models.get(f"{MODEL_PREFIX}{name}:latest")
    except bentoml.exceptions.NotFound as exc:
        raise DataError(f"no {name} model is packed in this Bento") from exc
    loaded = mlflow.pyfunc.load_model(_mlflow_model_dir(Path(model.path)))
    return loaded.unwrap_python_model(), str(model.info.labels["mlflow_version"])


def _mlflow_model_dir(root: Path) -> str:
    """The folder holding the MLmodel file (MLflow may download into a sub-folder)."""
    found = next(iter(sorted(root.rglob("MLmodel"), key=lambda p: len(p.parts))), None)
    if found is None:
        raise DataError(f"the packed model at {root} has no MLmodel file")
    return str(found.parent)
