"""What monitoring compares against: the champion models and the feature snapshot they were trained on.

The reference snapshot is the newest training cutoff of the churn champion (features as of T - H, where T is the
as-of date it was trained for): the latest member population the model learned from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from features.errors import DataError
from features.home import StateHome
from features.model_registry import champion, connect, load_champion, load_recommender
from features.recommending import Recommender, RecsKind
from features.scoring import MemberScorer, ModelKind
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot
from features.store import Dataset


@dataclass
class Reference:
    dataset: Dataset  # the dataset the champion was trained on
    as_of: date  # the reference snapshot: the champion's newest training cutoff
    trained_as_of: date
    horizon_days: int
    churn: MemberScorer
    value: MemberScorer
    versions: dict[str, str]  # model name -> champion version
    recommenders: dict[RecsKind, Recommender]

    def features(self) -> pd.DataFrame:
        build_snapshot(self.dataset, SnapshotSettings(as_of=self.as_of, horizon_days=self.horizon_days))
        return Snapshot(self.dataset, self.as_of).features()


def champion_reference(home: StateHome) -> Reference:
    """The churn and value champions, the recommenders where there are champions, and the churn champion's
    training snapshot; a clear error when there is no champion to monitor."""
    client = connect(home)
    churn, churn_version = load_champion(client, ModelKind.churn)
    value, value_version = load_champion(client, ModelKind.value)
    params = client.get_run(churn_version.run_id).data.params
    try:
        cutoffs = [date.fromisoformat(c) for c in params["training_cutoffs"].split(",")]
        dataset = Dataset(home, params["dataset"])
        trained_as_of = date.fromisoformat(params["as_of"])
        horizon = int(params["horizon_days"])
    except (KeyError, ValueError) as exc:
        raise DataError(
            f"churn champion v{churn_version.version} has no training cutoffs in its MLflow run "
            f"({exc}); retrain it with `community-ml train churn`"
        ) from exc
    if not dataset.exists():
        raise DataError(
            f"the churn champion was trained on dataset {dataset.name!r}, which is no longer in {home.datasets}: "
            "its reference snapshot cannot be rebuilt; retrain the champion on a dataset that is there"
        )
    versions = {"churn": str(churn_version.version), "value": str(value_version.version)}
    recommenders: dict[RecsKind, Recommender] = {}
    for kind in RecsKind:
        if champion(client, kind.value) is not None:
            recommenders[kind], version = load_recommender(client, kind)
            versions[kind.value] = str(version.version)
    return Reference(dataset, max(cutoffs), trained_as_of, horizon, churn, value, versions, recommenders)
