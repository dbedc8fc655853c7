"""What every task's trainer offers the training job (training/job.py): where a candidate is judged and tuned
(`HeldOut`), how its families are tuned, evaluated and fitted, and the settings of a run (`TrainSettings`).

The job is the same for every kind; what differs between member kinds (features and labels stacked over monthly
cutoffs: members/), item kinds (a time split of an interaction matrix: items/) and uplift (a randomized
campaign: uplift/) lives in each task's trainer, which takes the algorithm itself from its family's record."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.common.settings import project_settings
from features.dataset.store import Dataset
from serving.models.base import ItemModel, MemberModel
from serving.models.kinds import ModelKind
from training.gate import HeldOutPredictions
from training.tuning import Tuning


class TrainSettings(BaseModel):
    """One training run of any kind; the settings a kind does not use are ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: date | None = Field(None, description="serve members as of this date; default: the day after the data")
    horizon_days: int = Field(90, ge=7, le=365)
    training_cutoffs: int = Field(6, ge=1, le=36, description="monthly training cutoffs (member kinds)")
    training_members: int | None = Field(
        default_factory=lambda: project_settings().training_members,
        ge=1_000,
        description="member kinds: members learned from and judged on at most, a fixed sample (None: all)",
    )
    test_cutoffs: int = Field(3, ge=1, le=12, description="held-out cutoffs that judge the candidate (member kinds)")
    validation_cutoffs: int = Field(2, ge=1, le=12, description="cutoffs Optuna tunes on (older than the tests)")
    trials: int | None = Field(
        None, ge=0, le=500, description="Optuna trials per tuned family (default: as the budget allows; 0: none)"
    )
    budget_seconds: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="seconds of tuning in all (default: the task's, TUNING_BUDGET_SECONDS; 0: no tuning)",
    )
    k: int = Field(10, ge=1, le=100, description="list length the item kinds are judged at")
    seed: int = 0
    promote: bool = Field(True, description="move the champion alias when the candidate passes the gate")
    family: str | None = Field(
        None, description="make this family the candidate instead of choosing the best; the gate still decides"
    )
    campaign: str | None = Field(None, description="uplift: the randomized campaign (its exposures) to learn from")
    outcome: Literal["conversion", "visit", "spend", "retention"] = Field(
        "conversion", description="uplift: the outcome in the H days after exposure whose lift is predicted"
    )
    treatment_arm: str | None = Field(None, description="uplift: the pushed arm (default: the campaign's only one)")
    control_arm: str | None = Field(None, description="uplift: the holdout arm (default: the plan's, or control)")
    split: Literal["time", "random-per-item"] = Field(
        "time",
        description="item kinds: judge on the H days before T (time), or on a random 25% of each item's "
        "interactions (random-per-item: ratings and other data whose timestamps mean little)",
    )


@dataclass(frozen=True)
class HeldOut:
    """Where a candidate is judged (`tests`) and tuned (`validation`): cutoffs, or time-split dates."""

    tests: list[date]
    validation: list[date]

    def params(self) -> dict[str, str]:
        return {"test_cutoffs": _dates(self.tests), "validation_cutoffs": _dates(self.validation)}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> HeldOut:
        return cls(_parse(params.get("test_cutoffs", "")), _parse(params.get("validation_cutoffs", "")))


def _dates(values: list[date]) -> str:
    return ",".join(map(str, values))


def _parse(text: str) -> list[date]:
    return [date.fromisoformat(v) for v in text.split(",") if v]


@dataclass
class Evaluation:
    """Every judged family's held-out metrics (mean over the tests), by name, and every row behind them."""

    scores: dict[str, dict[str, float]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    predictions: HeldOutPredictions | None = None  # per member, where the kind's figures are sums over members


@dataclass
class Fitted:
    model: MemberModel | ItemModel
    example: pd.DataFrame  # an input example for MLflow's signature
    params: dict[str, str] = field(default_factory=dict)  # what the run logs about the fit


# Each judged family's parameters, by family.
FamilyParams = dict[str, dict[str, Any]]


class Trainer(ABC):
    def family_params(self, family: str) -> dict[str, Any]:
        """A family's parameters when nothing is tuned."""
        return {}

    def servable(self, kind: ModelKind) -> list[str]:
        """The families that may serve the kind: its learned families, then any baseline family."""
        return list(kind.families)

    def learned(self, kind: ModelKind) -> list[str]:
        """The servable families that learn (the others are baselines, which a learned family must beat)."""
        return list(kind.families)

    def references(self, kind: ModelKind) -> list[str]:
        """Judged methods that cannot serve but that a learned family must beat too (uplift: churn targeting)."""
        return []

    def parts(self, kind: ModelKind) -> dict[str, list[str]]:
        """The families a combination of families (a blend) is made of, by combination: it must beat each."""
        return {}

    @abstractmethod
    def held_out(self, dataset: Dataset, kind: ModelKind, settings: TrainSettings, as_of: date) -> HeldOut: ...

    @abstractmethod
    def tune(
        self, dataset: Dataset, kind: ModelKind, held_out: HeldOut, settings: TrainSettings, plan: Tuning, study: str
    ) -> tuple[FamilyParams, pd.DataFrame]:
        """The tuned families' best parameters on the validation data, and every trial."""

    @abstractmethod
    def evaluate(
        self,
        dataset: Dataset,
        kind: ModelKind,
        held_out: HeldOut,
        params: FamilyParams,
        settings: TrainSettings,
        only: str | None = None,
    ) -> Evaluation:
        """Every servable family on the held-out tests (or `only` that family), each with its `params`."""

    @abstractmethod
    def fit(
        self,
        dataset: Dataset,
        kind: ModelKind,
        as_of: date,
        family: str,
        params: dict[str, Any],
        settings: TrainSettings,
    ) -> Fitted:
        """The family's model that serves as of `as_of`, fitted on everything its labels allow before it."""
