"""Optuna tuning of a member family's parameters on validation cutoffs only (never the held-out test cutoffs)."""

from __future__ import annotations

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
from training.tuning import BudgetCap


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
