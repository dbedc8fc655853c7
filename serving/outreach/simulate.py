"""`community-ml data simulate`: a plan played through a generated community's hidden answers
(features/dataset/responses.py), so that plans made by any policy are compared on the same world.

Every planned row gets its `gain`: the revenue the contact adds over the next 30 days (with it, minus without it)
less the action's and the channel's cost from the contact policy; 0 for a held-out member or a row planning nothing.
The world also says who the contact annoyed (unsubscribes, complaints), and the policy says which contacts it should
never have allowed (no consent, past a cap, in quiet hours, in a cool-off, a second contact the same day): a plan is
judged on both.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features.common.errors import DataError
from features.dataset.contacts import NOTHING, read_plan
from features.dataset.responses import HORIZON_DAYS, Contacts, World, generated_config
from features.dataset.store import Dataset
from serving.models.batch import check_out_path, write_table
from serving.outreach.policy import CONSENT, OutreachPolicy, reachable

SAME_DAY = "second contact the same day"


class SimulationSummary(BaseModel):
    dataset: str
    plan: str
    at: datetime
    horizon_days: int
    contacts: int  # rows sent (not held out, not nothing)
    held_out: int
    gain: float  # the plan's net revenue over the horizon against sending nothing, in the orders' currency
    gain_by_action: dict[str, float]
    expected_gain: float  # the same, from the world's expectations instead of its draws
    answered: int
    unsubscribed: int
    complained: int
    breaches: dict[str, int]  # contacts the policy forbids, by the first rule they break
    out: str


def simulate_plan(
    dataset: Dataset, plan: Path, policy: OutreachPolicy, at: datetime, out: Path, world: World | None = None
) -> SimulationSummary:
    """Plays `plan` (member_id, action, holdout; channel and item_id where it has them) sent at `at`, writing a row
    per planned member with its gain to `out`."""
    check_out_path(out)
    world = world or World(generated_config(dataset))
    rows = read_plan(plan)  # indexed by the file's row numbers, which errors name
    rows["member_id"] = rows["member_id"].astype("string")
    unknown = sorted(set(rows["action"]) - {NOTHING} - set(policy.actions))
    if unknown:
        raise DataError(f"{plan}: action {unknown[0]!r} is not one the policy declares ({', '.join(policy.actions)})")
    channel = _channels(rows, policy, plan)
    sent = (~rows["holdout"] & rows["action"].ne(NOTHING)).to_numpy()
    members = rows.loc[sent, "member_id"].to_numpy(dtype=object)
    verdict = reachable(dataset, policy, at, list(members)).set_index(["member_id", "channel"])
    reason = verdict["reason"].reindex(list(zip(members, channel[sent], strict=True))).to_numpy(dtype=object)
    repeat = pd.Series(members).duplicated().to_numpy()
    reason = np.where(repeat & pd.isna(reason), SAME_DAY, reason)
    contacts = Contacts(
        member_id=members,
        action=rows.loc[sent, "action"].to_numpy(dtype=object),
        item_id=rows.loc[sent, "item_id"].to_numpy(dtype=object) if "item_id" in rows else np.full(len(members), None),
        week_count=_week_counts(dataset, members, at),
        consented=reason != CONSENT,
    )
    answered = world.answer(contacts, pd.Timestamp(at))
    costs = np.array(
        [policy.actions[a].cost + policy.channels[c].cost for a, c in zip(contacts.action, channel[sent], strict=True)]
    )
    frame = rows[[c for c in ("member_id", "action", "item_id", "holdout") if c in rows]].assign(
        channel=channel, gain=0.0, expected_gain=0.0, answered=False, unsubscribed=False, complained=False, breach=None
    )
    frame.loc[sent, "gain"] = answered["revenue"].to_numpy() - costs
    frame.loc[sent, "expected_gain"] = answered["expected_revenue"].to_numpy() - costs
    for flag in ("answered", "unsubscribed", "complained"):
        frame.loc[sent, flag] = answered[flag].to_numpy()
    frame.loc[sent, "breach"] = reason
    write_table(frame, out)
    by_action = frame[sent].groupby("action")["gain"].sum()
    breaches = frame.loc[sent, "breach"].dropna().value_counts()
    return SimulationSummary(
        dataset=dataset.name,
        plan=str(plan),
        at=at,
        horizon_days=HORIZON_DAYS,
        contacts=int(sent.sum()),
        held_out=int(rows["holdout"].sum()),
        gain=round(float(frame["gain"].sum()), 2),
        gain_by_action={str(a): round(float(g), 2) for a, g in by_action.items()},
        expected_gain=round(float(frame["expected_gain"].sum()), 2),
        answered=int(frame["answered"].sum()),
        unsubscribed=int(frame["unsubscribed"].sum()),
        complained=int(frame["complained"].sum()),
        breaches={str(k): int(v) for k, v in breaches.items()},
        out=str(out),
    )


def _channels(rows: pd.DataFrame, policy: OutreachPolicy, plan: Path) -> np.ndarray:
    """Each row's channel: the file's, else the action's first in the policy; a DataError naming an undeclared one."""
    first = rows["action"].map(lambda a: policy.actions[a].channels[0] if a in policy.actions else None)
    given = rows["channel"].astype("string").str.strip() if "channel" in rows else pd.Series(pd.NA, index=rows.index)
    channel = given.fillna(first.astype("string")).where(given.ne(""), first.astype("string"))
    bad = channel.notna() & ~channel.isin(list(policy.channels))
    if bad.any():
        row = bad.idxmax()
        raise DataError(f"{plan}: row {row}, field channel: {channel[row]!r} is no channel the policy declares")
    return channel.to_numpy(dtype=object)


def _week_counts(dataset: Dataset, members: np.ndarray, at: datetime) -> np.ndarray:
    """Each contact's number among its member's marketing contacts of the 7 days up to `at` (the contact log's,
    then the plan's own, in order)."""
    since = pd.Timestamp(at) - pd.Timedelta(days=7)
    log = (
        dataset.read("contacts", ["member_id", "ts"], filters=[("ts", ">=", since), ("ts", "<", pd.Timestamp(at))])
        if dataset.has("contacts")
        else pd.DataFrame({"member_id": []})
    )
    before = log["member_id"].astype(str).value_counts()
    earlier = pd.Series(before.reindex(members).fillna(0).to_numpy(), dtype=float)
    return (earlier + pd.Series(members).groupby(members).cumcount() + 1).to_numpy(dtype=np.int64)
