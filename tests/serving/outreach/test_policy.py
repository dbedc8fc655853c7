"""The contact policy: whoever `reachable` allows is within consent, caps, quiet hours and cool-offs, over random
contact logs and policies; a bad policy file names its field."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.importers import import_file
from features.dataset.store import Dataset
from serving.outreach.actions import outreach_actions
from serving.outreach.plan import choose
from serving.outreach.policy import (
    CAP,
    CONSENT,
    COOL_OFF,
    QUIET_HOURS,
    Cap,
    OutreachPolicy,
    judged,
    load_policy,
    reachable,
)
from tests.conftest import write_text

MEMBERS = """member_id,consent_marketing,consent_sms,consent_push
M1,true,,
M2,true,false,
M3,false,,true
M4,,,
M5,true,true,true
"""
NOW = datetime(2026, 3, 10, 12)
IDS = ["M1", "M2", "M3", "M4", "M5"]


@pytest.fixture(scope="module")
def club(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("outreach")
    dataset = Dataset(StateHome(root / "home"), "club")
    import_file(dataset, "members", write_text(root / "members.csv", MEMBERS))
    feedback = "member_id,ts,kind\nM5,2026-03-01 10:00:00,complaint\nM1,2026-01-01 10:00:00,complaint\n"
    import_file(dataset, "feedback", write_text(root / "feedback.csv", feedback))
    return dataset


def _log(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    """Contacts (member, hours before NOW, action) by sms."""
    return pd.DataFrame(
        {
            "member_id": pd.Series([m for m, _, _ in rows], dtype=object),
            "ts": pd.to_datetime(pd.Series([NOW - timedelta(hours=h) for _, h, _ in rows], dtype="datetime64[ns]")),
            "channel": "sms",
            "action": pd.Series([a for _, _, a in rows], dtype=object),
        }
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(IDS), st.integers(1, 24 * 10), st.sampled_from(["offer", "content_push"])),
        max_size=25,
    ),
    caps=st.lists(st.tuples(st.integers(1, 7), st.integers(0, 4)), max_size=3),
    hour=st.integers(0, 23),
    gains=st.lists(st.floats(-50, 50), min_size=10, max_size=10),
)
def test_whoever_is_allowed_is_within_consent_caps_quiet_hours_and_cool_offs(
    club: Dataset, rows: list[tuple[str, int, str]], caps: list[tuple[int, int]], hour: int, gains: list[float]
) -> None:
    policy = OutreachPolicy.model_validate(
        {
            "channels": {"sms": {"consent": "consent_sms"}, "push": {"consent": "consent_push"}},
            "actions": {"offer": {"channels": ["sms", "push"]}, "product-push": {"channels": ["push"]}},
            "caps": [{"days": d, "at_most": n} for d, n in caps],
            "cool_offs": {"complaint_days": 30, "unanswered_offer_days": 0},
        }
    )
    at = NOW.replace(hour=hour)
    log = _log(rows)
    answer = reachable(club, policy, at, IDS, log)
    assert len(answer) == len(IDS) * 2 and set(answer["reason"].dropna()) <= {CONSENT, COOL_OFF, CAP, QUIET_HOURS}
    earlier = log[log["ts"] < pd.Timestamp(at)]
    for row in answer[answer["allowed"]].itertuples():
        assert not policy.quiet_hours.holds(hour)
        consent = {
            "sms": {"M1": True, "M2": False, "M5": True},
            "push": {"M1": True, "M2": True, "M3": True, "M5": True},
        }
        assert consent[row.channel].get(row.member_id, False)  # the channel's own, else all-marketing consent
        assert row.member_id != "M5"  # complained 9 days ago
        for days, at_most in caps:
            start = pd.Timestamp((at - timedelta(days=days - 1)).date())
            sent = earlier[(earlier["member_id"] == row.member_id) & (earlier["ts"] >= start)]
            assert len(sent) < at_most
    # The plan's choice among actions of any gains only ever uses an allowed channel, at most once per member.
    worth = {"offer": np.array(gains[:5]), "product-push": np.array(gains[5:])}
    chosen, _ = choose(IDS, worth, judged(club, policy, at, IDS, log), policy)
    allowed = set(
        zip(answer.loc[answer["allowed"], "member_id"], answer.loc[answer["allowed"], "channel"], strict=True)
    )
    assert all((member, channel) in allowed and gain >= 0 for member, _, channel, _, gain in chosen)  # 4 decimals
    assert len({member for member, *_ in chosen}) == len(chosen)


def test_the_first_rule_that_forbids_a_contact_is_named(club: Dataset) -> None:
    policy = load_policy()
    answer = reachable(club, policy, NOW, IDS, _log([("M1", 2, "content_push")])).set_index(["member_id", "channel"])
    assert answer.loc[("M2", "sms"), "reason"] == CONSENT  # refused sms, though marketing is agreed
    assert answer.loc[("M3", "sms"), "reason"] == CONSENT and answer.loc[("M3", "push"), "allowed"]
    assert answer.loc[("M4", "push"), "reason"] == CONSENT  # nothing recorded: no consent
    assert answer.loc[("M5", "sms"), "reason"] == COOL_OFF  # a complaint 9 days ago; M1's was 68 days ago
    assert answer.loc[("M1", "sms"), "reason"] == CAP  # one contact today already: the daily cap
    late = reachable(club, policy, NOW.replace(hour=22), ["M1"], _log([])).set_index("channel")
    assert set(late["reason"]) == {QUIET_HOURS}
    offered = reachable(club, policy, NOW, ["M1"], _log([("M1", 48, "offer")]))
    assert set(offered["reason"]) == {COOL_OFF}  # an offer two days ago and no order since


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("channels:\n  sms:\n    consent: consent_fax\n", "channels.sms.consent"),
        ("channels:\n  sms:\n    consent: consent_sms\ncaps:\n  - days: 7\n    at_most: -1\n", "caps.0.at_most"),
        ("channels:\n  sms:\n    consent: consent_sms\nquiet_hours:\n  from: 25\n", "quiet_hours.from"),
        ("channels:\n  sms:\n    consent: consent_sms\n    colour: red\n", "channels.sms.colour"),
        ("channels: {}\n", "settings"),
        (
            "channels:\n  sms:\n    consent: consent_sms\nactions:\n  offer:\n    channels: [fax]\n",
            "actions.offer.channels",
        ),
        ("channels:\n  sms:\n    consent: consent_sms\nactions:\n  bribe:\n    channels: [sms]\n", "actions.bribe"),
    ],
)
def test_a_bad_policy_names_its_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write_text(tmp_path / "outreach.yaml", text)
    with pytest.raises(DataError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_the_declared_policy_loads() -> None:
    policy = load_policy()
    assert set(policy.channels) == {"push", "sms", "email", "group_message"}
    assert [(c.days, c.at_most) for c in policy.caps] == [(1, 1), (7, 3)] and Cap(days=1, at_most=0).at_most == 0


def test_the_actions_a_dataset_can_take_say_why_not_where_not(home: StateHome) -> None:
    """The serving community: champions of every kind but uplift (it ran no campaign)."""
    statuses = {s.action: s for s in outreach_actions(Dataset(home, "shop"), load_policy())}
    assert list(statuses) == ["offer", "product-push", "content-push", "nothing"]
    assert not statuses["offer"].available and "community-ml train uplift --dataset shop" in str(statuses["offer"].why)
    assert statuses["product-push"].available and str(statuses["product-push"].model).startswith("shop.product-recs v")
    assert statuses["content-push"].available and statuses["nothing"].available
    assert statuses["offer"].cost == 5.0 and statuses["offer"].channels == ["sms", "push"]
