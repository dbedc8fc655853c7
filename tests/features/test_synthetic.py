"""The synthetic community: deterministic, valid under the contract, and carrying the effects it plants."""

from __future__ import annotations

import pandas as pd
import pytest

from features.dataset.contract import TABLES
from features.dataset.synthetic import SyntheticConfig, SyntheticData, generate
from features.dataset.validation import validate

START = pd.Timestamp("2025-01-01")


@pytest.fixture(scope="module")
def community() -> SyntheticData:
    return generate(SyntheticConfig(members=5_000))


def test_the_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    first = generate(SyntheticConfig(members=300, seed=3))
    second = generate(SyntheticConfig(members=300, seed=3))
    other = generate(SyntheticConfig(members=300, seed=4))
    for table, frame in first.tables.items():
        pd.testing.assert_frame_equal(frame, second.tables[table])
    assert not first.tables["orders"].equals(other.tables["orders"])


def test_a_community_of_several_chunks_is_the_same_for_a_seed_with_unique_ids_and_is_stored_chunk_by_chunk(
    dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.dataset import synthetic
    from features.dataset.importers import import_synthetic
    from features.dataset.store import in_stored_order

    config = SyntheticConfig(members=700, seed=5)
    small = generate(SyntheticConfig(members=300, seed=5))  # one chunk, as any community was before chunks
    monkeypatch.setattr(synthetic, "CHUNK_MEMBERS", 300)  # three chunks: 300, 300 and 100 members
    chunked, again = generate(config), generate(config)
    for table, frame in chunked.tables.items():
        pd.testing.assert_frame_equal(frame, again.tables[table])
    members, orders = chunked.tables["members"], chunked.tables["orders"]
    assert list(members["member_id"]) == [f"M{i:06d}" for i in range(700)]
    assert orders.groupby("order_id")["member_id"].nunique().max() == 1  # an order id is one member's order
    assert orders["order_id"].str[1:].astype(int).max() + 1 >= orders["order_id"].nunique()
    # The first chunk goes on with the catalogue's generator: it is the community of its size, the next ones differ.
    pd.testing.assert_frame_equal(chunked.tables["products"], small.tables["products"])
    pd.testing.assert_frame_equal(members.head(300), small.tables["members"])
    assert not members["persona"].iloc[300:600].reset_index(drop=True).equals(small.tables["members"]["persona"])
    # Written a chunk at a time: every row is there, each chunk's events in time order.
    import_synthetic(dataset, config)
    for table, frame in chunked.tables.items():
        stored = dataset.read(table)
        assert len(stored) == len(frame), table
        if table in ("members", "products"):
            pd.testing.assert_frame_equal(stored, in_stored_order(table, frame), check_dtype=False)
    first_chunk = dataset.read("orders").query("member_id < 'M000300'")
    assert first_chunk["ts"].is_monotonic_increasing


def test_every_generated_row_meets_the_contract(community: SyntheticData) -> None:
    for table, frame in community.tables.items():
        result = validate(TABLES[table], frame, "synthetic")
        assert result.quarantine.empty, (table, result.quarantine.head())
        assert len(result.good) == len(frame)


@pytest.mark.slow
def test_the_default_community_is_twenty_thousand_members_over_a_year_with_a_million_events() -> None:
    data = generate(SyntheticConfig())
    assert len(data.tables["members"]) == 20_000
    assert data.event_count > 1_000_000
    span = data.tables["engagements"]["ts"].max() - data.tables["engagements"]["ts"].min()
    assert span >= pd.Timedelta(days=365)
    assert set(data.tables["members"]["persona"]) == {
        "price_sensitive",
        "quality_seeking",
        "social_sharer",
        "young_parent",
        "office_worker",
        "student",
    }
    assert set(data.tables["groups"]["group_type"]) == {"promotion", "service", "interest", "membership"}
    assert set(data.tables["contents"]["content_type"]) == {"knowledge", "scene", "activity", "promotion"}


def _activity_ratio(events: pd.DataFrame, churn_at: pd.Series, late: tuple[int, int]) -> float:
    """Events per day in a late window before churn over events per day 180-120 days before it."""
    events = events[events["member_id"].isin(churn_at.index)]
    days_before = (events["ts"] - events["member_id"].map(churn_at)).dt.days
    base = days_before.between(-180, -121).sum() / 60
    recent = days_before.between(late[0], late[1] - 1).sum() / (late[1] - late[0])
    return recent / base


def test_engagement_fades_before_orders_do_ahead_of_churn(community: SyntheticData) -> None:
    # given: members who churn with at least 200 days of history before it
    truth = community.truth.set_index("member_id")
    joined = community.tables["members"].set_index("member_id")["joined_at"].clip(lower=START)
    churn_at = truth["churn_at"].dropna()
    churn_at = churn_at[(churn_at - joined.reindex(churn_at.index)).dt.days > 200]
    assert len(churn_at) > 300
    engagements = community.tables["engagements"]
    engagements = engagements[~engagements["action"].isin(["join_group", "leave_group"])]
    sales = community.tables["orders"][~community.tables["orders"]["is_return"]]
    # when: 75 to 30 days before churn
    engagement_ratio = _activity_ratio(engagements, churn_at, (-75, -30))
    order_ratio = _activity_ratio(sales, churn_at, (-75, -30))
    # then: engagement has already fallen while orders have not yet
    assert engagement_ratio < 0.75
    assert order_ratio > 0.85
    # and in the last 30 days both have fallen
    assert _activity_ratio(sales, churn_at, (-30, 0)) < 0.6


def test_personas_prefer_their_categories_and_content_types(community: SyntheticData) -> None:
    persona = community.tables["members"].set_index("member_id")["persona"]
    category = community.tables["products"].set_index("product_id")["category"]
    sales = community.tables["orders"].query("~is_return")
    spend = sales.groupby([sales["member_id"].map(persona), sales["product_id"].map(category)])["amount"].sum()
    share = spend.unstack().pipe(lambda s: s.div(s.sum(axis=1), axis=0))
    assert share.loc["young_parent", "baby_care"] > 3 * share.drop("young_parent")["baby_care"].max()
    assert share.loc["student", "stationery"] == share["stationery"].max()

    content_type = community.tables["contents"].set_index("content_id")["content_type"]
    reads = community.tables["engagements"].dropna(subset=["content_id"])
    kinds = pd.crosstab(reads["member_id"].map(persona), reads["content_id"].map(content_type), normalize="index")
    assert kinds["knowledge"].idxmax() == "quality_seeking"
    assert kinds["promotion"].idxmax() == "price_sensitive"
    assert kinds.loc["quality_seeking", "knowledge"] > 2 * kinds.loc["price_sensitive", "knowledge"]


def test_personas_share_tastes_for_products_within_a_category(community: SyntheticData) -> None:
    # given: each persona's share of its stationery purchases per product (favourites left in: they follow tastes)
    persona = community.tables["members"].set_index("member_id")["persona"]
    products = community.tables["products"].set_index("product_id")
    sales = community.tables["orders"].query("~is_return")
    sales = sales[sales["product_id"].map(products["category"]) == "stationery"]
    counts = pd.crosstab(sales["member_id"].map(persona), sales["product_id"])
    shares = counts.div(counts.sum(axis=1), axis=0)

    # then: halves of one persona agree on their favourites more than two personas do
    members = sales["member_id"].drop_duplicates().sort_values()
    half = set(members.iloc[::2])
    students = sales[sales["member_id"].map(persona) == "student"]
    split = pd.crosstab(students["member_id"].isin(half), students["product_id"], normalize="index")
    within = split.T.corr().iloc[0, 1]
    across = shares.T.corr().where(lambda c: c < 0.999).stack().median()
    assert within > 0.8 and across < within - 0.2


def test_spending_is_seasonal(community: SyntheticData) -> None:
    sales = community.tables["orders"].query("~is_return")
    per_month = sales.groupby(sales["ts"].dt.to_period("M")).size()
    assert per_month[pd.Period("2025-11")] > 1.5 * per_month[pd.Period("2025-09")]
    assert per_month[pd.Period("2025-06")] > 1.5 * per_month[pd.Period("2025-07")]


def test_promotion_driven_members_buy_on_promotions_and_churn_more(community: SyntheticData) -> None:
    truth = community.truth.set_index("member_id")
    churned = truth["churn_at"].notna()
    assert churned[truth["promo_driven"]].mean() > 1.25 * churned[~truth["promo_driven"]].mean()

    sales = community.tables["orders"].query("~is_return")
    promo_day = (sales["ts"].dt.day == 8) | ((sales["ts"].dt.month == 11) & (sales["ts"].dt.day <= 11))
    driven = sales["member_id"].map(truth["promo_driven"])
    assert promo_day[driven].mean() > 2 * promo_day[~driven].mean()


def test_a_line_bought_on_a_promotion_day_says_the_fifth_taken_off_and_no_other_line_has_a_discount(
    community: SyntheticData,
) -> None:
    sales = community.tables["orders"].query("~is_return")
    day, month = sales["ts"].dt.day, sales["ts"].dt.month
    promo = (
        ((month == 6) & (day <= 18))
        | ((month == 11) & (day <= 11))
        | ((month == 12) & day.between(10, 12))
        | (day == 8)
    )
    assert (sales.loc[~promo, "discount"] == 0).all() and (sales.loc[promo, "discount"] > 0).all()
    # a fifth off the list price: the discount is a quarter of what was paid (to the cent, per line)
    paid = sales.loc[promo, "amount"]
    assert ((sales.loc[promo, "discount"] - paid / 4).abs() <= 0.01 * (1 + sales.loc[promo, "quantity"])).all()
    # promotion-driven members' spend is discounted more often
    truth = community.truth.set_index("member_id")
    discounted = (sales["discount"] > 0).groupby(sales["member_id"].map(truth["promo_driven"])).mean()
    assert discounted[True] > 2 * discounted[False]


def test_generate_writes_a_dataset_once_and_replaces_it_only_when_forced(home, tmp_path) -> None:
    from typer.testing import CliRunner

    from cli import app
    from features.dataset.store import Dataset

    runner = CliRunner()
    args = ["data", "generate", "-d", "tiny", "--members", "200", "--months", "12"]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.stderr
    dataset = Dataset(home, "tiny")
    assert dataset.tables() == [
        "members",
        "products",
        "contents",
        "groups",
        "orders",
        "engagements",
        "feedback",
        "surveys",
    ]
    assert dataset.read("members")["member_id"].nunique() == 200
    orders = dataset.read("orders")

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already generated with these settings" in again.stdout
    other = runner.invoke(app, [*args[:-1], "13"])
    assert other.exit_code == 2 and "already exists with other content; use --force" in other.stderr
    forced = runner.invoke(app, [*args, "--seed", "8", "--force"])
    assert forced.exit_code == 0
    assert not dataset.read("orders").equals(orders)


def test_a_config_file_is_validated_strictly(home, tmp_path) -> None:
    from typer.testing import CliRunner

    from cli import app

    config = tmp_path / "synthetic.yaml"
    config.write_text("members: 200\nmonths: 12\nmembrs: 5\n")
    result = CliRunner().invoke(app, ["data", "generate", "-d", "x", "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}: invalid settings: membrs: Extra inputs are not permitted" in result.stderr


def test_feedback_and_surveys_come_at_shop_rates_and_groups_differ_in_health(community: SyntheticData) -> None:
    tables = community.tables
    orders = tables["orders"][~tables["orders"]["is_return"]]["order_id"].nunique()
    kinds = tables["feedback"]["kind"].value_counts()
    assert 0.10 < kinds["review"] / orders < 0.14  # about 12% of orders reviewed
    assert kinds["complaint"] > kinds["dispute"] > 0
    assert tables["surveys"]["score"].between(0, 10).all() and len(tables["surveys"]) > 0
    health = community.group_truth
    assert health is not None and len(health) == len(tables["groups"]) and health["declining_from"].isna().all()


def test_the_declining_group_goes_quiet_and_complains_more_and_nothing_else_moves() -> None:
    config = {"members": 2_000, "months": 15, "seed": 3, "groups": 8}
    calm = generate(SyntheticConfig(**config))
    declining = generate(SyntheticConfig(**config, declining_group_at="2025-12-01"))
    pd.testing.assert_frame_equal(calm.tables["orders"], declining.tables["orders"])  # drawn before engagements
    pd.testing.assert_frame_equal(calm.tables["members"], declining.tables["members"])

    def group_actions(data: SyntheticData, start: str, end: str) -> int:
        e = data.tables["engagements"]
        return int(((e["group_id"] == "G0002") & (e["ts"] >= start) & (e["ts"] < end)).sum())

    # the last two months (60-120 days after the decline began: a sixth of the rate) against the same in the calm one
    assert group_actions(declining, "2026-02-01", "2026-04-01") < 0.3 * group_actions(calm, "2026-02-01", "2026-04-01")
    assert group_actions(declining, "2025-10-01", "2025-12-01") == pytest.approx(
        group_actions(calm, "2025-10-01", "2025-12-01"), rel=0.1
    )
    truth = declining.group_truth
    assert truth is not None and truth.loc[truth["declining_from"].notna(), "group_id"].tolist() == ["G0002"]
