"""How each task is trained: which data judges a candidate, how its family is tuned, evaluated and fitted.

The training job (training/job.py) is the same for every kind; what differs between member kinds (features and
labels stacked over monthly cutoffs) and item kinds (a time split of an interaction matrix) lives here, one
trainer per task. Each trainer takes the algorithm itself from its family's record (a member family's in
training/members/fit.py, a recommender family's in serving/models/families/recommenders.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.common.errors import DataError
from features.common.progress import say, step
from features.common.settings import settings as project_settings
from features.dataset.store import Dataset
from features.pipelines.interactions import Interactions
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, dataset_span
from serving.models.base import ItemModel, MemberModel
from serving.models.families.recommenders import item_family
from serving.models.kinds import ModelKind, Task
from training.gate import HeldOutPredictions
from training.items.evaluation import (
    Split,
    compare,
    factor_method,
    of_members,
    random_split,
    time_split,
)
from training.items.fit import fit_recommender, item_families, tune_family
from training.members.evaluation import BacktestReport, BacktestSettings, backtest, families_of
from training.members.fit import member_family
from training.members.frames import stacked, training_cutoffs
from training.tuning import tune

STEP_DAYS = 30
# The share of each item's interactions a random-per-item split holds out: the 75/25 of published results.
RANDOM_TEST_SHARE = 0.25
# Tuning when neither --trials nor --budget-seconds says otherwise: a recommender trial is one fit and ranking of a
# validation split (seconds), so a minute tunes every item family; a LightGBM trial refits on every validation
# cutoff (a minute or more on real data), so member kinds are tuned only when asked.
TUNING_BUDGET_SECONDS: dict[Task, float] = {Task.items: 60.0, Task.member: 0.0}


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
class Tuning:
    """How much Optuna may search: trials per family and/or seconds in all (None: no limit of that kind)."""

    trials: int | None
    seconds: float | None

    def __str__(self) -> str:
        return self.describe(" per family", " in all")

    def describe(self, per_trials: str, per_seconds: str) -> str:
        limits = [f"{self.trials} trials{per_trials}"] if self.trials else []
        limits += [f"{self.seconds:.0f} s{per_seconds}"] if self.seconds else []
        return " and ".join(limits)

    def share(self, families: int) -> Tuning:
        """Each of `families` families' part of the budget: the same trials, an equal share of the seconds."""
        return Tuning(self.trials, None if self.seconds is None else self.seconds / max(families, 1))


def tuning_plan(settings: TrainSettings, task: Task) -> Tuning | None:
    """What `--trials` and `--budget-seconds` ask for (None: no tuning); with neither, the task's default budget."""
    if settings.trials == 0 or settings.budget_seconds == 0:
        return None
    if settings.trials is None and settings.budget_seconds is None:
        default = TUNING_BUDGET_SECONDS[task]
        return Tuning(None, default) if default else None
    return Tuning(settings.trials, settings.budget_seconds)


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


def _monthly(newest: date, count: int) -> list[date]:
    return [newest - timedelta(days=STEP_DAYS * k) for k in range(count)]


