"""How much tuning a run may do: the plan `--trials` and `--budget-seconds` ask for, each task's default budget,
and the cap that stops a study before a trial that would overrun it. Each task tunes its own families (members/,
items/); Optuna never sees a held-out test cutoff or split."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna

from features.common.progress import say
from serving.models.kinds import Task

if TYPE_CHECKING:
    from training.trainer import TrainSettings

# Tuning when neither --trials nor --budget-seconds says otherwise: a recommender trial is one fit and ranking of a
# validation split (seconds), so a minute tunes every item family; a LightGBM trial refits on every validation
# cutoff (a minute or more on real data), so member kinds are tuned only when asked.
TUNING_BUDGET_SECONDS: dict[Task, float] = {Task.items: 60.0, Task.member: 0.0}


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
