"""Point-in-time features and labels: values by hand, no leakage, orders-only data, the catalog."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.common.home import StateHome
from features.dataset.contract import TABLES
from features.dataset.importers import import_synthetic
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig
from features.dataset.validation import validate
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot

AS_OF = date(2024, 3, 1)


def store(dataset: Dataset, table: str, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1), dtype=object)
    result = validate(TABLES[table], frame, "test")
    assert result.quarantine.empty, result.quarantine
    dataset.merge(table, result.good)
    dataset.record({"kind": "test", "table": table})


def order(member, ts, order_id, product, amount, channel="app", returned=False):
    return {
        "member_id": member,
        "ts": ts,
        "order_id": order_id,
        "product_id": product,
        "amount": amount,
        "quantity": -1 if returned else 1,
        "channel": channel,
        "is_return": returned,
    }


@pytest.fixture
def handmade(dataset: Dataset) -> Dataset:
    store(
        dataset,
        "orders",
        [
            order("A", "2024-01-01 10:00", "O1", "p1", 20),
            order("A", "2024-01-01 10:00", "O1", "p2", 10),
            order("A", "2024-02-01 10:00", "O2", "p1", 30, channel="store"),
            order("A", "2024-02-10 10:00", "O2", "p1", -15, channel="store", returned=True),
            order("A", "2024-02-25 10:00", "O3", "p3", 40),
            order("A", "2024-03-01 00:00", "O4", "p1", 100),  # at T: a label, never a feature
            order("A", "2024-03-20 00:00", "O5", "p2", 50),
            order("B", "2023-12-01 12:00", "O6", "p2", 5),
            order(None, "2024-02-20 12:00", "O7", "p1", 9, channel="web"),  # a guest
            order(None, "2024-04-15 12:00", "O8", "p1", 9, channel="web"),  # the data reaches past T+H
        ],
    )
    store(
        dataset,
        "engagements",
        [
            {"member_id": "A", "ts": "2024-01-15 09:00", "action": "view", "content_id": "c1"},
            {"member_id": "A", "ts": "2024-02-20 12:00", "action": "read", "content_id": "c1"},
            {"member_id": "A", "ts": "2024-02-28 12:00", "action": "share", "content_id": "c2"},
            {"member_id": "A", "ts": "2024-02-28 18:00", "action": "message", "group_id": "g1"},
            {"member_id": "A", "ts": "2024-03-01 00:00", "action": "like", "content_id": "c1"},
            {"member_id": "C", "ts": "2024-02-01 08:00", "action": "view", "content_id": "c2"},
            {"member_id": "C", "ts": "2024-03-10 08:00", "action": "view", "content_id": "c2"},
        ],
    )
    store(
        dataset,
        "members",
        [
            {"member_id": "A", "joined_at": "2023-06-01", "city": "Wuhan"},
            {"member_id": "D", "joined_at": "2024-02-15", "city": "Suzhou"},
            {"member_id": "E", "joined_at": "2024-03-05", "city": "Suzhou"},  # joins after T: unknown at T
        ],
    )
    store(
        dataset,
        "products",
        [
            {"product_id": "p1", "category": "x"},
            {"product_id": "p2", "category": "y"},
            {"product_id": "p3", "category": "x"},
        ],
    )
    store(
        dataset,
        "contents",
        [
            {"content_id": "c1", "content_type": "knowledge"},
            {"content_id": "c2", "content_type": "scene"},
        ],
    )
    return dataset


def test_every_feature_equals_its_value_computed_by_hand(handmade: Dataset) -> None:
    # when
    result = build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    features = Snapshot(handmade, AS_OF).features().set_index("member_id")
    # then: members known before T only (E joins after T; guests are nobody)
    assert list(features.index) == ["A", "B", "C", "D"]
    assert result.members == 4
    a = features.loc["A"]
    expected = {
        "recency_days": 4 + 14 / 24,  # 2024-02-25 10:00 to 2024-03-01 00:00
        "frequency": 3,
        "monetary": 85.0,  # 20 + 10 + 30 - 15 + 40
        "sales_value": 100.0,
        "returned_value": 15.0,
        "order_lines": 4,
        "distinct_products": 3,
        "distinct_categories": 2,
        "orders_7d": 1,
        "spend_7d": 40.0,
        "orders_30d": 2,
        "spend_30d": 55.0,
        "orders_prev_30d": 1,
        "spend_prev_30d": 30.0,
        "orders_90d": 3,
        "spend_90d": 85.0,
        "orders_180d": 3,
        "spend_180d": 85.0,
        "orders_prev_90d": 0,
        "spend_prev_90d": 0.0,
        "orders_trend_30d": 1.5,
        "orders_trend_90d": 4.0,
        "spend_trend_30d": 56 / 31,
        "spend_trend_90d": 86.0,
        "avg_basket": 100 / 3,
        "returns_share": 0.15,
        "channel_count": 2,
        "channel_main": "app",  # O1 and O3; O2 went through the store
        "channel_main_share": 2 / 3,
        "gap_mean_days": 27.5,  # 31 and 24 days between O1, O2, O3
        "gap_std_days": np.sqrt(24.5),
        "days_since_last_vs_usual_gap": (4 + 14 / 24) / 27.5,
        "tenure_days": 274.0,  # joined 2023-06-01
        "eng_total": 4,
        "eng_views": 1,
        "eng_reads": 1,
        "eng_reads_knowledge": 1,
        "eng_reads_scene": 0,
        "eng_shares": 1,
        "eng_shares_scene": 1,
        "eng_likes": 0,
        "eng_messages": 1,
        "eng_checkins": 0,
        "days_since_last_engagement": 1.25,  # 2024-02-28 18:00, and 2024 has a 29 February
        "eng_active_days_30d": 2,
        "eng_30d": 3,
        "eng_prev_30d": 1,
        "eng_trend_30d": 2.0,
        "city": "Wuhan",
    }
    for name, value in expected.items():
        assert a[name] == (pytest.approx(value) if isinstance(value, float) else value), name

    # A member with one old order, one who only engaged, one who only joined.
    b, c, d = features.loc["B"], features.loc["C"], features.loc["D"]
    assert (b["frequency"], b["channel_main"], b["channel_main_share"]) == (1, "app", 1.0)
    assert pd.isna(b["gap_mean_days"]) and pd.isna(b["days_since_last_vs_usual_gap"])  # one order: no gap
    assert b["recency_days"] == pytest.approx(90.5)  # 2023-12-01 12:00
    assert (c["frequency"], c["monetary"], c["eng_total"]) == (0, 0.0, 1) and pd.isna(c["recency_days"])
    assert (d["frequency"], d["eng_total"], d["tenure_days"]) == (0, 0, 15.0)


def test_labels_come_from_the_horizon_only(handmade: Dataset) -> None:
    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    labels = Snapshot(handmade, AS_OF).labels(30).set_index("member_id")
    assert labels["churned"].to_dict() == {"A": False, "B": True, "C": True, "D": True}
    assert labels.loc["A", "future_value"] == 150.0 and labels.loc["A", "future_orders"] == 2

    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30, churn_needs_no_engagement=True))
    quiet = Snapshot(handmade, AS_OF).labels(30, churn_needs_no_engagement=True).set_index("member_id")
    assert quiet["churned"].to_dict() == {"A": False, "B": True, "C": False, "D": True}


def test_no_labels_where_the_data_does_not_reach_the_horizon(handmade: Dataset) -> None:
    result = build_snapshot(handmade, SnapshotSettings(as_of=date(2024, 4, 1), horizon_days=30))
    assert not result.labels_written
    assert not Snapshot(handmade, date(2024, 4, 1)).labels_path(30).exists()


def test_interaction_matrices_count_orders_and_weigh_actions(handmade: Dataset) -> None:
    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    products = Snapshot(handmade, AS_OF).interactions("products")
    dense = pd.DataFrame(products.matrix.toarray(), index=products.member_ids, columns=products.item_ids)
    assert dense.loc["A"].to_dict() == {"p1": 2.0, "p2": 1.0, "p3": 1.0}  # the return and O4 do not count
    assert dense.loc["B"].to_dict() == {"p1": 0.0, "p2": 1.0, "p3": 0.0}
    contents = Snapshot(handmade, AS_OF).interactions("contents")
    dense = pd.DataFrame(contents.matrix.toarray(), index=contents.member_ids, columns=contents.item_ids)
    assert dense.loc["A"].to_dict() == {"c1": 3.0, "c2": 5.0}  # view 1 + read 2; share 5


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    dataset = Dataset(StateHome(tmp_path_factory.mktemp("synthetic")), "syn")
    import_synthetic(dataset, SyntheticConfig(members=800, months=12))
    return dataset


def test_events_at_or_after_the_cutoff_change_nothing_bit_for_bit(synthetic: Dataset, tmp_path) -> None:
    # given: a snapshot as of T
    as_of = date(2025, 9, 1)
    settings = SnapshotSettings(as_of=as_of)
    build_snapshot(synthetic, settings)
    snapshot = Snapshot(synthetic, as_of)
    before = snapshot.features()
    products_before = snapshot.interactions("products")
    contents_before = snapshot.interactions("contents")
    # when: events at and after T are appended - known members, a new member, a new channel, T itself
    copy = Dataset(StateHome(tmp_path), "copy")
    for table in synthetic.tables():
        copy.write(table, synthetic.read(table))
    copy.record({"kind": "copy"})
    rng = np.random.default_rng(0)
    orders = copy.read("orders").sample(2_000, random_state=1)
    orders["ts"] = pd.Timestamp(as_of) + pd.to_timedelta(rng.integers(0, 90 * 86_400, len(orders)), unit="s")
    orders.iloc[0, orders.columns.get_loc("ts")] = pd.Timestamp(as_of)
    orders.iloc[1, orders.columns.get_loc("member_id")] = "NEWCOMER"
    orders.iloc[2, orders.columns.get_loc("channel")] = "brand_new_channel"
    copy.merge("orders", orders)
    events = copy.read("engagements").sample(2_000, random_state=2)
    events["ts"] = pd.Timestamp(as_of) + pd.to_timedelta(rng.integers(0, 90 * 86_400, len(events)), unit="s")
    copy.merge("engagements", events)
    build_snapshot(copy, settings)
    # then
    after = Snapshot(copy, as_of)
    pd.testing.assert_frame_equal(after.features(), before, check_exact=True)
    for kind, old in (("products", products_before), ("contents", contents_before)):
        new = after.interactions(kind)
        assert (new.matrix != old.matrix).nnz == 0
        assert list(new.member_ids) == list(old.member_ids) and list(new.item_ids) == list(old.item_ids)


def test_an_unchanged_dataset_reuses_its_snapshot(synthetic: Dataset) -> None:
    settings = SnapshotSettings(as_of=date(2025, 8, 1))
    first = build_snapshot(synthetic, settings)
    second = build_snapshot(synthetic, settings)
    assert not first.reused and second.reused
    assert build_snapshot(synthetic, settings, force=True).reused is False


def test_snapshots_hold_exactly_the_declared_features_with_their_types_at_every_cutoff(synthetic: Dataset) -> None:
    from features.pipelines.schema import FEATURES, LABEL_NAMES
    from features.pipelines.snapshots import dataset_schema

    declared = dataset_schema(synthetic)
    # the synthetic community has every table: every declared feature exists for it
    assert declared.columns == [f.name for f in FEATURES]
    dtypes = {"float64": "float64", "int64": "int64", "string": "object", "boolean": "bool"}
    for as_of in (date(2025, 3, 1), date(2025, 9, 1)):  # an early cutoff, before some channels and members
        build_snapshot(synthetic, SnapshotSettings(as_of=as_of))
        snapshot = Snapshot(synthetic, as_of)
        features = snapshot.features()
        assert list(features.columns) == ["member_id", *declared.columns]
        assert {c: str(features[c].dtype) for c in declared.columns} == {
            f.name: dtypes[f.dtype] for f in declared.features
        }
        assert snapshot.meta()["columns"] == declared.columns
    assert set(snapshot.labels(90).columns[1:]) <= set(LABEL_NAMES)


def test_a_plain_transactions_dataset_builds_without_engagement_features(dataset: Dataset) -> None:
    store(
        dataset,
        "orders",
        [
            {"member_id": "a", "ts": "2024-01-01", "amount": 10},
            {"member_id": "a", "ts": "2024-02-01", "amount": 20},
            {"member_id": "b", "ts": "2024-02-15", "amount": 5},
            {"member_id": "a", "ts": "2024-04-01", "amount": 7},
        ],
    )
    result = build_snapshot(dataset, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    features = Snapshot(dataset, AS_OF).features().set_index("member_id")
    assert not [c for c in features.columns if c.startswith(("eng_", "groups_", "channel_"))]
    assert "distinct_categories" not in features and "city" not in features
    assert features.loc["a", "frequency"] == 2 and features.loc["a", "gap_mean_days"] == 31.0
    assert result.labels_written
    assert Snapshot(dataset, AS_OF).labels(30).set_index("member_id")["churned"].to_dict() == {
        "a": True,
        "b": True,
    }


def test_the_cli_builds_the_latest_snapshot_and_refuses_bad_dates(handmade: Dataset) -> None:
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["features", "build", "-d", "test", "--json"])
    assert result.exit_code == 0, result.stderr
    assert '"as_of": "2024-04-16"' in result.stdout  # the day after the last event
    assert '"labels_written": false' in result.stdout
    bad = runner.invoke(app, ["features", "build", "-d", "test", "--as-of", "March"])
    assert bad.exit_code == 2 and "expected a date like 2011-09-10, or 'latest'" in bad.stderr
    early = runner.invoke(app, ["features", "build", "-d", "test", "--as-of", "2020-01-01"])
    assert early.exit_code == 2 and "is not after the first event (2023-12-01)" in early.stderr
    missing = runner.invoke(app, ["features", "build", "-d", "nope"])
    assert missing.exit_code == 2 and "dataset 'nope' not found" in missing.stderr


def test_features_do_not_depend_on_the_machines_time_zone(handmade: Dataset, monkeypatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30))
        recency = Snapshot(handmade, AS_OF).features().set_index("member_id").loc["A", "recency_days"]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert recency == pytest.approx(4 + 14 / 24)


def test_a_new_horizon_adds_labels_without_rebuilding_features(handmade: Dataset) -> None:
    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    snapshot = Snapshot(handmade, AS_OF)
    written = snapshot.features_path.stat().st_mtime_ns
    result = build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=20))
    assert "features" not in result.stage_seconds
    assert snapshot.features_path.stat().st_mtime_ns == written
    assert snapshot.labels(20).set_index("member_id").loc["A", "future_value"] == 150.0  # O4 and O5 fall in 20 days


def test_labels_built_from_older_data_are_never_reused(handmade: Dataset) -> None:
    # given: labels of two horizons as of T
    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=20))
    # when: B buys in the horizon, and the snapshot is rebuilt for one horizon only
    store(handmade, "orders", [order("B", "2024-03-05 10:00", "O9", "p2", 7)])
    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    build_snapshot(handmade, SnapshotSettings(as_of=AS_OF, horizon_days=20))
    # then: the other horizon's labels see the new order too
    labels = Snapshot(handmade, AS_OF).labels(20).set_index("member_id")
    assert not labels.loc["B", "churned"] and labels.loc["B", "future_value"] == 7.0


def test_the_query_compiled_once_gives_every_cutoff_what_compiling_it_for_that_cutoff_gives(synthetic: Dataset) -> None:
    from datetime import datetime

    from features.pipelines.point_in_time import snapshot_expr
    from features.pipelines.snapshots import _COMPILED, _features_table, connect, feature_schema

    con, src = connect(synthetic)
    declared = feature_schema(src)
    _COMPILED.clear()
    for as_of in (datetime(2025, 3, 1), datetime(2025, 9, 1), datetime(2025, 9, 1, 12, 30)):
        reused = _features_table(con, src, as_of, declared)
        compiled = con.to_pyarrow(snapshot_expr(src, as_of, declared))
        assert reused.num_rows > 0 and reused.equals(compiled) and reused.schema.equals(compiled.schema), as_of
    assert len(_COMPILED) == 1  # compiled once, for the three cutoffs


def test_a_member_sample_holds_exactly_the_full_snapshots_rows_for_the_same_members(synthetic: Dataset) -> None:
    # given: the full snapshot, labels included
    as_of = date(2025, 9, 1)
    build_snapshot(synthetic, SnapshotSettings(as_of=as_of, horizon_days=60))
    full = Snapshot(synthetic, as_of)
    members = len(full.features())
    # when: a snapshot of a sample of a quarter of the members, twice
    sampled = SnapshotSettings(as_of=as_of, horizon_days=60, sample_members=members // 4)
    result = build_snapshot(synthetic, sampled)
    again = build_snapshot(synthetic, sampled)
    # then: its own folder, the same members each time, and every value of theirs bit for bit
    sample = Snapshot(synthetic, as_of, members // 4)
    assert result.sample == members // 4 and again.reused and sample.path != full.path
    features = sample.features()
    assert 0.2 * members < len(features) <= members // 4  # the sample, less members not yet known at T
    for kind in ("products", "contents"):  # its matrices: the full matrices' rows of its members, cell for cell
        mine, whole = sample.interactions(kind), full.interactions(kind)
        assert set(mine.member_ids) <= set(features["member_id"]) and 0 < len(mine.member_ids) < len(whole.member_ids)
        rows = pd.Index(whole.member_ids).get_indexer(mine.member_ids)
        columns = pd.Index(whole.item_ids).get_indexer(mine.item_ids)
        assert (rows >= 0).all() and (columns >= 0).all()
        expected_cells = whole.matrix.tocsr()[rows][:, columns]
        assert (mine.matrix != expected_cells).nnz == 0 and expected_cells.nnz == whole.matrix.tocsr()[rows].nnz
    expected = full.features().set_index("member_id").loc[features["member_id"]].reset_index()
    pd.testing.assert_frame_equal(features, expected, check_exact=True)
    labels = full.labels(60).set_index("member_id").loc[features["member_id"]].reset_index()
    pd.testing.assert_frame_equal(sample.labels(60), labels, check_exact=True)
    # a sample no smaller than the community is the community: the full snapshot, shared
    whole = build_snapshot(synthetic, SnapshotSettings(as_of=as_of, horizon_days=60, sample_members=10 * members))
    assert whole.sample is None and whole.path == str(full.path) and whole.reused


def test_a_sample_built_without_its_matrices_is_built_again_for_a_reader_that_needs_them(synthetic: Dataset) -> None:
    # given: a sample's snapshot built for churn and value, which read no interaction matrices
    as_of = date(2025, 9, 1)
    build_snapshot(synthetic, SnapshotSettings(as_of=as_of, horizon_days=60))
    size = len(Snapshot(synthetic, as_of).features()) // 5
    for_members = SnapshotSettings(as_of=as_of, horizon_days=60, sample_members=size, interactions=False)
    first = build_snapshot(synthetic, for_members)
    sample = Snapshot(synthetic, as_of, size)
    assert first.sample == size and not first.reused and not sample.interactions_path("products").exists()
    assert build_snapshot(synthetic, for_members).reused
    # when: a recommender asks for the same sample with its matrices
    for_items = build_snapshot(synthetic, for_members.model_copy(update={"interactions": True}))
    # then: built again, with them; and reused from then on by both readers
    assert not for_items.reused and sample.interactions_path("products").exists()
    assert build_snapshot(synthetic, for_members).reused
    assert build_snapshot(synthetic, for_members.model_copy(update={"interactions": True})).reused
