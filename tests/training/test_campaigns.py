"""Campaigns end to end on the synthetic community's planted coupon campaign: the report recovers the planted lift
and checks the split, an uplift model finds who responds, push lists follow it, and a campaign imported from
outside is reported and modelled with nothing else."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.contacts import record_plan_file
from features.dataset.store import Dataset
from monitoring.campaign_report import CampaignReportSettings, campaign_report
from serving.models import batch
from serving.models.batch import snapshot_features
from serving.models.champions import Champions, load_champions
from serving.models.kinds import UPLIFT
from serving.outreach.plan import OfferWorth, plan_day
from serving.outreach.policy import load_policy
from serving.state import load_state, member_next_action, post_events
from tests.conftest import synthetic
from training.job import TrainSettings, train
from training.uplift.data import campaign_data
from training.uplift.fit import baskets_per_conversion, fit_uplift

CAMPAIGN_AT = date(2025, 7, 1)
HORIZON = 30


@pytest.fixture(scope="module")
def camp(shared_home: StateHome) -> Dataset:
    """3,000 members over 8 months (to 2025-08-31); a coupon campaign on 2025-07-01 to the consenting members who
    joined before it, half held out."""
    return synthetic(shared_home, "camp", members=3_000, months=8, campaign_at=CAMPAIGN_AT)


def run(*args: str) -> dict:
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, done.stderr or done.stdout
    return json.loads(done.stdout) if "--json" in args else {}


def planted_lift(dataset: Dataset) -> float:
    """The campaign's true average effect on conversion over its members: what the generator planted."""
    truth = pd.read_parquet(dataset.path / "truth.parquet")
    return float(truth["true_lift_conversion"].dropna().mean())


def test_the_report_covers_the_planted_lift_and_the_split_is_as_planned(camp: Dataset) -> None:
    report = run("campaign", "report", "-d", "camp", "-c", "coupon", "--horizon-days", str(HORIZON), "--json")
    truth = planted_lift(camp)
    conversion = report["comparisons"]["coupon"]["conversion"]
    assert report["matured"] == report["exposures"] > 2_000 and report["complete_windows"]
    assert conversion["raw"]["low"] <= truth <= conversion["raw"]["high"]
    assert conversion["cuped"]["estimate"]["low"] <= truth <= conversion["cuped"]["estimate"]["high"]
    assert conversion["raw"]["low"] > 0.05  # a real effect, not an interval around nothing
    # pre-period spend explains part of spend: CUPED removes variance from it
    assert report["comparisons"]["coupon"]["spend"]["cuped"]["variance_reduction"] > 0.1
    assert not report["sample_ratio"]["mismatch"] and report["split_source"].startswith("the plan")
    # people read the HTML from the reports index
    index = json.loads((camp.home.reports / "index.json").read_text())
    entry = next(c for c in index["campaigns"] if c["dataset"] == "camp")
    assert (camp.home.reports / entry["files"]["html"]).read_text().count("coupon") > 2
    assert "coupon" in (camp.home.reports / "index.html").read_text()


def test_a_skewed_split_is_flagged_as_a_sample_ratio_mismatch(camp: Dataset) -> None:
    # given: the same campaign, with a quarter of the control members' exposures lost (a logging bug)
    skewed = Dataset(camp.home, "camp-skewed")
    shutil.copytree(camp.path, skewed.path, dirs_exist_ok=True)
    exposures = skewed.read("exposures")
    control = exposures.index[exposures["arm"] == "control"]
    skewed.write("exposures", exposures.drop(control[::4]))
    # when
    report = campaign_report(skewed, CampaignReportSettings(campaign="coupon", horizon_days=HORIZON))
    # then
    assert report.sample_ratio.mismatch and report.sample_ratio.p_value < 0.001


