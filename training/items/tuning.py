"""Tuning a recommender family within its record's search space (serving/models/families/recommenders.py), on
the validation split only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pandas as pd

from features.common.errors import DataError
from features.common.progress import say
from serving.models.families.recommenders import OutOfTime, fit_deadline, item_family
from training.items.evaluation import Split, compare, factor_method
from training.tuning import BudgetCap


def tune_family(
    split: Split,
    family: str,
    modes: tuple[bool, ...],
    k: int,
    seed: int,
    *,
    trials: int | None,
    seconds: float | None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """A family's best parameters on the validation split (never the test split), within `trials` and/or `seconds`
    (no trial starts that the longest so far says would overrun them, and an iterative fit still running at the
    end of `seconds` is stopped; the family's defaults are always the first trial, so tuning never does worse on
    validation than not tuning, and a family whose first trial cannot finish in `seconds` keeps its defaults and
    is said so).

    The objective is precision@k of every kind of list the gate judges (`modes`: whether each leaves out the
    member's own items), added, so that tuning seeks what the gate asks for rather than trading one list for the
    other."""
    record = item_family(family)
    if record.search is None:
        raise DataError(f"the {family} family has no parameters to tune")
    search, defaults = record.search, record.defaults
    repeats = False in modes
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    first = _searched(defaults, search)
    if repeats:
        first["repeat_weight"] = float(defaults.get("repeat_weight", 0.0))
    for start in record.starts[: trials or None]:
        study.enqueue_trial({**first, **start}, skip_if_exists=True)

    cap = BudgetCap(family, seconds)
    deadline = None if seconds is None else cap.started + seconds

    def objective(trial: optuna.Trial) -> float:
        params = {**defaults, **search(trial)}
        if repeats:  # the repeat boost only matters for lists that may hold the member's own items
            params["repeat_weight"] = trial.suggest_float("repeat_weight", 0.0, 16.0)
        method = factor_method(family, params, seed)
        try:
            with fit_deadline(deadline):
                precision = [row["precision"] for row in compare(split, {family: method}, k=k, modes=modes)]
        except OutOfTime:
            say(f"  {family} trial {trial.number + 1}: stopped at the end of its share ({seconds:.0f} s)")
            raise optuna.TrialPruned() from None
        say(f"  {family} trial {trial.number + 1}: precision@{k} " + " + ".join(f"{p:.4f}" for p in precision))
        return float(sum(precision))

    # No `timeout`: the cap stops the study before a trial that would overrun, and the deadline stops a fit that
    # does; the first trial always starts (whether it can finish in the share is what it finds out).
    study.optimize(objective, n_trials=trials, callbacks=[cap])
    frame = study.trials_dataframe()
    frame = frame[frame["state"] != "WAITING"]  # first trials enqueued and never started
    frame.insert(0, "family", family)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        say(
            f"  {family}: not tuned, its first trial (its defaults) cannot finish in its share of the tuning "
            f"budget ({seconds or 0:.0f} s); judged with its defaults (a larger --budget-seconds tunes it)"
        )
        return dict(defaults), frame
    return {**defaults, **study.best_params}, frame


def _searched(defaults: dict[str, Any], search: Callable[[optuna.Trial], dict[str, Any]]) -> dict[str, Any]:
    """The defaults of the parameters a family's search suggests (an enqueued trial fixes only those)."""
    probe = optuna.trial.FixedTrial(defaults)
    return {name: defaults[name] for name in search(probe) if name in defaults}
