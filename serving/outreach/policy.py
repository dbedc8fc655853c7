"""The contact policy (configs/outreach.yaml): the channels and the consent each needs, caps per member across
every list, quiet hours, cool-offs and the holdout; and who may be contacted on a day, by which channels, given
the contact log (features/dataset/contacts.py), the members' consent and their complaints.

Every rule is checked when the file is read: a channel naming no consent column, a negative cap, an hour past 23
stop with the file and field. `reachable` says, for every member and channel, whether a contact may go out and,
where not, the first reason (consent, cap, quiet hours, cool-off): what the day's plan may use, and what its summary
counts as left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.common.config import load_config
from features.dataset.contacts import OUTREACH_ACTIONS
from features.dataset.contract import CONSENT_CHANNELS
from features.dataset.store import Dataset

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "outreach.yaml"
CONSENTS = ("consent_marketing", *(f"consent_{c}" for c in CONSENT_CHANNELS))
LOG_COLUMNS = ("member_id", "ts", "action")  # what the rules read of the contact log
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

    def window_days(self) -> int:
        """How far back any rule looks: the longest cap or cool-off."""
        return max(
            [1, self.cool_offs.complaint_days, self.cool_offs.unanswered_offer_days, *(c.days for c in self.caps)]
        )

    @model_validator(mode="after")
    def _channels_declared(self) -> OutreachPolicy:
        if not self.channels:
            raise ValueError("declare at least one channel")
        for name, action in self.actions.items():
            if name not in OUTREACH_ACTIONS:
                raise ValueError(f"actions.{name}: no such action; the actions are {', '.join(OUTREACH_ACTIONS)}")
            for channel in action.channels:
                if channel not in self.channels:
                    raise ValueError(
                        f"actions.{name}.channels: {channel!r} is no declared channel ({', '.join(self.channels)})"
                    )
        return self


def load_policy(path: Path | None = None) -> OutreachPolicy:
    """configs/outreach.yaml (or `path`); a wrong key or value stops with the file and field named."""
    return load_config(OutreachPolicy, path or DEFAULT_CONFIG, {})


@dataclass(frozen=True)
class ContactLog:
    """The contacts the rules count, as arrays (a service slices one member's out per request)."""

    member_id: np.ndarray  # str
    ts: np.ndarray  # datetime64[ns]
    action: np.ndarray  # str, as the contact log stores it

    @classmethod
    def of(cls, frame: pd.DataFrame) -> ContactLog:
        """From a contact log table (member_id, ts, action, ...)."""
        return cls(
            frame["member_id"].astype(str).to_numpy(dtype=object),
            pd.to_datetime(frame["ts"]).to_numpy(dtype="datetime64[ns]"),
            frame["action"].astype(object).to_numpy(dtype=object),
        )

    def __len__(self) -> int:
        return len(self.member_id)


@dataclass(frozen=True)
class Standing:
    """What the rules read about members: their consents (True, False or NA per consent column), when each last
    complained (or disputed) and last ordered, and the contact log (member_id, ts, channel, action)."""

    consents: pd.DataFrame  # by member_id, a column per CONSENTS
    complaints: pd.Series  # member_id -> the last complaint's or dispute's time
    last_orders: pd.Series  # member_id -> the last order's time
    log: ContactLog

    @classmethod
    def of(
        cls,
        dataset: Dataset,
        policy: OutreachPolicy,
        since: datetime,
        until: datetime,
        contacts: pd.DataFrame | None = None,
    ) -> Standing:
        """From the dataset's tables: what the rules read for contacts sent from `since` to `until`, and no more
        (complaints, offers and orders within the policy's longest window before `since`; the members' consent
        columns alone): a service reads it at start, whatever the size of its history. `contacts`: another log
        to count instead of the dataset's; `until` None: everything stored."""
        window = [("ts", ">=", pd.Timestamp(since) - pd.Timedelta(days=policy.window_days()))]
        if until is not None:
            window.append(("ts", "<", pd.Timestamp(until)))
        feedback = dataset.read("feedback", ["member_id", "ts", "kind"], filters=window)
        complained = feedback[feedback["kind"].isin(["complaint", "dispute"])]
        orders = dataset.read("orders", ["member_id", "ts"], filters=window).dropna(subset=["member_id"])
        log = contacts if contacts is not None else dataset.read("contacts", list(LOG_COLUMNS), filters=window)
        return cls(
            _consents(dataset),
            complained.assign(member_id=complained["member_id"].astype(str)).groupby("member_id")["ts"].max(),
            orders.assign(member_id=orders["member_id"].astype(str)).groupby("member_id")["ts"].max(),
            ContactLog.of(log),
        )


@dataclass(frozen=True)
class Verdicts:
    """The policy's rules on members: per channel (rows, in the policy's order) and member (columns, in the order
    first asked), None where a contact may go out, else the first rule that forbids it."""

    members: pd.Index
    channels: list[str]
    reasons: np.ndarray  # object, channels x members

    def frame(self) -> pd.DataFrame:
        """A row per member and channel: member_id, channel, allowed, reason."""
        return pd.DataFrame(
            {
                "member_id": np.tile(self.members.to_numpy(dtype=object), len(self.channels)),
                "channel": np.repeat(np.array(self.channels, dtype=object), len(self.members)),
                "allowed": (self.reasons == None).ravel(),  # noqa: E711 (elementwise)
                "reason": self.reasons.ravel(),
            }
        )


def judged(
    dataset: Dataset, policy: OutreachPolicy, at: datetime, member_ids: list[str], contacts: pd.DataFrame | None = None
) -> Verdicts:
    """The policy's verdicts for a contact sent at `at`, from the dataset's tables. `contacts`: the contact log to
    count (default: the dataset's), so a plan can count the contacts it has planned already."""
    return verdicts(policy, at, member_ids, Standing.of(dataset, policy, at, at, contacts))


def reachable(
    dataset: Dataset, policy: OutreachPolicy, at: datetime, member_ids: list[str], contacts: pd.DataFrame | None = None
) -> pd.DataFrame:
    """For every member and channel: `allowed`, and `reason` (the first rule that forbids it, else None): `judged`
    as a table."""
    return judged(dataset, policy, at, member_ids, contacts).frame()


@dataclass(frozen=True)
class Facts:
    """What the rules read, aligned to the members asked about: a row of consents each (True, False or None per
    CONSENTS), the last complaint's and last order's time (NaT: none), and their contacts (`where`: the member's
    position, with the contact's time and action)."""

    consents: np.ndarray  # object, members x CONSENTS
    complained: np.ndarray  # datetime64[ns]
    ordered: np.ndarray  # datetime64[ns]
    where: np.ndarray  # int, a position per contact
    sent_at: np.ndarray  # datetime64[ns]
    actions: np.ndarray  # str


def verdicts(policy: OutreachPolicy, at: datetime, member_ids: list[str], standing: Standing) -> Verdicts:
    """The policy's rules on what `standing` says of the members (the day's plan asks it for every member; the
    service asks `rules` for one, from what it holds in memory)."""
    members = pd.Index(pd.unique(np.asarray(member_ids, dtype=object)), name="member_id")
    log = standing.log
    where = members.get_indexer(log.member_id) if len(log) else np.array([], dtype=np.int64)
    mine = where >= 0
    facts = Facts(
        standing.consents.reindex(members, columns=list(CONSENTS)).to_numpy(dtype=object, na_value=None),
        standing.complaints.reindex(members).to_numpy(dtype="datetime64[ns]"),
        standing.last_orders.reindex(members).to_numpy(dtype="datetime64[ns]"),
        where[mine],
        log.ts[mine],
        log.action[mine],
    )
    return Verdicts(members, list(policy.channels), rules(policy, at, facts))


def rules(policy: OutreachPolicy, at: datetime, facts: Facts) -> np.ndarray:
    """Per channel (rows, in the policy's order) and member (columns, as in `facts`): None where a contact may go
    out at `at`, else the first rule that forbids it. Plain numpy: for one member pandas' per-call cost would be
    most of it."""
    count = len(facts.consents)
    now = np.datetime64(pd.Timestamp(at).to_datetime64(), "ns")
    before = facts.sent_at < now
    where, sent_at, actions = facts.where[before], facts.sent_at[before], facts.actions[before]
    capped = np.zeros(count, dtype=bool)
    for cap in policy.caps:
        since = np.datetime64(datetime.combine(at.date() - timedelta(days=cap.days - 1), datetime.min.time()), "ns")
        capped |= np.bincount(where[sent_at >= since], minlength=count) >= cap.at_most
    blocked = _cooled_off(policy, now, facts, where, sent_at, actions)
    consent = facts.consents
    marketing = consent[:, CONSENTS.index("consent_marketing")] == True  # noqa: E712 (elementwise; None: no)
    quiet = policy.quiet_hours.holds(at.hour)
    reasons = np.full((len(policy.channels), count), None, dtype=object)
    for row, channel in enumerate(policy.channels.values()):
        # A channel's own consent where recorded; else consent_marketing speaks for it.
        own = consent[:, CONSENTS.index(channel.consent)]
        agreed = np.where(own == None, marketing, own == True)  # noqa: E711, E712
        reason = reasons[row]
        reason[~agreed] = CONSENT
        reason[(reason == None) & blocked] = COOL_OFF  # noqa: E711 (elementwise)
        reason[(reason == None) & capped] = CAP  # noqa: E711
        if quiet:
            reason[reason == None] = QUIET_HOURS  # noqa: E711
    return reasons


def _consents(dataset: Dataset) -> pd.DataFrame:
    """Every consent column per member: True, False or NA (not recorded); the members table's consent columns
    alone are read."""
    held = [c for c in CONSENTS if c in dataset.columns("members")]
    stored = (
        dataset.read("members", ["member_id", *held]) if dataset.has("members") else pd.DataFrame({"member_id": []})
    )
    stored = stored.assign(member_id=stored["member_id"].astype(str)).drop_duplicates("member_id", keep="last")
    stored = stored.set_index("member_id")
    return pd.DataFrame(
        {c: (stored[c] if c in stored else pd.Series(None, index=stored.index)).astype("boolean") for c in CONSENTS},
        index=stored.index,
    )


def _cooled_off(
    policy: OutreachPolicy,
    now: np.datetime64,
    facts: Facts,
    where: np.ndarray,
    sent_at: np.ndarray,
    actions: np.ndarray,
) -> np.ndarray:
    """Members in a cool-off: a complaint or dispute within `complaint_days`, or an offer within
    `unanswered_offer_days` with no order since it. (`where`, `sent_at`, `actions`: their contacts before now.)"""
    blocked = np.zeros(len(facts.consents), dtype=bool)
    if policy.cool_offs.complaint_days:
        blocked |= facts.complained >= now - np.timedelta64(policy.cool_offs.complaint_days, "D")
    if policy.cool_offs.unanswered_offer_days:
        recent = (actions == "offer") & (sent_at >= now - np.timedelta64(policy.cool_offs.unanswered_offer_days, "D"))
        offered = np.full(len(blocked), np.iinfo(np.int64).min, dtype=np.int64)  # NaT's integer
        np.maximum.at(offered, where[recent], sent_at[recent].astype(np.int64))  # each member's latest offer
        offered_at = offered.view("datetime64[ns]")
        blocked |= ~np.isnat(offered_at) & ~(facts.ordered > offered_at)
    return blocked
