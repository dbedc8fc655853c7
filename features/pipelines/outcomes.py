"""Campaign outcomes: what each exposed member did in the window after exposure, built from the dataset's
tables like a label (every campaign report and uplift model reads them), and which members' windows the data
covers."""

from __future__ import annotations

import pandas as pd

from features.common.errors import DataError
from features.dataset.store import Dataset
from features.pipelines.snapshots import dataset_span

# What a campaign report and an uplift model can measure per member, in the window (ts, ts + H] after exposure.
OUTCOMES = {
    "conversion": "placed an order",
    "visit": "any engagement (a visit, a read, a click)",
    "spend": "net spend (sales less returns)",
    "retention": "still buying at the end: an order in the window's second half",
}


def member_outcomes(dataset: Dataset, exposed: pd.DataFrame, horizon_days: int, pre_days: int) -> pd.DataFrame:
    """Per exposed member: arm, ts, every outcome of OUTCOMES in (ts, ts + H], and the pre-period spend in
    [ts - pre_days, ts) (a covariate, CUPED's)."""
    horizon, pre = pd.Timedelta(days=horizon_days), pd.Timedelta(days=pre_days)
    lo, hi = exposed["ts"].min() - pre, exposed["ts"].max() + horizon
    members = set(exposed["member_id"].astype(str))
    window = [("ts", ">=", lo.to_pydatetime()), ("ts", "<=", hi.to_pydatetime())]
    orders = dataset.read("orders", ["member_id", "ts", "amount", "is_return"], filters=window)
    engagements = dataset.read("engagements", ["member_id", "ts"], filters=window)
    out = exposed[["member_id", "arm", "ts"]].astype({"member_id": str, "arm": str}).reset_index(drop=True)

    def joined(events: pd.DataFrame) -> pd.DataFrame:
        events = events[events["member_id"].isin(members)]
        both = events.merge(out[["member_id", "ts"]], on="member_id", suffixes=("", "_exposed"))
        both["after"] = both["ts"] - both["ts_exposed"]
        return both

    sales = joined(orders)
    is_sale = (sales["amount"] > 0) & ~sales["is_return"].fillna(False).astype(bool)
    in_window = (sales["after"] > pd.Timedelta(0)) & (sales["after"] <= horizon)
    before = (sales["after"] <= pd.Timedelta(0)) & (sales["after"] > -pre)
    late = in_window & (sales["after"] > horizon / 2)
    by = sales["member_id"]
    out["conversion"] = out["member_id"].isin(set(by[in_window & is_sale])).astype(float)
    out["retention"] = out["member_id"].isin(set(by[late & is_sale])).astype(float)
    out["spend"] = out["member_id"].map(sales[in_window].groupby("member_id")["amount"].sum()).fillna(0.0)
    out["pre_spend"] = out["member_id"].map(sales[before].groupby("member_id")["amount"].sum()).fillna(0.0)
    visits = joined(engagements)
    seen = (visits["after"] > pd.Timedelta(0)) & (visits["after"] <= horizon)
    out["visit"] = out["member_id"].isin(set(visits["member_id"][seen])).astype(float)
    return out


def measured_members(
    dataset: Dataset, outcomes: pd.DataFrame, campaign: str, horizon_days: int
) -> tuple[pd.DataFrame, bool]:
    """The members whose whole window the data covers (as for labels, the data must reach the window's last day:
    a window it does not reach would count members as not converting who may still do so), and True. Where it
    covers none but goes on after the campaign began (an imported campaign whose data stops at its last outcome),
    every member, and False: the caller says the windows are incomplete. With no event after the campaign began,
    nothing can be measured."""
    last = pd.Timestamp(dataset_span(dataset)[1])
    done = outcomes[outcomes["ts"] + pd.Timedelta(days=horizon_days - 1) <= last]
    if len(done):
        return done.reset_index(drop=True), True
    if last > outcomes["ts"].min():
        return outcomes.reset_index(drop=True), False
    raise DataError(
        f"campaign {campaign!r}: the data has no event after its first exposure ({outcomes['ts'].min()}); import "
        f"the members' later orders and engagements, or wait until the {horizon_days}-day window has passed"
    )