class MemberTrainer(Trainer):
    """Member kinds: features and labels at monthly cutoffs; rolling-origin backtests judge every family.

    Cutoffs, newest first, for a model that scores members as of T (horizon H):
    - the final model trains on T-H, T-H-30, ... (labels that end by T);
    - held-out test cutoffs T-H, T-H-30, ... judge it: for each, every family trained on the cutoffs before it
      scores it, beside the current champion's configuration;
    - validation cutoffs, older than every test cutoff, are all that Optuna ever sees.
    """

    def servable(self, kind: ModelKind) -> list[str]:
        return families_of(kind)

    def parts(self, kind: ModelKind) -> dict[str, list[str]]:
        return {f: list(parts) for f in kind.families if (parts := member_family(f).parts)}

    def held_out(self, dataset: Dataset, kind: ModelKind, settings: TrainSettings, as_of: date) -> HeldOut:
        """Each test cutoff needs a usable training cutoff (30 days of history) before it."""
        if settings.split != "time":
            raise DataError(f"--split {settings.split}: {kind.name} is judged on held-out cutoffs in time only")
        first = dataset_span(dataset)[0].date()
        earliest = first + timedelta(days=30 + settings.horizon_days)
        newest = as_of - timedelta(days=settings.horizon_days)
        tests = [c for c in _monthly(newest, settings.test_cutoffs) if c >= earliest]
        if not tests:
            raise DataError(
                f"{dataset.name}: not enough history before {as_of} for a held-out test cutoff with a "
                f"{settings.horizon_days}-day horizon (the data starts {first}); choose a later --as-of or a "
                "shorter --horizon-days"
            )
        older = min(tests) - timedelta(days=STEP_DAYS)
        validation = [c for c in _monthly(older, settings.validation_cutoffs) if c >= earliest]
        return HeldOut(sorted(tests), sorted(validation))

    def tune(
        self, dataset: Dataset, kind: ModelKind, held_out: HeldOut, settings: TrainSettings, plan: Tuning, study: str
    ) -> tuple[FamilyParams, pd.DataFrame]:
        if not held_out.validation:
            raise DataError(f"{dataset.name}: no validation cutoff older than the test cutoffs to tune on")
        judged = self._judged(kind, settings.family)  # with --family, that family (and a blend's parts)
        tuned = [f for f in kind.families if member_family(f).search is not None and f in judged]
        if not tuned:
            raise DataError(
                f"no learned family of {kind.name} ({', '.join(kind.families)}) has parameters to tune: train it "
                "with --trials 0"
            )
        untuned = [f for f in kind.families if f in judged and f not in tuned]
        if untuned:
            say(f"not tuned: {', '.join(untuned)} (no parameters to search); judged with their defaults")
        each = plan.share(len(tuned))  # as the item kinds' families share theirs
        best: FamilyParams = {}
        tables = []
        for family in tuned:
            best[family], trials = tune(
                dataset,
                kind,
                family,
                held_out.validation,
                trials=each.trials,
                seconds=each.seconds,
                horizon_days=settings.horizon_days,
                training_cutoffs=settings.training_cutoffs,
                seed=settings.seed,
                training_members=settings.training_members,
                study_name=f"{study}/{family}",
            )
            tables.append(trials.assign(family=family))
        return best, pd.concat(tables, ignore_index=True)

    def evaluate(
        self,
        dataset: Dataset,
        kind: ModelKind,
        held_out: HeldOut,
        params: FamilyParams,
        settings: TrainSettings,
        only: str | None = None,
    ) -> Evaluation:
        report = backtest(
            dataset,
            kind,
            BacktestSettings(
                cutoffs=held_out.tests,
                horizon_days=settings.horizon_days,
                training_cutoffs=settings.training_cutoffs,
                training_members=settings.training_members,
                seed=settings.seed,
                params={f: p for f, p in params.items() if f in kind.families},
            ),
            families=[only] if only is not None else self._judged(kind, settings.family),
        )
        return Evaluation(_means(report), report.rows, report.predictions)

    def _judged(self, kind: ModelKind, family: str | None) -> list[str]:
        """Every servable family; with `--family`, that family and whom it must beat (the baselines and, for a
        blend, its parts): no other learned family could serve in its place, so judging one would change nothing."""
        if family is None:
            return self.servable(kind)
        learned = set(self.learned(kind))
        must = {family, *self.parts(kind).get(family, ())}
        return [f for f in self.servable(kind) if f in must or f not in learned]

    def fit(
        self,
        dataset: Dataset,
        kind: ModelKind,
        as_of: date,
        family: str,
        params: dict[str, Any],
        settings: TrainSettings,
    ) -> Fitted:
        cutoffs = training_cutoffs(as_of, settings.horizon_days, settings.training_cutoffs)
        data = stacked(dataset, cutoffs, settings.horizon_days, settings.training_members)
        model = member_family(family).fit(data, kind, params, settings.seed, settings.horizon_days)
        used = sorted(set(data.frame["cutoff"].dt.date))
        return Fitted(model, data.frame[data.feature_columns].head(5), {"training_cutoffs": _dates(used)})


def _means(report: BacktestReport) -> dict[str, dict[str, float]]:
    means = report.mean_by_method().drop(columns=["train_rows", "test_members"])
    return {str(m): {k: float(v) for k, v in row.dropna().items()} for m, row in means.iterrows()}


