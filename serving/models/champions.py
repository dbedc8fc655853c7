"""A dataset's champions: the one loader that the service, batch scoring and monitoring all use.

Champions come from the MLflow registry (the dataset's DATASET.KIND models, alias "champion"), or, inside a Bento
built by `community-ml bento build`, from the models the Bento carries, with no registry to reach.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.settings import Settings, project_settings
from features.dataset.store import Dataset
from features.pipelines.interactions import ITEM_SOURCES, catalogue
from serving.models import registry
from serving.models.base import ItemModel, MemberModel
from serving.models.kinds import CHURN, KINDS, ModelKind, Task, kind

MODEL_SOURCE_ENV = Settings.variable("model_source")
CHALLENGER_ENV = Settings.variable("challenger")  # KIND:VERSION, set by `community-ml serve --challenger`
CHALLENGER_SHARE_ENV = Settings.variable("challenger_share")
_LOG = logging.getLogger(__name__)
PACKED_PREFIX = "community-ml-"  # a packed model's BentoML name: community-ml-KIND, labelled with its dataset


@dataclass(frozen=True)
class Champion:
    kind: ModelKind
    model: MemberModel | ItemModel
    name: str  # the registered model, DATASET.KIND
    version: str
    family: str
    run_id: str | None = None
    cached_at: str | None = None  # loaded from the home's cache, the registry not answering: when it was cached

    def describe(self) -> dict[str, str]:
        """What every answer says about the model that gave it (a recommender: how it orders new items too)."""
        described = {"name": self.name, "version": self.version, "family": self.family}
        new_items = getattr(self.model, "new_items", None)
        return described if new_items is None else {**described, "new_items": new_items.method}


@dataclass(frozen=True)
class Champions:
    dataset: str
    by_kind: dict[str, Champion]
    cached_at: str | None = None  # when the registry did not answer: when the copies served were cached

    def __contains__(self, which: str | ModelKind) -> bool:
        return kind(which).name in self.by_kind

    def __getitem__(self, which: str | ModelKind) -> Champion:
        wanted = kind(which)
        if wanted.name not in self.by_kind:
            raise DataError(
                f"no champion {wanted.name} model for dataset {self.dataset!r}; train one with "
                f"`{wanted.train_command(self.dataset)}`"
            )
        return self.by_kind[wanted.name]

    def of(self, task: Task) -> list[Champion]:
        return [c for c in self.by_kind.values() if c.kind.task is task]

    def missing(self, kinds: list[ModelKind]) -> list[ModelKind]:
        """Those of `kinds` without a champion."""
        return [k for k in kinds if k.name not in self.by_kind]

    def explaining(self) -> Champion | None:
        """The member champion whose top reasons an answer carries: churn's where there is one (what makes a member
        likely to leave is what ops act on), else the first member champion's; None without member champions."""
        members = self.of(Task.member)
        return next((c for c in members if c.kind is CHURN), members[0] if members else None)

    def described(self, *kinds: ModelKind) -> dict[str, dict[str, str]]:
        """name, version and family of each champion (of `kinds`, else all), by kind."""
        wanted = [k.name for k in kinds] or list(self.by_kind)
        return {k: self.by_kind[k].describe() for k in wanted if k in self.by_kind}

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features with the model inputs the member champions read, computed once for all of them."""
        for champion in self.of(Task.member):
            assert isinstance(champion.model, MemberModel)
            features = champion.model.prepare(features)
        return features

    def versions(self, task: Task | None = None) -> dict[str, str]:
        """Champion version by kind (of one task, else all): what the prediction log records."""
        return {name: c.version for name, c in self.by_kind.items() if task is None or c.kind.task is task}

    def replacing(self, challenger: Champion) -> Champions:
        """These champions with `challenger` in its kind's place: what the challenger's members are served by."""
        return Champions(self.dataset, {**self.by_kind, challenger.kind.name: challenger}, self.cached_at)

    def without(self, member_ids: set[str]) -> None:
        """Forgets these members in every item model (members who asked to be forgotten since it was trained)."""
        for champion in self.of(Task.items):
            model = champion.model
            assert isinstance(model, ItemModel)
            model.forget({m for m in member_ids if model.knows_member(m)})


@dataclass(frozen=True)
class ChallengerSetting:
    """A registered version served beside the champion of its kind to a stable share of the members."""

    kind: ModelKind
    version: str
    share: float

    @classmethod
    def parse(cls, text: str, share: float) -> ChallengerSetting:
        name, sep, version = text.strip().partition(":")
        if not sep or not version.strip().isdigit():
            raise DataError(f"--challenger {text!r}: expected KIND:VERSION, e.g. churn:3")
        if not 0 < share < 1:
            raise DataError(f"--share {share}: the challenger's share of members must be between 0 and 1")
        return cls(kind(name), version.strip(), share)

    @classmethod
    def from_env(cls) -> ChallengerSetting | None:
        configured = project_settings()
        if not configured.challenger:
            return None
        return cls.parse(configured.challenger, configured.challenger_share)

    def env(self) -> dict[str, str]:
        return {CHALLENGER_ENV: f"{self.kind.name}:{self.version}", CHALLENGER_SHARE_ENV: str(self.share)}


def load_challenger(home: StateHome, dataset: str, setting: ChallengerSetting) -> Champion:
    """The challenger's registered version, loaded; a clear error when it is not registered or is the champion."""
    if models_from_bento():
        raise DataError("a challenger is served from the MLflow registry; a Bento carries its champions only")
    client = registry.connect(home)
    name = setting.kind.registered_name(dataset)
    registered = {str(v.version): v for v in registry.versions(client, dataset, setting.kind)}
    if setting.version not in registered:
        known = ", ".join(registered) or "none"
        raise DataError(f"--challenger: {name} has no version {setting.version} (registered versions: {known})")
    current = registry.champion(client, dataset, setting.kind)
    if current is not None and str(current.version) == setting.version:
        raise DataError(f"--challenger: {name} version {setting.version} is the champion already")
    version = registered[setting.version]
    model = registry.load_version(name, setting.version)
    return Champion(setting.kind, model, name, setting.version, model.family, version.run_id)


