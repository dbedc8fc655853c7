"""The contact policy (configs/outreach.yaml): the channels and the consent each needs, caps per member across
every list, quiet hours, cool-offs and the holdout; and who may be contacted on a day, by which channels, given
the contact log (features/dataset/contacts.py), the members' consent and their complaints.

Every rule is checked when the file is read: a channel naming no consent column, a negative cap, an hour past 23
stop with the file and field. `reachable` says, for every member and channel, whether a contact may go out and,
where not, the first reason (consent, cap, quiet hours, cool-off): what the day's plan may use, and what its summary
counts as left out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.common.config import load_config
from features.dataset.contract import CONSENT_CHANNELS
from features.dataset.store import Dataset

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "outreach.yaml"
CONSENTS = ("consent_marketing", *(f"consent_{c}" for c in CONSENT_CHANNELS))
# Why a member is not contacted by a channel, in the order they are checked (the first that applies is named).
CONSENT, COOL_OFF, CAP, QUIET_HOURS = "consent", "cool-off", "cap", "quiet hours"


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consent: str = Field(description="the members column that must be true (empty: consent_marketing speaks)")
    cost: float = Field(0.0, ge=0, description="what one contact costs, in the orders' currency")

    @field_validator("consent")
    @classmethod
    def _known_consent(cls, value: str) -> str:
        if value not in CONSENTS:
            raise ValueError(f"{value!r} is no consent column; choose among {', '.join(CONSENTS)}")
        return value


class Cap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(ge=1, description="the window, in days ending with the day planned")
    at_most: int = Field(ge=0, description="marketing contacts per member in the window, every list and channel")


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: int = Field(21, ge=0, le=23, alias="from", description="no contact from this hour ...")
    end: int = Field(9, ge=0, le=23, alias="to", description="... until this hour (the next day's, where before)")

    def holds(self, hour: int) -> bool:
        """Whether a contact at `hour` falls in the quiet hours."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


class CoolOffs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    complaint_days: int = Field(30, ge=0, description="no marketing for this many days after a complaint or dispute")
    unanswered_offer_days: int = Field(
        14, ge=0, description="no marketing for this many days after an offer the member did not take (no order since)"
    )


ACTION_NAMES = ("offer", "product-push", "content-push")  # what outreach can do besides nothing


class ActionSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cost: float = Field(0.0, ge=0, description="what the action itself costs (an offer's incentive), per contact")
    channels: list[str] = Field(min_length=1, description="the channels it goes by, preferred first")


class OutreachPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: dict[str, Channel]
    actions: dict[str, ActionSetting] = {}
    caps: list[Cap] = []
    quiet_hours: QuietHours = QuietHours()
    cool_offs: CoolOffs = CoolOffs()
    holdout: float = Field(0.05, ge=0, lt=1, description="share of members kept uncontacted, for measurement")

    @model_validator(mode="after")
    def _channels_declared(self) -> OutreachPolicy:
        if not self.channels:
            raise ValueError("declare at least one channel")
        for name, action in self.actions.items():
            if name not in ACTION_NAMES:
                raise ValueError(f"actions.{name}: no such action; the actions are {', '.join(ACTION_NAMES)}")
            for channel in action.channels:
                if channel not in self.channels:
                    raise ValueError(
                        f"actions.{name}.channels: {channel!r} is no declared channel ({', '.join(self.channels)})"
                    )
        return self


def load_policy(path: Path | None = None) -> OutreachPolicy:
    """configs/outreach.yaml (or `path`); a wrong key or value stops with the file and field named."""
    return load_config(OutreachPolicy, path or DEFAULT_CONFIG, {})


