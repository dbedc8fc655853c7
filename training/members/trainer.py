"""The trainer of member kinds (churn, value, any binary or amount kind): features and labels at monthly cutoffs;
rolling-origin backtests judge every family."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd

from features.common.errors import DataError
from features.common.progress import say
from features.dataset.store import Dataset
from features.pipelines.snapshots import dataset_span
from serving.models.kinds import ModelKind
from training.members.evaluation import BacktestReport, BacktestSettings, backtest
from training.members.fit import families_of, member_family
from training.members.frames import stacked, training_cutoffs
from training.members.tuning import tune
from training.trainer import Evaluation, FamilyParams, Fitted, HeldOut, Trainer, TrainSettings, _dates
from training.tuning import Tuning

STEP_DAYS = 30


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
