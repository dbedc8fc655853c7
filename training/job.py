"""The training job, the same for every kind, as a story: find the held-out data, tune the learned families on
validation data, judge every family on the same held-out data, choose the candidate and judge it against its
rivals and the champion (training/choosing.py), fit it, record the run and register the model
(training/tracking.py), and promote it when the gate lets it (training/promoting.py). Each task's trainer
(training/tasks.py) says how its kinds are judged, tuned and fitted.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pandas as pd
from pydantic import BaseModel

from features.common.errors import DataError
from features.common.progress import say, step
from features.dataset.store import Dataset
from features.pipelines.snapshots import resolve_as_of
from serving.models import registry
from serving.models.kinds import ModelKind
from training.choosing import candidate, judge
from training.promoting import conclude
from training.tasks import trainer
from training.tracking import log_run
from training.trainer import HeldOut, Trainer, TrainSettings
from training.tuning import tuning_plan

__all__ = ["TrainResult", "TrainSettings", "retrain", "train"]


class TrainResult(BaseModel):
    """What a training run did: the registered version, whether it became champion, and against what."""

    kind: str
    family: str  # the candidate's family: what the registered version is
    dataset: str
    as_of: date
    version: str
    run_id: str
    promoted: bool
    reasons: list[str]
    choice: str  # why this family is the candidate
    metrics: dict[str, float]
    rivals: dict[str, dict[str, float]]
    params: dict[str, Any]
    test_cutoffs: list[date]
    split: str  # how the held-out data was chosen (item kinds: time or random-per-item)
    tuning: str  # what Optuna was allowed ("none": every family kept its defaults)
    seconds: float


def train(dataset: Dataset, kind: ModelKind, settings: TrainSettings) -> TrainResult:
    """Trains, judges, registers and (when the gate lets it) promotes the dataset's model of `kind`."""
    started = time.perf_counter()
    job = trainer(kind)
    as_of = resolve_as_of(dataset.require(), settings.as_of)
    held_out = job.held_out(dataset, kind, settings, as_of)
    client = registry.connect(dataset.home)
    say(f"{kind.registered_name(dataset.name)} as of {as_of}: judged on {', '.join(map(str, held_out.tests))}")
    judged, tuning = _tuned(job, dataset, kind, held_out, settings, as_of)
    evaluation = job.evaluate(dataset, kind, held_out, judged, settings)
    family, choice = candidate(job, kind, evaluation, settings)
    say(choice)
    judgement = judge(
        job, dataset, kind, client, held_out, settings, family, evaluation.scores, judged, evaluation.predictions
    )
    if judgement.verdict.comparisons:
        say(f"the gate, {family} against its rivals (gain: positive is better; 95% intervals where paired):")
        say(judgement.verdict.table())
    with step(f"fitting the {kind.name} model ({family}) that serves as of {as_of}"):
        fitted = job.fit(dataset, kind, as_of, family, judged[family], settings)
    run_id, version = log_run(
        client,
        dataset,
        kind,
        settings,
        as_of,
        held_out,
        (family, choice),
        judged,
        tuning,
        evaluation,
        judgement,
        fitted,
    )
    promoted, reasons = conclude(client, dataset.name, kind, version, judgement.verdict.reasons, settings.promote)
    if judgement.verdict.passed and settings.promote and not promoted:  # the model would not load: say so
        client.set_tag(run_id, "promoted", "False")
    return TrainResult(
        kind=kind.name,
        family=family,
        dataset=dataset.name,
        as_of=as_of,
        version=version,
        run_id=run_id,
        promoted=promoted,
        reasons=reasons,
        choice=choice,
        metrics=evaluation.scores[family],
        rivals=judgement.rivals,
        params=judged[family],
        test_cutoffs=held_out.tests,
        split=settings.split,
        tuning=tuning[0],
        seconds=round(time.perf_counter() - started, 1),
    )


def _tuned(
    job: Trainer, dataset: Dataset, kind: ModelKind, held_out: HeldOut, settings: TrainSettings, as_of: date
) -> tuple[dict[str, dict[str, Any]], tuple[str, pd.DataFrame]]:
    """Every servable family's parameters to be judged with (its defaults, over what tuning found), and what
    tuning was allowed with its trials."""
    servable = job.servable(kind)
    if settings.family is not None and settings.family not in servable:
        raise DataError(f"--family {settings.family}: {kind.name} is served by {', '.join(servable)}")
    tuned, trials = {}, pd.DataFrame()
    plan = tuning_plan(settings, kind.task)
    if plan is None:
        say("not tuned: every family keeps its default parameters (--trials or --budget-seconds tunes)")
    else:
        validation = ", ".join(map(str, held_out.validation))
        with step(f"tuning on {validation} within {plan} (--trials, --budget-seconds; 0 turns tuning off)"):
            study = f"{dataset.name}-{kind.name}-{as_of}-{int(time.time())}"
            tuned, trials = job.tune(dataset, kind, held_out, settings, plan, study)
    judged = {family: {**job.family_params(family), **tuned.get(family, {})} for family in servable}
    return judged, (str(plan) if plan else "none", trials)


def retrain(dataset: Dataset, kinds: list[ModelKind], settings: TrainSettings | None = None) -> list[TrainResult]:
    """Trains each kind again with default settings (monitoring's --retrain); the gate still decides."""
    return [train(dataset, kind, settings or TrainSettings()) for kind in kinds]