def models_from_bento() -> bool:
    """`$COMMUNITY_ML_MODEL_SOURCE` when set (a container built from the Bento sets it); otherwise whether this
    code runs from a Bento that packs our models (`bentoml serve TAG` applies no Bento envs)."""
    configured = (project_settings().model_source or "").lower()
    if configured:
        return configured == "bento"
    manifest = Path(__file__).resolve().parents[3] / "bento.yaml"  # <bento>/src/serving/models/champions.py
    return manifest.exists() and PACKED_PREFIX in manifest.read_text()


def load_champions(
    home: StateHome, dataset: str, kinds: list[ModelKind] | None = None, optional: bool = False
) -> Champions:
    """The dataset's champion of every kind that has one, of `kinds` (else of the whole table). A clear error,
    unless the caller takes whichever there are (`optional`): for a kind named in `kinds` that has none, and,
    with no `kinds` named, where the dataset has no champion at all."""
    wanted = kinds if kinds is not None else list(KINDS.values())
    loaded = _packed(dataset, wanted) if models_from_bento() else _registered(home, dataset, wanted)
    cached = [c.cached_at for c in loaded.values() if c.cached_at is not None]
    champions = Champions(dataset, loaded, min(cached) if cached else None)
    if optional:
        return champions
    for k in kinds or []:
        champions[k]
    if not loaded:
        raise DataError(f"no champion model for dataset {dataset!r}: {untrained(dataset, wanted)}")
    return champions


def registered_versions(home: StateHome, dataset: str) -> dict[str, str] | None:
    """The registry's champion version of every kind the dataset has one of, by kind: what a replica compares
    with what it serves to learn that a champion was promoted elsewhere. None where the models come from a Bento
    (they change with a new container, not with the registry)."""
    if models_from_bento():
        return None
    server = remote_server()
    if server is not None and not server_answers(server):
        return None  # asked again next time
    # A client of its own, not registry.connect: MLflow's process-wide URIs stay as the process set them.
    uri = home.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = {k.name: registry.champion(client, dataset, k) for k in KINDS.values()}
    return {name: str(v.version) for name, v in versions.items() if v is not None}


def untrained(dataset: str, kinds: list[ModelKind]) -> str:
    """How to train each of these kinds, for messages that say which champions are missing."""
    return "; ".join(f"{k.name}: `{k.train_command(dataset)}`" for k in kinds)


def _registered(home: StateHome, dataset: str, kinds: list[ModelKind]) -> dict[str, Champion]:
    server = remote_server()
    remote = server is not None
    if server is not None and not server_answers(server):
        return _cached(home, dataset, kinds, server)
    client = registry.connect(home)
    found = {}
    for k in kinds:
        version = registry.champion(client, dataset, k)
        if version is None:
            continue
        if remote:  # a replica keeps what it serves, to start on it while the server is down: one download
            model = load_model_dir(_cache(home, dataset, k, version))
        else:
            model = registry.load_version(version.name, str(version.version))
        found[k.name] = Champion(k, model, version.name, str(version.version), model.family, version.run_id)
    return found


