"""The member profile on a community small enough to work out by hand: favourites, discounted shares, the price
sensitivity's shrinkage, rules and their errors, what a dataset cannot tell, and privacy."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.common.errors import DataError
from features.dataset.contacts import record_plan_file
from features.dataset.importers import import_file
from features.dataset.privacy import export_member, forget_member
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from features.profiles.book import ProfileBook
from features.profiles.history import ProfileSettings, member_history, rhythm_concentration, unknowable
from features.profiles.rules import Env, load_rules, parse_rule
from serving.models.batch import audience_of, profiled
from serving.profiles import OUTPUT_FIELDS, profile_rules
from tests.conftest import write_text

AS_OF = date(2026, 3, 1)
MEMBERS = (
    "member_id,joined_at,persona,consent_marketing\nM1,2025-01-01,,true\nM2,2025-01-01,,false\nM3,2025-06-01,,true\n"
)
PRODUCTS = "product_id,category,price\nP1,snacks,10\nP2,beverages,20\nP3,snacks,5\n"
# M1: three orders before AS_OF (one discounted), one after (never counted); M2: one order, discounted; a return.
ORDERS = """member_id,ts,amount,order_id,product_id,quantity,channel,discount,is_return
M1,2026-02-01 10:00:00,30,O1,P1,3,app,0,false
M1,2026-02-01 10:00:00,20,O1,P2,1,app,5,false
M1,2026-02-10 20:00:00,40,O2,P2,2,web,0,false
M1,2026-02-20 20:30:00,10,O3,P3,2,app,0,false
M1,2026-02-21 09:00:00,-10,O4,P3,-2,app,0,true
M1,2026-03-05 12:00:00,500,O5,P2,25,web,0,false
M2,2026-02-15 08:00:00,16,O6,P2,1,store,4,false
"""
CONTENTS = "content_id,content_type,topic\nC1,knowledge,snacks\nC2,scene,beverages\n"
ENGAGEMENTS = """member_id,ts,action,content_id
M1,2026-02-02 21:00:00,read,C1
M1,2026-02-03 21:00:00,read,C1
M1,2026-02-04 21:00:00,like,C2
M3,2026-02-05 07:00:00,read,C2
"""


@pytest.fixture
def club(dataset: Dataset, tmp_path: Path) -> Dataset:
    tables = {"members": MEMBERS, "products": PRODUCTS, "orders": ORDERS, "contents": CONTENTS}
    for table, text in {**tables, "engagements": ENGAGEMENTS}.items():
        import_file(dataset, table, write_text(tmp_path / f"{table}.csv", text))
    return dataset


def _history(dataset: Dataset, settings: ProfileSettings) -> pd.DataFrame:
    cutoff = datetime.combine(AS_OF, datetime.min.time())
    return member_history(dataset, cutoff, pd.Series(["M1", "M2", "M3", "M4"]), settings).set_index("member_id")


def test_favourites_and_discounted_shares_are_what_the_tables_say(club: Dataset) -> None:
    # A half-life so long that weights are all but equal: the shares are plain sums.
    history = _history(club, ProfileSettings(half_life_days=1e9, prior_orders=0))
    m1 = history.loc["M1"]
    # Spend by category before AS_OF, returns and the March order left out: snacks 30 + 10, beverages 20 + 40.
    assert (m1["favourite_categories_1"], m1["favourite_categories_2"]) == ("beverages", "snacks")
    assert m1["favourite_categories_1_share"] == pytest.approx(60 / 100)
    assert m1["favourite_categories_2_share"] == pytest.approx(40 / 100)
    assert (m1["favourite_topics_1"], m1["favourite_topics_1_share"]) == ("snacks", pytest.approx(2 / 3))
    assert m1["favourite_content_types_1"] == "knowledge"
    assert m1["active_hour_1"] == 21 and m1["active_hour_2"] == 20  # three engagements at 21, two orders at 20
    # Discounts: 5 taken off a 25 line of 105 at list price; one order of three discounted.
    assert m1["discounted_share"] == pytest.approx(25 / 105)
    assert m1["discounted_order_share"] == pytest.approx(1 / 3)
    assert m1["price_sensitivity"] == pytest.approx((25 / 105 + 1 / 3) / 2)  # no shrinkage: prior_orders 0
    assert history.loc["M2", "discounted_share"] == pytest.approx(1.0)
    assert (
        pd.isna(history.loc["M3", "favourite_categories_1"]) and history.loc["M3", "favourite_topics_1"] == "beverages"
    )
    assert history.loc["M4"].drop(["price_sensitivity", "priced_orders"]).isna().all()
    # The preferred channel is the snapshot's own feature (channel_main): app for two of M1's three orders.
    profiles = {p["member_id"]: p for p in profiled(club, AS_OF)[0]}
    assert profiles["M1"]["preferred_channel"] == {"channel": "app", "share": round(2 / 3, 4)}
    assert profiles["M2"]["preferred_channel"]["channel"] == "store"


def test_price_sensitivity_is_shrunk_toward_the_population_by_its_evidence(club: Dataset) -> None:
    history = _history(club, ProfileSettings(half_life_days=1e9, prior_orders=5))
    # The pooled shares: money 25 + 20 of 125 at list price; orders 2 of 4.
    money, orders = 45 / 125, 2 / 4
    m2 = history.loc["M2"]  # one order, all of it discounted: mostly the population's
    assert m2["price_sensitivity"] == pytest.approx(((1 * 1.0 + 5 * money) / 6 + (1 * 1.0 + 5 * orders) / 6) / 2)
    # A member who never bought carries the population's value, on no orders.
    assert history.loc["M3", "price_sensitivity"] == pytest.approx((money + orders) / 2)
    assert history.loc["M3", "priced_orders"] == 0


def test_a_dataset_without_discounts_or_engagements_says_what_it_cannot_tell(dataset: Dataset, tmp_path: Path) -> None:
    orders = "member_id,ts,amount,product_id\nM1,2026-02-01 10:00:00,30,P1\n"
    import_file(dataset, "orders", write_text(tmp_path / "orders.csv", orders))
    why = unknowable(dataset)
    assert "discount" in why["price_sensitivity"]
    assert "engagements" in why["favourite_topics"] and "engagements" in why["favourite_content_types"]
    assert "categories" in why["favourite_categories"] and "channel" in why["preferred_channel"]
    profiles, _ = profiled(dataset, AS_OF)
    assert profiles[0]["price_sensitivity"] is None and profiles[0]["favourite_topics"] == []
    assert set(why) <= set(profiles[0]["unknown"])
    # Rules reading what the dataset cannot tell are left out, with why.
    assert "eng_shares" in profiles[0]["unknown"]["segment:social_sharer"]
    assert "price_sensitivity" in profiles[0]["unknown"]["segment:price_sensitive"]


def _fields() -> dict[str, str]:
    return {"frequency": "number", "persona": "text", "price_sensitivity": "number", "tier": "text"}


def test_rules_evaluate_on_arrays_with_empty_values_false() -> None:
    env = Env(
        4,
        {
            "frequency": np.array([1.0, 5.0, np.nan, 3.0]),
            "persona": np.array(["student", None, "student", "office_worker"], dtype=object),
            "price_sensitivity": np.array([0.5, 0.1, 0.4, np.nan]),
            "tier": np.array(["high_value", "new", None, "churn_risk"], dtype=object),
        },
        {"frequency": np.array([1.0, 2.0, 3.0, 4.0, 5.0])},
    )
    fields = _fields()

    def held(text: str) -> list[bool]:
        return parse_rule("r", "", text, fields, frozenset(), "test").evaluate(env).tolist()

    assert held("frequency >= 3 and price_sensitivity < 0.2") == [False, True, False, False]
    assert held("persona == 'student' or tier in ['new', 'churn_risk']") == [True, True, True, True]
    assert held("persona != 'student'") == [False, False, False, True]  # an empty persona is not "not a student"
    assert held("not known(price_sensitivity)") == [False, False, False, True]
    assert held("pct(frequency) >= 0.6") == [False, True, False, True]  # 5 is above 4 of 5; 3 is above 3 of 5
    assert held("frequency * price_sensitivity > 0.45") == [True, True, False, False]
    assert held("1 <= frequency < 4") == [True, False, False, True]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("churn_prob >= 0.5", "unknown field 'churn_prob'"),
        ("frequency >=", "not a rule"),
        ("persona > 'a'", "not ordered"),
        ("persona == 3", "compares text with a number"),
        ("__import__('os')", "the functions are"),
        ("frequency.real > 1", "is not allowed"),
        ("segment('nobody')", "unknown segment 'nobody'"),
        ("pct(persona) > 0.5", "pct() ranks numbers"),
    ],
)
def test_a_bad_rule_names_its_file_entry_and_field(tmp_path: Path, rule: str, message: str) -> None:
    path = write_text(tmp_path / "tags.yaml", f'tags:\n  bad_one:\n    meaning: a test\n    rule: "{rule}"\n')
    with pytest.raises(DataError) as caught:
        load_rules(path, "tags", _fields(), frozenset({"price_sensitive"}))
    assert str(path) in str(caught.value) and "tags.bad_one.rule" in str(caught.value)
    assert message in str(caught.value)


def test_the_declared_files_load_and_a_misspelt_field_is_named_with_its_fix(tmp_path: Path) -> None:
    rules = profile_rules()
    assert len(rules.segments) == 12 and all(r.meaning for r in [*rules.segments, *rules.tags])
    assert "price_sensitive" in {r.name for r in rules.segments}
    tags = write_text(tmp_path / "tags.yaml", "tags:\n  t:\n    meaning: m\n    rule: churn_probabilty > 0.5\n")
    with pytest.raises(DataError, match=r"unknown field 'churn_probabilty' \(did you mean churn_probability\?\)"):
        profile_rules(tags=tags)
    assert OUTPUT_FIELDS["tier"] == "text"


def test_an_unknown_audience_is_named_with_the_declared_ones(club: Dataset) -> None:
    with pytest.raises(DataError, match=r"no tag 'nobody'.*declared: vip_at_risk"):
        audience_of(club, AS_OF, "tag:nobody")
    with pytest.raises(DataError, match="segment:NAME or tag:NAME"):
        audience_of(club, AS_OF, "colour:red")


def test_a_profile_is_in_the_export_and_gone_after_forget(club: Dataset, tmp_path: Path) -> None:
    build_snapshot(club, SnapshotSettings(as_of=AS_OF, horizon_days=30))
    profiles, _ = profiled(club, AS_OF)
    assert "M1" in {p["member_id"] for p in profiles}
    export_member(club, "M1", tmp_path / "export.json")
    exported = json.loads((tmp_path / "export.json").read_text())
    (held,) = exported["profiles"].values()
    assert [row["member_id"] for row in held] == ["M1"] and held[0]["favourite_categories_1"] == "beverages"
    assert not any(name.startswith("profile-") for name in exported["features"])
    forget_member(club, "M1")
    assert not list(Snapshot(club, AS_OF).path.parent.glob("**/profile-*"))  # gone with the snapshots
    profiles, _ = profiled(club, AS_OF)
    assert "M1" not in {p["member_id"] for p in profiles}
    settings = profile_rules().settings
    book = ProfileBook.open(club, Snapshot(club, AS_OF).path, AS_OF, Snapshot(club, AS_OF).features, settings, None)
    assert book.history.position("M1") is None and book.history.position("M2") is not None


def test_a_sent_plan_is_recorded_once_and_shows_in_the_profile(club: Dataset, tmp_path: Path) -> None:
    plan = write_text(
        tmp_path / "plan.csv",
        "member_id,action,channel,item_id,holdout\nM1,offer,sms,,false\nM2,product-push,push,P1,false\n"
        "M3,offer,sms,,true\nM1,nothing,,,false\n",
    )
    sent = record_plan_file(club, plan, datetime(2026, 2, 25, 9), "spring")
    assert (sent.contacts, sent.held_out, sent.nothing, sent.added) == (2, 1, 1, 2)
    assert record_plan_file(club, plan, datetime(2026, 2, 25, 9), "spring").added == 0  # the same send, once
    log = club.read("contacts")
    assert sorted(zip(log["member_id"], log["action"], log["list_id"], strict=True)) == [
        ("M1", "offer", "spring"),
        ("M2", "product_push", "spring"),  # categories are kept lower-case, with _ for -
    ]
    bad = write_text(tmp_path / "bad.csv", "member_id,action,channel\nM1,offer,\n")
    with pytest.raises(DataError, match=r"bad\.csv: row 1, field channel: missing.*nothing was recorded"):
        record_plan_file(club, bad, datetime(2026, 2, 26), None)
    history = _history(club, ProfileSettings()).loc["M1"]
    assert (history["last_contact_1_channel"], history["last_contact_1_action"]) == ("sms", "offer")
    assert history["last_contact_1_ts"] == "2026-02-25T09:00:00" and history["contacts_30d"] == 1
    assert _history(club, ProfileSettings()).loc["M3", "contacts_30d"] == 0  # held out: never contacted
    profiles, _ = profiled(club, AS_OF)
    m2 = next(p for p in profiles if p["member_id"] == "M2")
    assert m2["last_contacts"] == [{"ts": "2026-02-25T09:00:00", "channel": "push", "action": "product_push"}]
    assert m2["consent"]["marketing"] is False and "last_contacts" not in m2["unknown"]
    assert forget_member(club, "M1").removed["contacts"] == 1


@pytest.mark.parametrize("concentration", [3.5, 20.0])
def test_the_rhythm_prior_recovers_the_concentration_members_were_drawn_with(concentration: float) -> None:
    # Members' weekdays drawn from a Dirichlet-multinomial of known concentration: the moments estimate finds it,
    # and members with no rhythm of their own (every weekday as likely for each) give the largest prior.
    rng = np.random.default_rng(7)
    rows = []
    for member in range(3000):
        shares = rng.dirichlet(np.full(7, concentration / 7))
        rows += [(member, int(d)) for d in rng.choice(7, int(rng.integers(2, 30)), p=shares)]
    with duckdb.connect() as con:
        con.register("drawn", pd.DataFrame(rows, columns=["member_id", "choice"]))
        con.execute("CREATE TEMP TABLE counted AS SELECT member_id, choice, count(*) AS n FROM drawn GROUP BY ALL")
        con.execute(
            "CREATE TEMP TABLE everyone AS SELECT choice, sum(n) / (SELECT sum(n) FROM counted) AS share "
            "FROM counted GROUP BY choice"
        )
        assert rhythm_concentration(con) == pytest.approx(concentration, rel=0.25)