class ItemTrainer(Trainer):
    """Item kinds: for a recommender serving as of T, the test split trains on interactions before T-H and tests
    on [T-H, T); the validation split Optuna sees trains before T-2H and tests on [T-2H, T-H); the final model
    is fitted on everything before T. Every family that can serve (`item_families`: ALS, BPR, item-item
    neighbours, EASE, most popular, buy again) is tuned on the validation split and judged on the same test split.

    Lists are judged as the kind serves them by default; where they may repeat the member's own items, the
    families' lists of items new to the member are judged too (`new_only_precision`), so the gate covers both. On a
    random per-item split every held-out interaction is new to its member by construction: only new-item lists
    are judged there."""

    def family_params(self, family: str) -> dict[str, Any]:
        return dict(item_family(family).defaults)

    def servable(self, kind: ModelKind) -> list[str]:
        return item_families(kind)

    def learned(self, kind: ModelKind) -> list[str]:
        return [f for f in self.servable(kind) if not item_family(f).baseline]

    def held_out(self, dataset: Dataset, kind: ModelKind, settings: TrainSettings, as_of: date) -> HeldOut:
        if settings.split == "random-per-item":  # both splits are carved from the interactions before T
            return HeldOut([as_of], [as_of])
        horizon = timedelta(days=settings.horizon_days)
        return HeldOut([as_of - horizon], [as_of - 2 * horizon])

    def _split(self, dataset: Dataset, kind: ModelKind, at: date, settings: TrainSettings, tuning: bool) -> Split:
        """The time split at `at`, of at most the recommender_members setting's members; or, for random-per-item
        (rating data, every member), a random share of each item's interactions before `at` for the test, and for
        tuning a share of what remains (so tuning never sees a test interaction); of at most judged_members test
        members (features/common/settings.py)."""
        judged = project_settings().judged_members
        return of_members(self._every_member(dataset, kind, at, settings, tuning), judged, settings.seed)

    def _every_member(
        self, dataset: Dataset, kind: ModelKind, at: date, settings: TrainSettings, tuning: bool
    ) -> Split:
        if settings.split == "time":
            return time_split(dataset, kind, at, settings.horizon_days, project_settings().recommender_members)
        assert kind.items is not None
        build_snapshot(dataset, SnapshotSettings(as_of=at))
        interactions = Snapshot(dataset, at).interactions(kind.items.matrix)
        test = random_split(interactions, RANDOM_TEST_SHARE, settings.seed)
        if not tuning:
            return test
        remaining = Interactions(test.train, interactions.member_ids, interactions.item_ids)
        return random_split(remaining, RANDOM_TEST_SHARE, settings.seed + 1)

    def tune(
        self, dataset: Dataset, kind: ModelKind, held_out: HeldOut, settings: TrainSettings, plan: Tuning, study: str
    ) -> tuple[FamilyParams, pd.DataFrame]:
        validation = self._split(dataset, kind, held_out.validation[0], settings, tuning=True)
        families = _within_limits([f for f in self.servable(kind) if item_family(f).tuned], validation)
        each = plan.share(len(families))
        say(f"tuning {', '.join(families)} on the validation split ({each.describe(' each', ' each')})")
        tuned, frames = {}, []
        for family in families:
            tuned[family], trials = tune_family(
                validation,
                family,
                _judged_modes(kind, settings),
                settings.k,
                settings.seed,
                trials=each.trials,
                seconds=each.seconds,
            )
            frames.append(trials.dropna(axis=1, how="all"))  # a family stopped in its first trial has no value
        return tuned, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def evaluate(
        self,
        dataset: Dataset,
        kind: ModelKind,
        held_out: HeldOut,
        params: FamilyParams,
        settings: TrainSettings,
        only: str | None = None,
    ) -> Evaluation:
        families = [only] if only else self.servable(kind)
        where = f"the {settings.split} split at {held_out.tests[0]}"
        with step(f"judging {kind.name} on {where}: {', '.join(families)}"):
            split = self._split(dataset, kind, held_out.tests[0], settings, tuning=False)
            families = _within_limits(families, split)
            methods = {family: factor_method(family, params.get(family, {}), settings.seed) for family in families}
            mode = _judged_mode(kind, settings)
            rows = compare(split, methods, k=settings.k, modes=_judged_modes(kind, settings))
        metrics = {
            (r["method"], r["mode"] == "new only"): {k: v for k, v in r.items() if isinstance(v, float)} for r in rows
        }
        scores = {
            family: {**metrics[family, mode], "new_only_precision": metrics[family, True]["precision"]}
            for family in families
        }
        return Evaluation(scores, [{"cutoff": str(held_out.tests[0]), **r} for r in rows])

    def fit(
        self,
        dataset: Dataset,
        kind: ModelKind,
        as_of: date,
        family: str,
        params: dict[str, Any],
        settings: TrainSettings,
    ) -> Fitted:
        model = fit_recommender(dataset, kind, as_of, params, settings.seed, family=family)
        return Fitted(model, pd.DataFrame({"member_id": model.member_ids[:3].astype(str)}))


def _judged_mode(kind: ModelKind, settings: TrainSettings) -> bool:
    """Whether the lists judged first leave out the member's own items: the kind's default, but always on a random
    per-item split (its held-out interactions are never the member's own)."""
    return kind.exclude_seen or settings.split == "random-per-item"


def _judged_modes(kind: ModelKind, settings: TrainSettings) -> tuple[bool, ...]:
    """The kinds of list judged (and tuned for): the kind's, and lists of new items too where it may repeat."""
    return (True,) if _judged_mode(kind, settings) else (False, True)


def _within_limits(families: list[str], split: Split) -> list[str]:
    """The families that can be fitted on the split's catalogue (EASE has an item limit); says which cannot."""
    items = split.train.shape[1]
    too_many = [f for f in families if items > (item_family(f).item_limit or items)]
    if too_many:
        say(f"not judged: {', '.join(too_many)} (past their item limit, {items:,} items)")
    return [f for f in families if f not in too_many]