def test_the_uplift_model_finds_who_responds_and_push_lists_follow_it(
    camp: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # when
    result = train(camp, UPLIFT, TrainSettings(campaign="coupon", horizon_days=HORIZON))
    # then: a learner beats random and churn-probability targeting on held-out members, and serves. With the tests'
    # pinned key: x-learner Qini 0.049, churn targeting 0.013; over 13 other keys (other held-out members) the
    # learner led churn targeting by 0.027 at least, and its uplift@10 was 3.5x random's at least
    assert result.family in ("x-learner", "t-learner") and result.promoted
    assert result.metrics["qini"] > result.rivals["random"]["qini"] + 0.01
    assert result.metrics["qini"] > result.rivals["churn-targeting"]["qini"]
    assert result.metrics["uplift_at_10"] > 1.5 * result.rivals["random"]["uplift_at_10"]
    # the members it ranks first are those the campaign moved (the generator's truth, never seen in training)
    champion = load_champions(camp.home, "camp", [UPLIFT])[UPLIFT]
    features = snapshot_features(camp, date(2025, 9, 1))
    predicted = pd.Series(champion.model.predict(features), index=features["member_id"])
    truth = pd.read_parquet(camp.path / "truth.parquet").set_index("member_id")["true_lift_conversion"].dropna()
    assert np.corrcoef(predicted[truth.index].rank(), truth.rank())[0, 1] > 0.4

    # `score` on a dataset with an uplift champion only (no churn, no value) writes every member's uplift, and says
    # what is missing and how to train it, rather than refusing
    out = tmp_path / "scores.parquet"
    summary = run("score", "-d", "camp", "--as-of", "2025-09-01", "--out", str(out), "--json")
    assert set(summary["models"]) == {"uplift"} and summary["tier_shares"] == {}
    assert summary["missing"] == {
        "churn": "community-ml train churn --dataset camp",
        "value": ("community-ml train value --dataset camp"),
    }
    assert summary["unavailable"]["tier"].startswith("tiers need the churn and value champions")
    written = pd.read_parquet(out).set_index("member_id")
    assert len(written) == len(features) and set(written.columns) == {
        "uplift",
        "top_reasons",
        "uplift_model",
        "segments",
        "tags",
    }
    np.testing.assert_allclose(written["uplift"], predicted[written.index], rtol=1e-9)
    asked = CliRunner().invoke(app, ["score", "-d", "camp", "--kinds", "churn,uplift", "--out", str(out)])
    assert asked.exit_code == 2 and "train one with `community-ml train churn --dataset camp`" in asked.stderr
    # and the service starts and answers with what there is: /score the uplift, /churn a 404 saying how to train it
    # (its endpoints called on the service's own class: a second ASGI app in one process would register BentoML's
    # metrics twice)
    import asyncio

    from bentoml.exceptions import NotFound

    from serving.cli import preflight
    from serving.service import CommunityML

    preflight(camp.home, "camp")
    monkeypatch.setenv("COMMUNITY_ML_DATASET", "camp")
    service = CommunityML.inner()
    member = str(written.index[0])
    answer = asyncio.run(service.score(member_ids=[member]))
    assert answer["models"] == {"uplift": champion.describe()}
    assert answer["members"][0]["uplift"] == pytest.approx(written.at[member, "uplift"])
    assert answer["members"][0]["tier"] is None and "churn and value" in answer["unavailable"]["tier"]
    with pytest.raises(NotFound, match="train one with `community-ml train churn --dataset camp`"):
        asyncio.run(service.churn(member_ids=[member]))
    monkeypatch.delenv("COMMUNITY_ML_DATASET")

    # a new campaign to the members it expects a push to move, the control never pushed (re-running a plan is
    # tested in tests/features/test_campaigns.py)
    first = tmp_path / "push.csv"
    plan = ("campaign", "plan", "-d", "camp", "-c", "next", "--audience", "uplift", "--arms", "A,B")
    summary = run(*plan, "--holdout", "0.2", "--out", str(first), "--json")
    pushed = pd.read_csv(first)
    assert set(pushed["arm"]) == {"A", "B"}
    assert summary["pushed"] == len(pushed) == summary["members"] - summary["arms"]["control"]
    assert abs(summary["arms"]["control"] / summary["members"] - 0.2) < 0.04
    assert (pushed["uplift"] > 0).all() and summary["members"] < len(features)  # the persuadable only
    assert (camp.read("exposures")["campaign_id"] == "next").sum() == summary["members"]

    # and the win-back list ranks churn-risk members by the lift expected (the tiers stand in for the churn and
    # value champions, which only decide who is at risk), leaving out those it expects nothing from
    scores = pd.DataFrame({"member_id": predicted.index, "uplift": predicted.to_numpy(), "expected_value": 1.0})
    scores["tier"] = np.where(np.arange(len(scores)) % 3 == 0, "churn_risk", "ordinary")
    champions = Champions("camp", {UPLIFT.name: champion})
    monkeypatch.setattr(batch, "score_members", lambda *args: (scores, champions))
    listed = batch.winback(camp, date(2025, 9, 1), tmp_path / "winback.csv", by="uplift")
    winback = pd.read_csv(tmp_path / "winback.csv")
    assert len(winback) == listed["members"] > 100
    assert (winback["tier"] == "churn_risk").all() and (winback["uplift"] > 0).all()
    assert winback["uplift"].is_monotonic_decreasing
    at_risk = scores[(scores["tier"] == "churn_risk") & (scores["uplift"] > 0)]
    assert len(winback) + listed["without_consent"] == len(at_risk)


def test_a_campaign_imported_from_outside_is_reported_and_modelled(
    camp: Dataset, shared_home: StateHome, tmp_path: Path
) -> None:
    # given: a campaign run elsewhere, as files: members, their orders, and who got which email
    files = {}
    for table in ("members", "orders"):
        files[table] = tmp_path / f"{table}.csv"
        camp.read(table).to_csv(files[table], index=False)
    arms = {"coupon": "Womens E-Mail", "control": "No E-Mail"}
    exposures = camp.read("exposures")
    exposures = exposures[exposures["campaign_id"] == "coupon"].assign(
        campaign_id="spring-mail", arm=lambda f: f["arm"].map(arms)
    )
    files["exposures"] = tmp_path / "exposures.csv"
    exposures.rename(columns={"member_id": "customer"}).to_csv(files["exposures"], index=False)
    for table, path in files.items():
        mapped = ["--map", "member_id=customer"] if table == "exposures" else []
        run("data", "import", "-d", "mail", "-t", table, "-i", str(path), *mapped)
    # when
    control = ("--control-arm", "No E-Mail")
    report = run(
        "campaign", "report", "-d", "mail", "-c", "spring-mail", "--horizon-days", str(HORIZON), *control, "--json"
    )
    trained = run(
        "train", "uplift", "-d", "mail", "--campaign", "spring-mail", "--horizon-days", str(HORIZON),
        "--treatment-arm", "Womens E-Mail", *control, "--json",
    )  # fmt: skip
    # then
    lift = report["comparisons"]["Womens E-Mail"]["conversion"]["raw"]
    assert lift["low"] <= planted_lift(camp) <= lift["high"]
    assert "assumed equal" in report["split_source"] and not report["sample_ratio"]["mismatch"]
    # Qini 0.060 against churn targeting's 0.021 with the pinned key; a lead of 0.015 at least over 5 other keys
    assert trained["family"] in ("x-learner", "t-learner")
    assert trained["metrics"]["qini"] > max(
        trained["rivals"]["random"]["qini"], trained["rivals"]["churn-targeting"]["qini"]
    )


def test_a_campaign_with_no_history_before_it_is_modelled_from_the_members_attributes(home: StateHome) -> None:
    # given: a campaign imported with its outcomes only; the push moves deal seekers, not loyal members
    rng = np.random.default_rng(5)
    n = 1_200
    members = pd.DataFrame(
        {"member_id": [f"m{i}" for i in range(n)], "persona": np.where(np.arange(n) % 2, "deal", "loyal")}
    )
    treated = rng.random(n) < 0.5
    bought = rng.random(n) < 0.2 + 0.4 * (treated & (members["persona"] == "deal"))
    exposed_at = pd.Timestamp("2025-03-01")
    dataset = Dataset(home, "outcomes-only")
    dataset.merge(
        "members",
        members.assign(joined_at=pd.NaT, city=None, age_band=None, acquisition_channel=None, consent_marketing=True),
    )
    orders = pd.DataFrame(
        {"member_id": members["member_id"][bought], "ts": exposed_at + pd.Timedelta(days=3), "amount": 20.0}
    )
    dataset.merge("orders", orders.assign(order_id=None, product_id=None, quantity=1.0, channel=None, is_return=False))
    arms = np.where(treated, "mail", "control")
    dataset.merge(
        "exposures",
        pd.DataFrame({"member_id": members["member_id"], "campaign_id": "c", "arm": arms, "ts": exposed_at}),
    )
    dataset.record({"kind": "test"})
    # when
    settings = TrainSettings(campaign="c", horizon_days=7)
    data = campaign_data(dataset, settings)
    model = fit_uplift("t-learner", data, np.ones(n, dtype=bool), UPLIFT, settings)
    # then: its features are the attributes, and it expects the lift where it was
    assert data.columns == ["persona", "consent_marketing"]
    lift = pd.Series(model.predict(data.frame), index=data.frame["persona"]).groupby(level=0).mean()
    assert lift["deal"] > 0.25 > 0.1 > abs(lift["loyal"])


def test_the_days_plan_offers_within_consent_caps_and_quiet_hours_with_a_stable_holdout(
    camp: Dataset, tmp_path: Path
) -> None:
    """Runs last in this module, after the uplift model is trained (above): it records contacts in the community."""
    policy = load_policy()
    monday = datetime(2025, 9, 1, 10)
    summary = plan_day(camp, policy, monday, tmp_path / "plan.csv")
    plan = pd.read_csv(tmp_path / "plan.csv")
    # offers only, where the uplift model expects a gain; the pushes say why not (no recommender, no responses)
    assert summary.by_action["offer"] == summary.planned > 0 and set(plan["action"]) == {"offer"}
    assert (plan["expected_gain"] > 0).all() and plan["member_id"].is_unique
    assert {"product-push", "content-push"} <= set(summary.unavailable)
    assert summary.planned + summary.held_out + sum(summary.left_out.values()) == summary.members
    # consent: nobody planned who refused marketing
    consent = camp.read("members").set_index("member_id")["consent_marketing"].astype("boolean")
    assert consent.reindex(plan["member_id"]).fillna(False).all() and summary.left_out["consent"] > 0
    # the holdout: about the policy's share, and the same members on another day
    assert 0.01 < plan["holdout"].mean() < 0.12
    tuesday = plan_day(camp, policy, monday.replace(day=2), tmp_path / "tuesday.csv")
    both = plan.merge(pd.read_csv(tmp_path / "tuesday.csv"), on="member_id")
    assert tuesday.planned > 0 and (both["holdout_x"] == both["holdout_y"]).all()
    # quiet hours and the budget
    assert plan_day(camp, policy, monday.replace(hour=22), tmp_path / "late.csv").planned == 0
    capped = plan_day(camp, policy, monday, tmp_path / "capped.csv", budget=10)
    assert capped.planned == 10 and capped.left_out["budget"] == summary.planned - 10
    best = plan[~plan["holdout"]].head(10)["member_id"].tolist()
    assert pd.read_csv(tmp_path / "capped.csv").query("~holdout")["member_id"].tolist() == best
    # the service's next action for a member is what the plan chose for them, and a contact it is told of counts
    state = load_state(camp.home, "camp")
    planned = plan.set_index("member_id")
    for member in planned.index[:40]:
        answer = member_next_action(state, member, monday)
        row = planned.loc[member]
        assert answer["holdout"] == bool(row["holdout"])
        if not row["holdout"]:
            assert (answer["action"], answer["channel"]) == (row["action"], row["channel"])
            assert answer["expected_gain"] == pytest.approx(row["expected_gain"], abs=1e-3)
    member = next(m for m in planned.index if not planned.loc[m, "holdout"])
    contact = {"member_id": member, "ts": "2025-09-01T09:00:00", "channel": "sms", "action": "offer"}
    post_events(state, {"contacts": [contact]})
    told = member_next_action(state, member, monday)
    assert told["action"] == "nothing" and told["why"] in ("cap", "cool-off")
    # a plan recorded as sent counts: later that day nobody it contacted is contacted again
    record_plan_file(camp, tmp_path / "plan.csv", monday, "monday")
    later = plan_day(camp, policy, monday.replace(hour=15), tmp_path / "later.csv")
    again = pd.read_csv(tmp_path / "later.csv").query("~holdout")
    assert not set(again["member_id"]) & set(plan[~plan["holdout"]]["member_id"])
    assert later.left_out.get("cap", 0) + later.left_out.get("cool-off", 0) >= summary.planned
    # Recorded, the plan is a campaign too: its sent members against its held-out ones, measured like any campaign
    # (here recorded as sent in June, inside the history, so the 30 days after it are in the data).
    june = record_plan_file(camp, tmp_path / "plan.csv", datetime(2025, 6, 2, 10), "june-plan", policy.holdout)
    assert june.campaign == "june-plan"
    measured = campaign_report(camp, CampaignReportSettings(campaign="june-plan", horizon_days=HORIZON))
    assert measured.exposures == measured.matured == len(plan) and measured.complete_windows
    assert measured.arms["control"].members == int(plan["holdout"].sum()) and set(measured.arms) == {
        "planned",
        "control",
    }
    planned = measured.comparisons["planned"]
    assert {"conversion", "visit", "spend", "retention"} <= set(planned)
    assert planned["spend"].raw.low <= planned["spend"].raw.difference <= planned["spend"].raw.high
    assert not measured.sample_ratio.mismatch and measured.split_source.startswith("the plan")
    with pytest.raises(DataError, match="--list 'a plan'"):
        record_plan_file(camp, tmp_path / "plan.csv", monday, "a plan", policy.holdout)


def test_a_conversion_lift_is_priced_by_what_one_more_buyer_spent_in_the_campaign() -> None:
    # Treated: 3 of 4 bought, spending 300 in all; control: 1 of 4, spending 60. Effect on conversion 0.5, on spend
    # (300 - 60) / 4 = 60 per member: one more buyer spent 120, which is 2 of the members' median basket of 60.
    treated = np.array([True] * 4 + [False] * 4)
    converted = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=float)
    spend = np.array([100, 100, 100, 0, 60, 0, 0, 0], dtype=float)
    frame = pd.DataFrame({"avg_basket": [50, 60, 70, np.nan, 60, 0, 55, 65]})
    assert baskets_per_conversion(frame, np.tile(treated, 20), np.tile(converted, 20), np.tile(spend, 20)) == (
        pytest.approx(2.0)
    )
    # An effect on conversion within two standard errors of zero prices nothing (the ratio would be noise).
    assert baskets_per_conversion(frame, treated, converted, spend) is None

    spec = SimpleNamespace(outcome="conversion", baskets_per_conversion=2.0)
    worth = OfferWorth.of(SimpleNamespace(spec=spec), pd.Series([40.0, None, 0.0, 80.0]))
    assert isinstance(worth, OfferWorth) and worth.typical_basket == 60.0  # the median of the baskets held
    assert worth.gain(np.array([0.1, 0.1]), np.array([40.0, np.nan])) == pytest.approx([8.0, 12.0])
    spend_lift = OfferWorth.of(SimpleNamespace(spec=SimpleNamespace(outcome="spend")), None)
    assert isinstance(spend_lift, OfferWorth) and spend_lift.gain(np.array([7.5]), None) == pytest.approx([7.5])
    visits = OfferWorth.of(SimpleNamespace(spec=SimpleNamespace(outcome="visit")), None)
    assert isinstance(visits, str) and "visit" in visits and "--outcome spend" in visits
