"""The health indicators of configs/health.yaml as a strict typed config: each declared once, with its formula
over the measures of monitoring/health/measures.py, its window, unit, target (a constant or the plan's milestones
from the community's start), where the target comes from, and an optional floor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.common.config import load_config
from monitoring.health.measures import MEASURES

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "health.yaml"
LOCALS = ("days", "margin", "community_members", "community_spend", "all_spend")
_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*")


class Dimension(StrEnum):
    members = "members"
    content = "content"
    business = "business"
    health = "health"


class Better(StrEnum):
    higher = "higher"
    lower = "lower"


class Milestones(BaseModel):
    """A target that changes over time: the value due by each month counted from the community's start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by_month: dict[int, float] = Field(description="month after the community's start -> the value due by then")

    @model_validator(mode="after")
    def _months(self) -> Milestones:
        if not self.by_month or min(self.by_month) < 1:
            raise ValueError("by_month: at least one milestone, each at month 1 or later")
        return self

    def due(self, start: date) -> list[tuple[date, float]]:
        """(date due, value) in date order: month m falls m calendar months after the start."""
        return [
            ((pd.Timestamp(start) + pd.DateOffset(months=m)).date(), self.by_month[m]) for m in sorted(self.by_month)
        ]

    def described(self, unit: str) -> str:
        return ", ".join(f"{_figure(v, unit)} by month {m}" for m, v in sorted(self.by_month.items()))


@dataclass(frozen=True)
class TargetInForce:
    """The target that applies on a date: a constant, the latest milestone due by then, or none yet."""

    value: float | None
    next_due: tuple[date, float] | None = None  # the next milestone, where one is still to come


class Source(BaseModel):
    """Where a target comes from: the business plan (with its section) or us (with why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan: str | None = Field(None, description="the plan's section that states the figure")
    ours: str | None = Field(None, description="why we set it, where the plan names the indicator but no figure")

    @model_validator(mode="after")
    def _one(self) -> Source:
        if (self.plan is None) == (self.ours is None):
            raise ValueError("a source is either `plan: SECTION` or `ours: WHY`, not both or neither")
        return self

    def __str__(self) -> str:
        return f"plan: {self.plan}" if self.plan is not None else f"ours: {self.ours}"


class Indicator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    dimension: Dimension
    area: str = Field(description="the plan's area within the dimension: scale, structure, trust, ...")
    meaning: str
    formula: str = Field(description="a pandas expression over measures (and @days, @margin, ...)")
    unit: str
    window: int = Field(30, description="days the indicator is computed over, ending at --as-of")
    target: float | Milestones | None = None
    source: Source | None = Field(None, description="where the target comes from: every target has one")
    community_target: bool = Field(
        False, description="the target is the whole community's (a count): segments are not held to it"
    )
    since_start: bool = Field(
        False,
        description="the figure is the formula's relative change against its first window after the community's "
        "start (complaints down 60% against the start)",
    )
    better: Better = Better.higher
    watch: float | None = Field(None, description="a floor (a ceiling when lower is better): `health` exits 1")
    proxy: bool = False

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(n for n in _NAME.findall(self.formula) if not n.startswith("@"))

    @property
    def needs(self) -> tuple[str, ...]:
        """The tables the indicator reads, in the contract's order."""
        tables = {t for m in self.measures for t in MEASURES[m].needs}
        return tuple(sorted(tables))

    @model_validator(mode="after")
    def _known_terms(self) -> Indicator:
        unknown = [n for n in self.measures if n not in MEASURES]
        unknown += [n for n in _NAME.findall(self.formula) if n.startswith("@") and n[1:] not in LOCALS]
        if unknown:
            raise ValueError(
                f"formula {self.formula!r} names {', '.join(unknown)}: not a measure (known: "
                f"{', '.join(MEASURES)}) or a setting (@{', @'.join(LOCALS)})"
            )
        if self.window not in (7, 30, 90):
            raise ValueError(f"window {self.window}: 7 (weekly), 30 (monthly) or 90 (quarterly) days")
        if self.target is not None and self.source is None:
            raise ValueError(f"{self.name}: a target needs its source (`plan: SECTION` or `ours: WHY`)")
        return self

    def target_on(self, day: date, start: date) -> TargetInForce:
        """The target in force on `day`: a constant always; of milestones, the latest due by then (none before the
        first: a community is not held to month 6's figure in month 2), and the next still to come."""
        if self.target is None or isinstance(self.target, float | int):
            return TargetInForce(None if self.target is None else float(self.target))
        due = self.target.due(start)
        passed = [value for when, value in due if when <= day]
        upcoming = [(when, value) for when, value in due if when > day]
        return TargetInForce(passed[-1] if passed else None, upcoming[0] if upcoming else None)

    def target_described(self) -> str:
        """The target as the README and `health --targets` say it: "≥ 30% by month 6, 50% by month 15"."""
        if self.target is None:
            return ""
        sign = "≤" if self.better is Better.lower else "≥"
        if isinstance(self.target, Milestones):
            return f"{sign} {self.target.described(self.unit)}"
        return f"{sign} {_figure(float(self.target), self.unit)}"

    def short_of(self, value: float, target: float | None) -> float:
        """How far the value falls short of the target, relative to it: 0 when met or without a target, 1 at most
        (all the way short), so that one ratio of small counts in a small segment cannot outweigh the others."""
        if target is None or value != value:  # NaN: no data
            return 0.0
        gap = (target - value) if self.better is Better.higher else (value - target)
        return min(max(gap, 0.0) / max(abs(target), 1e-9), 1.0)

    def crosses_floor(self, value: float) -> bool:
        if self.watch is None or value != value:
            return False
        return value < self.watch if self.better is Better.higher else value > self.watch


