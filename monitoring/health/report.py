"""The community's health as of a date: every indicator of configs/health.yaml for the whole community and, with
`by`, for each group, group type, persona, city, age band, tier, segment or tag (members split), or each channel
or content type (events split); its change on the window before, its status against the target in force that
day (milestones step from the community's start) and where the target comes from; segments ranked by how far
they fall short; the watched floors crossed; cohort curves and each campaign's ROI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from features.common.errors import DataError
from features.dataset.store import Dataset
from monitoring.health.campaign_roi import CampaignRoi, campaign_rois
from monitoring.health.campaign_roi import as_json as rois_json
from monitoring.health.cohorts import CohortCurves, TierMoves, cohort_curves
from monitoring.health.indicators import Better, HealthSettings, Indicator
from monitoring.health.measures import (
    EVENT_SPLITS,
    EventSplit,
    Scope,
    all_spend,
    available_tables,
    first_event,
    group_memberships,
    group_type_memberships,
    member_measures,
    order_channels,
    split_values,
)

COMMUNITY = "community"


class SegmentBy(StrEnum):
    group = "group"
    group_type = "group_type"  # promotion / service / interest / membership: the plan's four kinds of group
    channel = "channel"  # orders' channel: the order indicators only
    content_type = "content_type"  # the content indicators only
    persona = "persona"
    city = "city"
    age_band = "age_band"
    tier = "tier"
    segment = "segment"  # the profile's segments (configs/segments.yaml): a member may be in several
    tag = "tag"  # the operators' tags (configs/tags.yaml)


@dataclass(frozen=True)
class IndicatorValue:
    indicator: str
    dimension: str
    area: str
    segment: str
    members: int
    value: float | None
    previous: float | None
    target: float | None  # the target in force on the report's date
    better: str
    status: str  # met, short of target, no target, no target yet (...), no data: ...
    unit: str
    proxy: bool
    source: str | None = None  # where the target comes from: "plan: SECTION" or "ours: WHY"
    next_target: str | None = None  # the next milestone still to come: "0.5 due 2026-04-01"

    @property
    def change(self) -> float | None:
        return None if self.value is None or self.previous is None else self.value - self.previous


@dataclass(frozen=True)
class SegmentRank:
    segment: str
    members: int
    shortfall: float  # mean relative shortfall over the indicators with a target and data
    worst: str  # the indicator furthest from its target


@dataclass
class HealthReport:
    dataset: str
    as_of: date
    by: str | None
    values: list[IndicatorValue]
    start: date | None = None  # the community's start, from which milestones count
    start_source: str = ""
    ranking: list[SegmentRank] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)  # segments shown but not ranked
    watch_breaches: list[str] = field(default_factory=list)
    cohorts: CohortCurves | None = None
    campaigns: list[CampaignRoi] = field(default_factory=list)
    tier_moves: TierMoves | None = None

    def community(self) -> list[IndicatorValue]:
        return [v for v in self.values if v.segment == COMMUNITY]

    def value(self, indicator: str, segment: str = COMMUNITY) -> IndicatorValue:
        return next(v for v in self.values if v.indicator == indicator and v.segment == segment)

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "as_of": str(self.as_of),
            "by": self.by,
            "community_start": None if self.start is None else str(self.start),
            "community_start_source": self.start_source,
            "indicators": [{**asdict(v), "change": v.change} for v in self.values],
            "ranking": [asdict(r) for r in self.ranking],
            "not_ranked": self.too_small,
            "watch_breaches": self.watch_breaches,
            "cohorts": [] if self.cohorts is None else self.cohorts.as_json(),
            "campaigns": rois_json(self.campaigns),
            "tier_moves": None if self.tier_moves is None else self.tier_moves.as_json(),
        }


def compute_health(
    dataset: Dataset,
    as_of: date,
    settings: HealthSettings,
    by: SegmentBy | None = None,
    segments: pd.DataFrame | None = None,
    tier_moves: TierMoves | None = None,
) -> HealthReport:
    """Every indicator as of `as_of`. `segments` (member_id, segment) overrides how members are split (tiers
    come from the caller, which holds the champions, and so do their moves)."""
    tables = available_tables(dataset, settings.community_channels)
    if not tables & {"orders", "members"}:
        raise DataError(f"{dataset.name}: no members and no orders imported: there is no community to measure")
    start, start_source = community_start(dataset, settings)
    # before the windows' measures are held: at 500,000 members the campaigns' outcomes take ~1 GB of their own
    cohorts = cohort_curves(dataset, as_of, start) if "orders" in tables else None
    campaigns = campaign_rois(dataset, as_of, settings) if {"exposures", "orders"} <= tables else []
    windows = sorted({i.window for i in settings.indicators})
    costs = tuple((campaign, c.cost_per_push) for campaign, c in settings.campaigns.items())
    scope = Scope(frozenset(tables), settings.community_channels, None, None, costs, settings.cost_per_push)
    # each window computes only the measures its indicators read
    used = {w: frozenset(m for i in settings.indicators if i.window == w for m in i.measures) for w in windows}
    now = {w: _window(dataset, as_of, w, settings, tables, scope, used[w]) for w in windows}
    before = {w: _window(dataset, as_of - timedelta(days=w), w, settings, tables, scope, used[w]) for w in windows}
    split, event_split = None, None
    if by is not None and by.value in EVENT_SPLITS:
        event_split = EVENT_SPLITS[by.value]
        if lacking := [n for n in event_split.needs if n not in tables]:
            raise DataError(f"{dataset.name}: no data to split by {by.value}: import {_needs_text(lacking)}")
    elif by is not None:
        split = segments if segments is not None else member_segments(dataset, as_of, by, tables)
    events = None if event_split is None else _EventRows(dataset, settings, tables, scope, event_split)
    # summed per segment once per window: at 500,000 members each join and sum takes about a second
    totals_now = {w: _aggregate(frame, split) for w, frame in now.items()}
    totals_before = {w: _aggregate(frame, split) for w, frame in before.items()}
    values: list[IndicatorValue] = []
    for indicator in settings.indicators:
        missing = [t for t in indicator.needs if t not in tables]
        current, previous = totals_now[indicator.window], totals_before[indicator.window]
        if events is not None and set(indicator.measures) <= events.split.measures and not missing:
            then = as_of - timedelta(days=indicator.window)
            current = pd.concat([current, events.rows(as_of, indicator.window)])
            previous = pd.concat([previous, events.rows(then, indicator.window)])
        baseline = None
        if indicator.since_start and not missing:
            baseline = _baseline(dataset, start, as_of, indicator, settings, tables, scope, split)
        values += _indicator_values(
            indicator, current, previous, settings, missing, as_of, start, baseline, dataset, event_split is None
        )
    report = HealthReport(dataset.name, as_of, None if by is None else by.value, values, start, start_source)
    if split is not None:  # a channel or a content type is not a group of members to hold to the targets
        report.ranking, report.too_small = _rank(values, settings)
    report.watch_breaches = [
        f"{v.indicator} {shown(v.value)} {'below' if v.better == Better.higher else 'above'} its floor "
        f"{shown(i.watch)} ({v.segment})"
        for i in settings.indicators
        for v in values
        if v.segment == COMMUNITY and v.indicator == i.name and v.value is not None and i.crosses_floor(v.value)
    ]
    report.cohorts, report.campaigns, report.tier_moves = cohorts, campaigns, tier_moves
    return report


def community_start(dataset: Dataset, settings: HealthSettings) -> tuple[date, str]:
    """The day milestones count from: declared in configs/health.yaml `community_start`, else the dataset's first
    order or engagement."""
    if dataset.name in settings.community_start:
        return settings.community_start[dataset.name], "configs/health.yaml community_start"
    firsts = [first_event(dataset, t) for t in ("orders", "engagements") if dataset.has(t)]
    firsts = [f for f in firsts if f is not None]
    if firsts:
        return min(firsts).date(), "its first order or engagement (declare community_start in configs/health.yaml)"
    joined = dataset.read("members", ["joined_at"])["joined_at"].min() if dataset.has("members") else None
    if joined is None or pd.isna(joined):
        raise DataError(
            f"{dataset.name}: no order, engagement or join date: declare community_start in configs/health.yaml"
        )
    return pd.Timestamp(joined).date(), "its first member's join (declare community_start in configs/health.yaml)"


def _window(
    dataset: Dataset,
    end: date,
    days: int,
    settings: HealthSettings,
    tables: set[str],
    scope: Scope,
    only: frozenset[str] | None = None,
) -> pd.DataFrame:
    frame = member_measures(dataset, end, days, settings.high_value_monthly_spend, tables, scope, only)
    frame.attrs["all_spend"] = all_spend(dataset, end, days) if "orders" in tables else math.nan
    return frame


@dataclass
class _EventRows:
    """Each value of an event split (a channel, a content type), its measures summed over a window: a row per
    value, named after it, computed once per window."""

    dataset: Dataset
    settings: HealthSettings
    tables: set[str]
    scope: Scope
    split: EventSplit
    done: dict[tuple[date, int], pd.DataFrame] = field(default_factory=dict)

    def rows(self, end: date, days: int) -> pd.DataFrame:
        if (end, days) not in self.done:
            values = split_values(self.dataset, self.split)
            self.done[(end, days)] = pd.concat([self._row(end, days, value) for value in values])
        return self.done[(end, days)]

    def _row(self, end: date, days: int, value: str) -> pd.DataFrame:
        scope = replace(self.scope, split=self.split, value=value)
        spend = self.settings.high_value_monthly_spend
        frame = member_measures(self.dataset, end, days, spend, self.tables, scope, self.split.measures)
        return frame[[c for c in frame.columns if c in self.split.measures]].sum().to_frame(value).T


def _baseline(
    dataset: Dataset,
    start: date,
    as_of: date,
    indicator: Indicator,
    settings: HealthSettings,
    tables: set[str],
    scope: Scope,
    split: pd.DataFrame | None,
) -> pd.DataFrame | None:
    """The measures of the indicator's first window after the community's start; None while that window and the
    one measured overlap (a change against itself)."""
    first_end = start + timedelta(days=indicator.window)
    if as_of - timedelta(days=indicator.window) < first_end:
        return None
    only = frozenset(indicator.measures)
    return _aggregate(_window(dataset, first_end, indicator.window, settings, tables, scope, only), split)


def _needs_text(needs: list[str]) -> str:
    """`engagements`, `orders` with `channel`: a virtual need (table.column) said as the column to bring."""
    parts = []
    for need in needs:
        table, _, column = need.partition(".")
        parts.append(f"`{table}` with `{column}`" if column else f"`{table}`")
    return ", ".join(parts)


def member_segments(dataset: Dataset, as_of: date, by: SegmentBy, tables: set[str]) -> pd.DataFrame:
    """(member_id, segment) for a split the tables can make; a clear error when they cannot."""
    if by is SegmentBy.group:
        if "engagements" not in tables:
            raise DataError(f"{dataset.name}: no data to split by group: import `engagements` (with group_id)")
        return group_memberships(dataset, as_of)
    if by is SegmentBy.group_type:
        if not {"engagements", "groups"} <= tables:
            raise DataError(
                f"{dataset.name}: no data to split by group type: import `engagements` (with group_id) and "
                "`groups` (with group_type)"
            )
        return group_type_memberships(dataset, as_of)
    if by in (SegmentBy.tier, SegmentBy.segment, SegmentBy.tag):
        raise DataError(f"{by.value}s come from the models and the profile: use `community-ml health --by {by.value}`")
    if "members" not in tables:
        raise DataError(f"{dataset.name}: no data to split by {by.value}: import `members` (with {by.value})")
    members = dataset.read("members", ["member_id", by.value])
    if members[by.value].isna().all():
        raise DataError(f"{dataset.name}: no data to split by {by.value}: the members table has no {by.value}")
    return pd.DataFrame(
        {"member_id": members["member_id"].astype(str), "segment": members[by.value].astype(str).fillna("unknown")}
    )


def _aggregate(measures: pd.DataFrame, split: pd.DataFrame | None) -> pd.DataFrame:
    """Measures summed per segment; the community's row first. The window's spend of every order (guests'
    included) rides along in `attrs`."""
    community = measures.sum().to_frame(COMMUNITY).T
    if split is not None:
        joined = measures.join(split.set_index("member_id")["segment"], how="inner")
        community = pd.concat([community, joined.groupby("segment").sum()])
    community.attrs["all_spend"] = measures.attrs.get("all_spend", math.nan)
    return community


def _indicator_values(
    indicator: Indicator,
    current: pd.DataFrame,
    previous: pd.DataFrame,
    settings: HealthSettings,
    missing: list[str],
    as_of: date,
    start: date,
    baseline: pd.DataFrame | None,
    dataset: Dataset,
    segments_held: bool = True,
) -> list[IndicatorValue]:
    now = _evaluate(indicator, current, settings)
    then = _evaluate(indicator, previous, settings)
    lacking = ""
    if indicator.since_start:
        if baseline is None and not missing:
            first_end = start + timedelta(days=indicator.window)
            lacking = (
                f"no data: the first {indicator.window} days after the start ({start}) are the baseline; "
                f"measured from {first_end + timedelta(days=indicator.window)}"
            )
        else:
            base = {} if baseline is None else _evaluate(indicator, baseline, settings)
            now = {k: v / base[k] - 1 for k, v in now.items() if base.get(k)}
            then = {k: v / base[k] - 1 for k, v in then.items() if base.get(k)}
    in_force = indicator.target_on(as_of, start)
    upcoming = None
    if in_force.next_due is not None:
        upcoming = f"{shown(in_force.next_due[1])} due {in_force.next_due[0]}"
    out = []
    for segment in current.index:
        value = None if missing or lacking else now.get(segment)
        held = segment == COMMUNITY or (segments_held and not indicator.community_target)
        target = in_force.value if held else None
        if missing:
            status = "no data: import " + _needs_text(missing) + _channel_hint(missing, settings, dataset)
        elif lacking:
            status = lacking
        elif value is None:
            status = "no data: none in the window"
        elif target is None and upcoming and held:
            status = f"no target yet ({upcoming})"
        elif target is None:
            status = "no target"
        else:
            status = "met" if indicator.short_of(value, target) == 0 else "short of target"
        out.append(
            IndicatorValue(
                indicator=indicator.name,
                dimension=indicator.dimension.value,
                area=indicator.area,
                segment=str(segment),
                members=int(current.loc[segment, "members"]) if "members" in current else 0,
                value=value,
                previous=None if missing or lacking else then.get(segment),
                target=target,
                better=indicator.better.value,
                status=status,
                unit=indicator.unit,
                proxy=indicator.proxy,
                source=None if indicator.source is None else str(indicator.source),
                next_target=upcoming,
            )
        )
    return out


def _channel_hint(missing: list[str], settings: HealthSettings, dataset: Dataset) -> str:
    """Why no order is on a community channel: the channels the orders do have."""
    if "orders.community_channel" not in missing or "orders.channel" in missing:
        return ""
    seen = order_channels(dataset)
    return (
        f" on a community channel ({', '.join(settings.community_channels)}; configs/health.yaml "
        f"community_channels); the orders' channels: {', '.join(seen) or 'none'}"
    )


def _evaluate(indicator: Indicator, frame: pd.DataFrame, settings: HealthSettings) -> dict[str, float]:
    """The formula per segment; a segment where it has no finite value (nothing to divide by) is left out."""
    if any(m not in frame for m in indicator.measures):
        return {}
    community = frame.loc[COMMUNITY]
    local = {
        "days": float(indicator.window),
        "margin": settings.margin,
        "community_members": float(community["members"]),
        "community_spend": float(community["spend"]) if "spend" in frame else math.nan,
        "all_spend": float(frame.attrs.get("all_spend", math.nan)),
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        result = pd.Series(frame.eval(indicator.formula, local_dict=local), index=frame.index, dtype=float)
    return {str(k): float(v) for k, v in result.items() if np.isfinite(v)}


def _rank(values: list[IndicatorValue], settings: HealthSettings) -> tuple[list[SegmentRank], list[str]]:
    """Segments by their mean relative shortfall from the targets, worst first; small segments apart."""
    by_name = {i.name: i for i in settings.indicators}
    segments: dict[str, list[IndicatorValue]] = {}
    for v in values:
        if v.segment != COMMUNITY:
            segments.setdefault(v.segment, []).append(v)
    ranking, too_small = [], []
    for segment, rows in segments.items():
        members = rows[0].members
        if members < settings.min_segment_members:
            too_small.append(segment)
            continue
        gaps = {
            v.indicator: by_name[v.indicator].short_of(v.value, v.target)
            for v in rows
            if v.value is not None and v.target is not None
        }
        if not gaps:
            continue
        worst = max(gaps, key=lambda k: gaps[k])
        ranking.append(SegmentRank(segment, members, round(float(np.mean(list(gaps.values()))), 4), worst))
    ranking.sort(key=lambda r: (-r.shortfall, r.segment))
    return ranking, sorted(too_small)


def shown(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
