"""What monitoring compares against: the dataset's champions and the feature snapshot they were trained on.

The reference snapshot is the newest training cutoff of the dataset's churn champion (features as of T - H,
where T is the as-of date it was trained for): the latest member population the model learned from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from features.common.errors import DataError
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from serving.models import registry
from serving.models.champions import Champions, load_champions
from serving.models.kinds import CHURN
from serving.models.tiers import tiers_unavailable


@dataclass
class Reference:
    dataset: Dataset
    as_of: date  # the reference snapshot: the churn champion's newest training cutoff
    trained_as_of: date
    horizon_days: int
    champions: Champions

    @property
    def versions(self) -> dict[str, str]:
        """Champion version by kind."""
        return self.champions.versions()

    @property
    def models(self) -> dict[str, dict[str, str]]:
        """Each champion's registered name, version and family, by kind: what reports say they judged."""
        return self.champions.described()

    def features(self) -> pd.DataFrame:
        build_snapshot(self.dataset, SnapshotSettings(as_of=self.as_of, horizon_days=self.horizon_days))
        return Snapshot(self.dataset, self.as_of).features()


def champion_reference(dataset: Dataset) -> Reference:
    """The dataset's champions and the churn champion's training snapshot; a clear error when there is no
    champion to monitor."""
    champions = load_champions(dataset.home, dataset.name)
    if why := tiers_unavailable(champions):  # monitoring compares predictions and tiers
        raise DataError(f"{dataset.name}: nothing to monitor: {why}")
    churn = champions[CHURN]
    client = registry.connect(dataset.home)
    params = dict(client.get_run(churn.run_id).data.params) if churn.run_id else {}
    try:
        cutoffs = [date.fromisoformat(c) for c in params["training_cutoffs"].split(",")]
        trained_as_of = date.fromisoformat(params["as_of"])
        horizon = int(params["horizon_days"])
    except (KeyError, ValueError) as exc:
        raise DataError(
            f"{churn.name} champion v{churn.version} has no training cutoffs in its MLflow run ({exc}); retrain it "
            f"with `community-ml train churn --dataset {dataset.name}`"
        ) from exc
    return Reference(dataset, max(cutoffs), trained_as_of, horizon, champions)