def reachable(
    dataset: Dataset, policy: OutreachPolicy, at: datetime, member_ids: list[str], contacts: pd.DataFrame | None = None
) -> pd.DataFrame:
    """For every member and channel: `allowed`, and `reason` (the first rule that forbids it, else None), for a
    contact sent at `at`. `contacts`: the contact log to count (default: the dataset's), so a plan can count the
    contacts it has planned already."""
    members = pd.Index(pd.unique(np.asarray(member_ids, dtype=object)), name="member_id")
    log = contacts if contacts is not None else _log(dataset)
    log = log.assign(member_id=log["member_id"].astype(str), ts=pd.to_datetime(log["ts"]))
    log = log[log["ts"] < pd.Timestamp(at)]
    consent = _consents(dataset, members)
    blocked = _cooled_off(dataset, policy, at, members, log)
    capped = pd.Series(False, index=members)
    for cap in policy.caps:
        since = pd.Timestamp(datetime.combine(at.date() - timedelta(days=cap.days - 1), datetime.min.time()))
        sent = log[log["ts"] >= since].groupby("member_id").size().reindex(members, fill_value=0)
        capped |= sent >= cap.at_most
    quiet = policy.quiet_hours.holds(at.hour)
    rows = []
    for name, channel in policy.channels.items():
        agreed = consent[channel.consent].fillna(consent["consent_marketing"]).fillna(False).astype(bool)
        reason = pd.Series(None, index=members, dtype=object)
        reason[~agreed.to_numpy()] = CONSENT
        reason[reason.isna() & blocked] = COOL_OFF
        reason[reason.isna() & capped] = CAP
        if quiet:
            reason[reason.isna()] = QUIET_HOURS
        rows.append(pd.DataFrame({"member_id": members, "channel": name, "reason": reason.to_numpy()}))
    out = pd.concat(rows, ignore_index=True)
    out["allowed"] = out["reason"].isna()
    return out[["member_id", "channel", "allowed", "reason"]]


def _log(dataset: Dataset) -> pd.DataFrame:
    return dataset.read("contacts", ["member_id", "ts", "channel", "action"])


def _consents(dataset: Dataset, members: pd.Index) -> pd.DataFrame:
    """Every consent column per member: True, False or NA (not recorded)."""
    stored = dataset.read("members") if dataset.has("members") else pd.DataFrame({"member_id": []})
    stored = stored.assign(member_id=stored["member_id"].astype(str)).drop_duplicates("member_id", keep="last")
    stored = stored.set_index("member_id")
    return pd.DataFrame(
        {
            c: (stored[c] if c in stored else pd.Series(dtype="boolean")).astype("boolean").reindex(members)
            for c in CONSENTS
        }
    )


def _cooled_off(
    dataset: Dataset, policy: OutreachPolicy, at: datetime, members: pd.Index, log: pd.DataFrame
) -> pd.Series:
    """Members in a cool-off: a complaint or dispute within `complaint_days`, or an offer within
    `unanswered_offer_days` with no order since it."""
    blocked = pd.Series(False, index=members)
    now = pd.Timestamp(at)
    if dataset.has("feedback") and policy.cool_offs.complaint_days:
        feedback = dataset.read("feedback", ["member_id", "ts", "kind"])
        since = now - pd.Timedelta(days=policy.cool_offs.complaint_days)
        recent = feedback[
            feedback["kind"].isin(["complaint", "dispute"]) & (feedback["ts"] >= since) & (feedback["ts"] < now)
        ]
        blocked |= members.isin(set(recent["member_id"].astype(str)))
    if policy.cool_offs.unanswered_offer_days:
        since = now - pd.Timedelta(days=policy.cool_offs.unanswered_offer_days)
        offers = log[(log["action"] == "offer") & (log["ts"] >= since)].groupby("member_id")["ts"].max()
        if len(offers):
            orders = dataset.read("orders", ["member_id", "ts"]) if dataset.has("orders") else pd.DataFrame()
            last_order = orders[orders["ts"] < now].groupby("member_id")["ts"].max() if len(orders) else pd.Series()
            answered = last_order.reindex(offers.index) > offers
            blocked |= members.isin(set(offers.index[~answered.fillna(False).astype(bool)].astype(str)))
    return blocked
