"""The health indicators of configs/health.yaml as a strict typed config: each declared once, with its formula
over the measures of monitoring/health/measures.py, its window, unit, the plan's target and an optional floor."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.common.config import load_config
from monitoring.health.measures import MEASURES

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "health.yaml"
LOCALS = ("days", "cost_per_push", "margin", "community_members", "community_spend")
_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*")


class Dimension(StrEnum):
    members = "members"
    content = "content"
    business = "business"
    health = "health"


class Better(StrEnum):
    higher = "higher"
    lower = "lower"


class Indicator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    dimension: Dimension
    area: str = Field(description="the plan's area within the dimension: scale, structure, trust, ...")
    meaning: str
    formula: str = Field(description="a pandas expression over measures (and @days, @margin, ...)")
    unit: str
    window: int = Field(30, description="days the indicator is computed over, ending at --as-of")
    target: float | None = None
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
        return self

    def short_of(self, value: float) -> float:
        """How far the value falls short of the target, relative to it (0 when met or without a target)."""
        if self.target is None or value != value:  # NaN: no data
            return 0.0
        gap = (self.target - value) if self.better is Better.higher else (value - self.target)
        return max(gap, 0.0) / max(abs(self.target), 1e-9)

    def crosses_floor(self, value: float) -> bool:
        if self.watch is None or value != value:
            return False
        return value < self.watch if self.better is Better.higher else value > self.watch


class HealthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_per_push: float = Field(0.05, ge=0)
    margin: float = Field(0.3, ge=0, le=1)
    high_value_monthly_spend: float = Field(500.0, ge=0)
    min_segment_members: int = Field(30, ge=1)
    indicators: list[Indicator]

    @model_validator(mode="after")
    def _unique(self) -> HealthSettings:
        names = [i.name for i in self.indicators]
        if doubled := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"indicators declared twice: {', '.join(doubled)}")
        return self


def load_health_settings(path: Path | None = None) -> HealthSettings:
    """configs/health.yaml (or `path`); a wrong key, formula or value stops with the file and field named."""
    return load_config(HealthSettings, path or DEFAULT_CONFIG, {})
