"""Optuna tuning of a member family's parameters on validation cutoffs only (never the held-out test cutoffs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

import optuna
import pandas as pd

from features.common.errors import DataError
from features.common.progress import say
from features.dataset.store import Dataset
from serving.models.kinds import ModelKind
from training.members.evaluation import BacktestSettings, backtest
from training.members.fit import member_family


class BudgetCap:
    """Optuna's `timeout` lets a trial that starts a second before it run to its end (a LightGBM backtest at
    scale: minutes). This callback stops a study before a trial that would overrun instead: when the time left
    is less than the longest trial so far. A first trial longer than the whole budget is said so."""

    def __init__(self, family: str, seconds: float | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.family, self.seconds, self.clock = family, seconds, clock
        self.started = self.last = clock()
        self.longest = 0.0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = self.clock()
        self.longest, self.last = max(self.longest, now - self.last), now
        if self.seconds is None:
            return
        # (A first trial stopped at the deadline, a pruned one, is said so by whoever stopped it.)
        if len(study.trials) == 1 and self.longest > self.seconds and trial.state == optuna.trial.TrialState.COMPLETE:
            say(
                f"  {self.family}: its first trial took {self.longest:.0f} s, past its share of the tuning budget "
                f"({self.seconds:.0f} s): tuned no further (a larger --budget-seconds tunes it)"
            )
        if now - self.started + self.longest > self.seconds:
            study.stop()


def tune(
    dataset: Dataset,
    kind: ModelKind,
    family: str,
    cutoffs: list[date],
    *,
    trials: int | None,
    seconds: float | None = None,
    horizon_days: int,
    training_cutoffs: int,
    seed: int,
    training_members: int | None = None,
    study_name: str,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Best parameters over `trials` backtests on the validation `cutoffs` (and/or as many as `seconds` allow: no
    trial starts that the longest so far says would overrun them), and every trial as a table.

    The study is stored in `<home>/optuna.db` under `study_name`, so it can be inspected or resumed.
    """
    suggest = member_family(family).search
    if suggest is None:
        raise DataError(f"the {family} family of {kind.name} has no parameters to tune: train it with --trials 0")
    # What the kind is tuned for: the first metric of its gate (churn ranks members, value predicts amounts).
    objective_metric = kind.gate[0]
    metric, direction = objective_metric.name, "maximize" if objective_metric.higher_is_better else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{dataset.home.root / 'optuna.db'}"
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> float:
        settings = BacktestSettings(
            cutoffs=cutoffs,
            horizon_days=horizon_days,
            training_cutoffs=training_cutoffs,
            training_members=training_members,
            seed=seed,
            params={family: suggest(trial)},
        )
        report = backtest(dataset, kind, settings, families=[family])
        score = float(report.mean_by_method().loc[family, metric])
        say(f"  {family} trial {trial.number + 1}: {metric} {score:.4f}")
        return score

    study.optimize(objective, n_trials=trials, timeout=seconds, callbacks=[BudgetCap(family, seconds)])
    return dict(study.best_params), study.trials_dataframe()
