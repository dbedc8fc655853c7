"""The feature benchmark's baseline: the same point-in-time features written as straightforward pandas groupbys.

Not used by the product; `bench_features.py` times it beside the DuckDB/Ibis build and checks that both give
the same values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.dataset.contract import CONTENT_TYPES
from features.pipelines.schema import CONTENT_ACTIONS, WINDOWS


def _by_member(values: pd.Series, member: pd.Series, how: str) -> pd.Series:
    return getattr(values.groupby(member), how)()


def order_features(orders: pd.DataFrame, products: pd.DataFrame | None, as_of: pd.Timestamp) -> pd.DataFrame:
    o = orders[(orders["ts"] < as_of) & orders["member_id"].notna()].copy()
    if products is not None and "category" in products:
        o = o.merge(products[["product_id", "category"]], on="product_id", how="left")
    o["days_ago"] = (as_of - o["ts"]).dt.total_seconds() / 86_400
    o["sale"] = ~o["is_return"].fillna(False).astype(bool)
    o["visit"] = o["order_id"].fillna(o["ts"].astype(str))
    sales = o[o["sale"]]
    member = o["member_id"]
    out = pd.DataFrame(index=pd.Index(member.unique(), name="member_id"))
    out["recency_days"] = sales.groupby("member_id")["days_ago"].min()
    out["frequency"] = sales.groupby("member_id")["visit"].nunique()
    out["monetary"] = o.groupby("member_id")["amount"].sum()
    out["sales_value"] = sales.groupby("member_id")["amount"].sum()
    out["returned_value"] = -o[~o["sale"]].groupby("member_id")["amount"].sum()
    out["order_lines"] = sales.groupby("member_id").size()
    out["distinct_products"] = sales.groupby("member_id")["product_id"].nunique()
    if "category" in o:
        out["distinct_categories"] = sales.groupby("member_id")["category"].nunique()
    for w in WINDOWS:
        recent = o[o["days_ago"] <= w]
        out[f"orders_{w}d"] = recent[recent["sale"]].groupby("member_id")["visit"].nunique()
        out[f"spend_{w}d"] = recent.groupby("member_id")["amount"].sum()
    for w in (30, 90):
        earlier = o[(o["days_ago"] > w) & (o["days_ago"] <= 2 * w)]
        out[f"orders_prev_{w}d"] = earlier[earlier["sale"]].groupby("member_id")["visit"].nunique()
        out[f"spend_prev_{w}d"] = earlier.groupby("member_id")["amount"].sum()
    zero = [c for c in out.columns if c not in ("recency_days",)]
    out[zero] = out[zero].fillna(0)
    for w in (30, 90):
        out[f"orders_trend_{w}d"] = (out[f"orders_{w}d"] + 1) / (out[f"orders_prev_{w}d"] + 1)
        out[f"spend_trend_{w}d"] = (out[f"spend_{w}d"].clip(lower=0) + 1) / (out[f"spend_prev_{w}d"].clip(lower=0) + 1)
    out["avg_basket"] = out["sales_value"] / out["frequency"].replace(0, np.nan)
    out["returns_share"] = out["returned_value"] / out["sales_value"].replace(0, np.nan)
    if sales["channel"].notna().any():
        with_channel = sales.dropna(subset=["channel"])
        per_channel = with_channel.groupby(["member_id", "channel"])["visit"].nunique().rename("orders").reset_index()
        # the main channel: most orders, ties to the first channel by name
        main = per_channel.sort_values(["member_id", "orders", "channel"], ascending=[True, False, True])
        main = main.drop_duplicates("member_id").set_index("member_id")
        out["channel_count"] = per_channel.groupby("member_id").size().reindex(out.index).fillna(0)
        out["channel_main_share"] = main["orders"] / with_channel.groupby("member_id")["visit"].nunique()
    visits = sales.groupby(["member_id", "visit"])["ts"].min().reset_index().sort_values(["member_id", "ts", "visit"])
    visits["gap"] = visits.groupby("member_id")["ts"].diff().dt.total_seconds() / 86_400
    gaps = visits.dropna(subset=["gap"]).groupby("member_id")["gap"]
    out["gap_mean_days"] = gaps.mean()
    out["gap_std_days"] = gaps.std()
    out["days_since_last_vs_usual_gap"] = out["recency_days"] / out["gap_mean_days"].clip(lower=1)
    out["first_order_days_ago"] = sales.groupby("member_id")["days_ago"].max()
    return out


def engagement_features(engagements: pd.DataFrame, contents: pd.DataFrame | None, as_of: pd.Timestamp) -> pd.DataFrame:
    e = engagements[engagements["ts"] < as_of].copy()
    has_types = contents is not None and "content_type" in contents
    if has_types:
        e = e.merge(contents[["content_id", "content_type"]], on="content_id", how="left")
    e["days_ago"] = (as_of - e["ts"]).dt.total_seconds() / 86_400
    g = e.groupby("member_id")
    out = pd.DataFrame({"eng_total": g.size()})
    counts = pd.crosstab(e["member_id"], e["action"])
    for action, name in (
        ("view", "eng_views"),
        ("message", "eng_messages"),
        ("checkin", "eng_checkins"),
        ("event_attend", "eng_events_attended"),
        ("join_group", "groups_joined"),
        ("leave_group", "groups_left"),
        *((a, f"eng_{a}s") for a in CONTENT_ACTIONS),
    ):
        out[name] = counts.get(action, 0)
    if has_types:
        by_type = e.groupby(["member_id", "action", "content_type"]).size().unstack([1, 2])
        for action in CONTENT_ACTIONS:
            for ctype in CONTENT_TYPES:
                out[f"eng_{action}s_{ctype}"] = by_type.get((action, ctype), 0)
    out["days_since_last_engagement"] = g["days_ago"].min()
    out["first_engagement_days_ago"] = g["days_ago"].max()
    recent = e[e["days_ago"] <= 30]
    out["eng_active_days_30d"] = recent.groupby("member_id")["ts"].apply(lambda s: s.dt.date.nunique())
    for w in (30, 90):
        out[f"eng_{w}d"] = e[e["days_ago"] <= w].groupby("member_id").size()
        out[f"eng_prev_{w}d"] = e[(e["days_ago"] > w) & (e["days_ago"] <= 2 * w)].groupby("member_id").size()
    counts_cols = [c for c in out.columns if c not in ("days_since_last_engagement", "first_engagement_days_ago")]
    out[counts_cols] = out[counts_cols].fillna(0)
    for w in (30, 90):
        out[f"eng_trend_{w}d"] = (out[f"eng_{w}d"] + 1) / (out[f"eng_prev_{w}d"] + 1)
    return out


def snapshot(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    orders = tables["orders"]
    known = set(orders.loc[(orders["ts"] < as_of) & orders["member_id"].notna(), "member_id"])
    out_parts = [order_features(orders, tables.get("products"), as_of)]
    if "engagements" in tables:
        e = tables["engagements"]
        known |= set(e.loc[e["ts"] < as_of, "member_id"])
        out_parts.append(engagement_features(e, tables.get("contents"), as_of))
    if "members" in tables:
        m = tables["members"]
        known |= set(m.loc[m["joined_at"] < as_of, "member_id"])
    out = pd.DataFrame(index=pd.Index(sorted(known), name="member_id"))
    for part in out_parts:
        out = out.join(part)
    # Members without orders or engagements have zero counts; ratios, gaps and recencies stay empty.
    keep_empty = ("recency", "avg_basket", "gap_", "days_since", "trend", "first_")
    zero = [c for c in out.columns if not any(k in c for k in keep_empty) and not c.endswith("_share")]
    out[zero] = out[zero].fillna(0)
    seen = [out["first_order_days_ago"]]
    if "first_engagement_days_ago" in out:
        seen.append(out["first_engagement_days_ago"])
    if "members" in tables:
        m = tables["members"].set_index("member_id")
        seen.append(((as_of - m["joined_at"]).dt.total_seconds() / 86_400).reindex(out.index))
    out["tenure_days"] = pd.concat(seen, axis=1).fillna(0).max(axis=1)
    return out.drop(columns=[c for c in ("first_engagement_days_ago",) if c in out])
