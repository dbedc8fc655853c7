"""A member's export and deletion requests, and marketing consent on push lists."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.importers import import_file, import_synthetic
from features.dataset.privacy import export_member, forget_member, forgotten, with_marketing_consent
from features.dataset.pseudonyms import pseudonym, pseudonym_key
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from serving.models.kinds import PRODUCT_RECS
from serving.prediction_log import PredictionLog, read_log
from training.items.fit import fit_recommender
from training.members.frames import stacked, training_cutoffs

MEMBER, OTHER = "M000000", "M000001"  # both bought before AS_OF
AS_OF = date(2025, 11, 1)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state home with 300 members, their snapshots and a prediction log line for two of them: made once."""
    home = StateHome(tmp_path_factory.mktemp("privacy-template"))
    dataset = Dataset(home, "club")
    import_synthetic(dataset, SyntheticConfig(members=300, months=12))
    build_snapshot(dataset, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    log = PredictionLog(home, "club")
    records = [{"member_id": m, "churn_probability": 0.5, "expected_value": 10.0} for m in (MEMBER, OTHER)]
    log.write("churn", records, {"churn": "1"}, time.perf_counter(), as_of=AS_OF)
    return home.root


@pytest.fixture
def community(home: StateHome, template: Path) -> Dataset:
    """A copy of the template for each test: forgetting a member changes it."""
    shutil.copytree(template, home.root, dirs_exist_ok=True)
    return Dataset(home, "club")


def test_export_holds_every_row_about_the_member(community: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    counts = export_member(community, MEMBER, out)
    exported = json.loads(out.read_text())
    for table in ("members", "orders", "engagements"):
        rows = community.read(table)
        assert len(exported["tables"][table]) == int((rows["member_id"] == MEMBER).sum())
    assert len(exported["tables"]["orders"]) > 0
    features = exported["features"][f"as_of={AS_OF}/features.parquet"]
    assert [r["member_id"] for r in features] == [MEMBER] and "recency_days" in features[0]
    labels = exported["features"][f"as_of={AS_OF}/labels_h30.parquet"]
    assert [r["member_id"] for r in labels] == [MEMBER] and "churned" in labels[0]
    assert len(exported["predictions"]) == 1 and exported["predictions"][0]["output"]["churn_probability"] == 0.5
    assert counts["predictions"] == 1
    with pytest.raises(DataError, match="not in dataset"):
        export_member(community, "M999999", tmp_path / "nobody.json")


def test_forget_removes_the_member_everywhere_and_audits_by_pseudonym(community: Dataset) -> None:
    home = community.home
    orders_before = community.row_count("orders")
    summary = forget_member(community, MEMBER)
    for table in ("members", "orders", "engagements"):
        assert MEMBER not in set(community.read(table)["member_id"].dropna())
    assert community.row_count("orders") == orders_before - summary.removed["orders"] > 0
    assert MEMBER not in set(pd.read_parquet(community.path / "truth.parquet")["member_id"])
    assert not (home.features / "club").exists()  # snapshots and matrices rebuild without the member
    key = pseudonym_key(home)
    logged = read_log(home)
    assert pseudonym(key, MEMBER) not in set(logged["member"]) and pseudonym(key, OTHER) in set(logged["member"])
    assert pseudonym(key, MEMBER) in forgotten(community)
    audit = (home.root / "privacy" / "audit.jsonl").read_text()
    assert pseudonym(key, MEMBER) in audit and MEMBER not in audit
    # Snapshots built from now on hold no trace of the member, features or matrices.
    build_snapshot(community, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    assert MEMBER not in set(Snapshot(community, AS_OF).features()["member_id"])
    assert MEMBER not in set(Snapshot(community, AS_OF).interactions("products").member_ids)


def test_a_forgotten_member_is_not_imported_again(community: Dataset, tmp_path: Path) -> None:
    forget_member(community, MEMBER)
    source = tmp_path / "orders.csv"
    source.write_text(
        f"member_id,ts,amount,order_id,product_id\n{MEMBER},2025-06-01,10,X1,P00001\n{OTHER},2025-06-01,12,X2,P00001\n"
    )
    summary = import_file(community, "orders", source)
    assert summary.tables[0].rows_forgotten == 1 and summary.tables[0].rows_added == 1
    assert MEMBER not in set(community.read("orders")["member_id"].dropna())


def test_the_next_models_never_see_a_forgotten_member(community: Dataset) -> None:
    def training_data() -> tuple[set[str], set[str]]:
        frame = stacked(community, training_cutoffs(date(2025, 12, 1), 30, 3), 30).frame
        recommender = fit_recommender(community, PRODUCT_RECS, AS_OF, {"factors": 8, "iterations": 2}, seed=0)
        return set(frame["member_id"]), set(recommender.member_ids)

    assert all(MEMBER in members for members in training_data())
    forget_member(community, MEMBER)
    assert all(MEMBER not in members and OTHER in members for members in training_data())


def test_push_lists_hold_only_members_with_marketing_consent(community: Dataset) -> None:
    members = community.read("members")
    refused = members.loc[~members["consent_marketing"].astype(bool), "member_id"].tolist()
    assert refused  # the synthetic community has members who said no
    kept, left_out = with_marketing_consent(community, members["member_id"].tolist())
    assert left_out == len(refused) and not set(kept) & set(refused)