class CampaignCosts(BaseModel):
    """What one campaign cost: per member pushed (the message and the incentive), and once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_per_push: float = Field(ge=0)
    fixed_cost: float = Field(0.0, ge=0)


class HealthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_per_push: float = Field(0.05, ge=0)
    margin: float = Field(0.3, ge=0, le=1)
    high_value_monthly_spend: float = Field(500.0, ge=0)
    min_segment_members: int = Field(30, ge=1)
    community_start: dict[str, date] = Field(
        default_factory=dict,
        description="dataset -> the community's start, from which milestones count; a dataset not named starts "
        "on the day of its first order or engagement",
    )
    community_channels: tuple[str, ...] = Field(
        ("community_group",), description="orders' channels that are the community's own (its GMV share, its AOV)"
    )
    campaigns: dict[str, CampaignCosts] = Field(
        default_factory=dict, description="campaign_id -> its costs; a campaign not named costs cost_per_push"
    )
    indicators: list[Indicator]

    @model_validator(mode="after")
    def _unique(self) -> HealthSettings:
        names = [i.name for i in self.indicators]
        if doubled := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"indicators declared twice: {', '.join(doubled)}")
        return self

    def costs(self, campaign: str) -> CampaignCosts:
        return self.campaigns.get(campaign) or CampaignCosts(cost_per_push=self.cost_per_push)


def _figure(value: float, unit: str) -> str:
    if unit == "share":
        return f"{value:.0%}" if abs(value) >= 0.01 else f"{value:.1%}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def targets_markdown(settings: HealthSettings) -> str:
    """The README's table of the indicators: what each measures, its target and where the target comes from."""
    rows = ["| dimension | area | indicator | window | target | source |", "|---|---|---|---|---|---|"]
    for i in settings.indicators:
        name = f"`{i.name}`" + (" (proxy)" if i.proxy else "")
        window = {7: "week", 30: "month", 90: "quarter"}[i.window]
        source = (
            "-"
            if i.source is None
            else ("**plan**: " + i.source.plan if i.source.plan else "ours: " + str(i.source.ours))
        )
        scope = " (the community's)" if i.community_target and i.target is not None else ""
        rows.append(
            f"| {i.dimension.value} | {i.area} | {name} | {window} | {i.target_described() or '-'}{scope} | {source} |"
        )
    return "\n".join(rows)


def load_health_settings(path: Path | None = None) -> HealthSettings:
    """configs/health.yaml (or `path`); a wrong key, formula or value stops with the file and field named."""
    return load_config(HealthSettings, path or DEFAULT_CONFIG, {})
