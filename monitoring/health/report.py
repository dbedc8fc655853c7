"""The community's health as of a date: every indicator of configs/health.yaml for the whole community and, with
`by`, for each group, persona, city, age band or tier; its change on the window before, its status against the
plan's target, segments ranked by how far they fall short, and the watched floors crossed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from features.common.errors import DataError
from features.dataset.store import Dataset
from monitoring.health.indicators import Better, HealthSettings, Indicator
from monitoring.health.measures import available_tables, group_memberships, member_measures

COMMUNITY = "community"


class SegmentBy(StrEnum):
    group = "group"
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
    target: float | None
    better: str
    status: str  # met, short of target, no target, no data: ...
    unit: str
    proxy: bool

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
    ranking: list[SegmentRank] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)  # segments shown but not ranked
    watch_breaches: list[str] = field(default_factory=list)

    def community(self) -> list[IndicatorValue]:
        return [v for v in self.values if v.segment == COMMUNITY]

    def value(self, indicator: str, segment: str = COMMUNITY) -> IndicatorValue:
        return next(v for v in self.values if v.indicator == indicator and v.segment == segment)

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "as_of": str(self.as_of),
            "by": self.by,
            "indicators": [{**asdict(v), "change": v.change} for v in self.values],
            "ranking": [asdict(r) for r in self.ranking],
            "not_ranked": self.too_small,
            "watch_breaches": self.watch_breaches,
        }


def compute_health(
    dataset: Dataset,
    as_of: date,
    settings: HealthSettings,
    by: SegmentBy | None = None,
    segments: pd.DataFrame | None = None,
) -> HealthReport:
    """Every indicator as of `as_of`. `segments` (member_id, segment) overrides how members are split (tiers
    come from the caller, which holds the champions)."""
    tables = available_tables(dataset)
    if not tables & {"orders", "members"}:
        raise DataError(f"{dataset.name}: no members and no orders imported: there is no community to measure")
    windows = sorted({i.window for i in settings.indicators})
    now = {w: member_measures(dataset, as_of, w, settings.high_value_monthly_spend, tables) for w in windows}
    before = {
        w: member_measures(dataset, as_of - timedelta(days=w), w, settings.high_value_monthly_spend, tables)
        for w in windows
    }
    split = None
    if by is not None:
        split = segments if segments is not None else member_segments(dataset, as_of, by, tables)
    values: list[IndicatorValue] = []
    for indicator in settings.indicators:
        missing = [t for t in indicator.needs if t not in tables]
        current = _aggregate(now[indicator.window], split)
        previous = _aggregate(before[indicator.window], split)
        values += _indicator_values(indicator, current, previous, settings, missing)
    report = HealthReport(dataset.name, as_of, None if by is None else by.value, values)
    if by is not None:
        report.ranking, report.too_small = _rank(values, settings)
    report.watch_breaches = [
        f"{v.indicator} {shown(v.value)} {'below' if v.better == Better.higher else 'above'} its floor "
        f"{shown(i.watch)} ({v.segment})"
        for i in settings.indicators
        for v in values
        if v.segment == COMMUNITY and v.indicator == i.name and v.value is not None and i.crosses_floor(v.value)
    ]
    return report


def member_segments(dataset: Dataset, as_of: date, by: SegmentBy, tables: set[str]) -> pd.DataFrame:
    """(member_id, segment) for a split the tables can make; a clear error when they cannot."""
    if by is SegmentBy.group:
        if "engagements" not in tables:
            raise DataError(f"{dataset.name}: no data to split by group: import `engagements` (with group_id)")
        return group_memberships(dataset, as_of)
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
    """Measures summed per segment; the community's row first."""
    community = measures.sum().to_frame(COMMUNITY).T
    if split is None:
        return community
    joined = measures.join(split.set_index("member_id")["segment"], how="inner")
    return pd.concat([community, joined.groupby("segment").sum()])


def _indicator_values(
    indicator: Indicator,
    current: pd.DataFrame,
    previous: pd.DataFrame,
    settings: HealthSettings,
    missing: list[str],
) -> list[IndicatorValue]:
    now = _evaluate(indicator, current, settings)
    then = _evaluate(indicator, previous, settings)
    out = []
    for segment in current.index:
        value = None if missing else now.get(segment)
        if missing:
            status = "no data: import " + ", ".join(f"`{t}`" for t in missing)
        elif value is None:
            status = "no data: none in the window"
        elif indicator.target is None:
            status = "no target"
        else:
            status = "met" if indicator.short_of(value) == 0 else "short of target"
        out.append(
            IndicatorValue(
                indicator=indicator.name,
                dimension=indicator.dimension.value,
                area=indicator.area,
                segment=str(segment),
                members=int(current.loc[segment, "members"]),
                value=value,
                previous=None if missing else then.get(segment),
                target=indicator.target,
                better=indicator.better.value,
                status=status,
                unit=indicator.unit,
                proxy=indicator.proxy,
            )
        )
    return out


def _evaluate(indicator: Indicator, frame: pd.DataFrame, settings: HealthSettings) -> dict[str, float]:
    """The formula per segment; a segment where it has no finite value (nothing to divide by) is left out."""
    if any(m not in frame for m in indicator.measures):
        return {}
    community = frame.loc[COMMUNITY]
    local = {
        "days": float(indicator.window),
        "cost_per_push": settings.cost_per_push,
        "margin": settings.margin,
        "community_members": float(community["members"]),
        "community_spend": float(community["spend"]) if "spend" in frame else math.nan,
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
        gaps = {v.indicator: by_name[v.indicator].short_of(v.value) for v in rows if v.value is not None and v.target}
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
