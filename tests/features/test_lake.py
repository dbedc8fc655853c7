"""The lake: a replica copies the latest publication once, checked file by file against it, copies again when a
publication under way mixed two, and knows when a newer one is there."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.store import Dataset
from features.pipelines.lake import fetch, newer_publication, publish, published
from features.pipelines.snapshots import Snapshot
from tests.conftest import state_home_env

AS_OF = date(2026, 4, 1)


def _training_home(root: Path) -> Dataset:
    dataset = Dataset(StateHome(root), "shop")
    orders = pd.DataFrame({"member_id": ["m1", "m2"], "ts": pd.to_datetime(["2026-03-01", "2026-03-02"])})
    dataset.write("orders", orders.assign(amount=[10.0, 20.0]))
    snapshot = Snapshot(dataset, AS_OF)
    snapshot.path.mkdir(parents=True)
    snapshot.features_path.write_bytes(b"features of the snapshot")  # its bytes are all the lake looks at
    return dataset


def test_a_replica_copies_a_publication_once_and_again_only_when_a_newer_one_is_there(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    trained = _training_home(tmp_path / "trainer")
    with state_home_env(trained.home.root, COMMUNITY_ML_LAKE=lake):
        first = publish(trained, AS_OF)
    with state_home_env(tmp_path / "replica", COMMUNITY_ML_LAKE=lake) as replica:
        assert newer_publication(replica, "shop") and fetch(replica, "shop")
        copied = Dataset(replica, "shop")
        assert copied.read("orders")["amount"].tolist() == [10.0, 20.0]
        assert copied.table_path("orders").stat().st_mtime_ns == trained.table_path("orders").stat().st_mtime_ns
        assert Snapshot(copied, AS_OF).features_path.read_bytes() == b"features of the snapshot"
        assert published(replica, "shop") == first["published_at"] and not newer_publication(replica, "shop")
    with state_home_env(trained.home.root, COMMUNITY_ML_LAKE=lake):
        second = publish(trained, AS_OF)
    with state_home_env(tmp_path / "replica", COMMUNITY_ML_LAKE=lake) as replica:
        assert newer_publication(replica, "shop") and fetch(replica, "shop")
        assert published(replica, "shop") == second["published_at"]


def test_a_copy_that_mixes_two_publications_is_not_served(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    trained = _training_home(tmp_path / "trainer")
    with state_home_env(trained.home.root, COMMUNITY_ML_LAKE=str(lake)):
        publish(trained, AS_OF)
    # a publication under way: a table overwritten in place, its latest.json not written yet
    (lake / "shop" / "orders.parquet").write_bytes(b"half of another publication")
    with state_home_env(tmp_path / "replica", COMMUNITY_ML_LAKE=str(lake)) as replica:
        with pytest.raises(DataError, match="kept changing while it was copied"):
            fetch(replica, "shop", attempts=2)
        assert not Dataset(replica, "shop").path.exists() and published(replica, "shop") is None