def remote_server() -> str | None:
    """The MLflow server the home tracks with, where it is one (http or https), not a local file."""
    server = project_settings().mlflow_tracking_uri
    return server if server is not None and server.startswith(("http://", "https://")) else None


def server_answers(server: str) -> bool:
    """Whether the MLflow server answers its health check within a few seconds (MLflow's own client would retry
    for minutes before saying it does not)."""
    import httpx

    try:
        return httpx.get(f"{server.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def cached_kinds(home: StateHome, dataset: str) -> list[str]:
    """The kinds whose champion this home keeps a copy of (to start on while the MLflow server is down)."""
    return sorted(p.parent.name for p in _cache_root(home, dataset).glob("*/champion.json"))


def _cache_root(home: StateHome, dataset: str) -> Path:
    return home.root / "cache" / "champions" / dataset


def _cache_folder(home: StateHome, dataset: str, kind_name: str) -> Path:
    return _cache_root(home, dataset) / kind_name


def _cache(home: StateHome, dataset: str, k: ModelKind, version: Any) -> Path:
    """The champion's files and its name and version under the home's cache, downloaded where it holds another
    version (written aside and renamed, so a half-written cache is never read); returns the folder."""
    folder = _cache_folder(home, dataset, k.name)
    said = folder / "champion.json"
    if said.exists() and json.loads(said.read_text()).get("version") == str(version.version):
        return folder
    staging = folder.with_name(f".{k.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(staging))
    meta = {"name": version.name, "version": str(version.version), "run_id": version.run_id}
    (staging / "champion.json").write_text(json.dumps({**meta, "cached_at": datetime.now(UTC).isoformat()}))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def _cached(home: StateHome, dataset: str, kinds: list[ModelKind], server: str) -> dict[str, Champion]:
    """The champions this replica served last, while the MLflow server does not answer; none cached: a clear
    error."""
    found = {}
    for k in kinds:
        said = _cache_folder(home, dataset, k.name) / "champion.json"
        if not said.exists():
            continue
        meta = json.loads(said.read_text())
        model = load_model_dir(said.parent)
        found[k.name] = Champion(
            k, model, meta["name"], meta["version"], model.family, meta["run_id"], meta["cached_at"]
        )
    if not found:
        raise DataError(
            f"the MLflow registry at {server} is unreachable (no answer to its health check) and this home has no "
            f"champions of {dataset!r} cached to start on: start it once the server answers (a replica keeps the "
            "champions it served, to start on them)"
        )
    _LOG.warning(
        "the MLflow server at %s does not answer: serving the champions cached at %s (%s)",
        server,
        min(str(c.cached_at) for c in found.values()),
        ", ".join(f"{c.name} v{c.version}" for c in found.values()),
    )
    return found


def _packed(dataset: str, kinds: list[ModelKind]) -> dict[str, Champion]:
    """Inside a Bento: the champions it carries for `dataset` (the newest packed, where several are)."""
    import bentoml  # only here: importing the model runtime never imports BentoML

    found = {}
    for k in kinds:
        try:
            packed = [m for m in bentoml.models.list(packed_name(k)) if m.info.labels.get("dataset") == dataset]
        except bentoml.exceptions.NotFound:
            packed = []
        if not packed:
            continue
        newest = max(packed, key=lambda m: m.info.creation_time)
        labels = newest.info.labels
        model = load_model_dir(Path(newest.path))
        found[k.name] = Champion(k, model, labels["mlflow_name"], labels["mlflow_version"], model.family)
    return found


def packed_name(k: ModelKind) -> str:
    return f"{PACKED_PREFIX}{k.name}"


def load_model_dir(root: Path) -> MemberModel | ItemModel:
    """A model downloaded from the registry into `root` (MLflow may put it in a sub-folder)."""
    found = next(iter(sorted(root.rglob("MLmodel"), key=lambda p: len(p.parts))), None)
    if found is None:
        raise DataError(f"the packed model at {root} has no MLmodel file")
    return mlflow.pyfunc.load_model(str(found.parent)).unwrap_python_model().model


def with_catalogue(dataset: Dataset, champions: Champions) -> None:
    """The recommenders with the catalogue as the dataset holds it now: items imported since training placed
    among their new items, and every item's status and date as they are now."""
    for champion in champions.of(Task.items):
        if champion.kind.items is not None:
            model = champion.model
            assert isinstance(model, ItemModel)
            model.update_items(catalogue(dataset, ITEM_SOURCES[champion.kind.items.matrix]))
