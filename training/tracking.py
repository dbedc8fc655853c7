"""What a training run records in MLflow, and reads back: the same artefacts whatever its kind.

A run logs its parameters and held-out dates, the candidate's metrics, rivals.json (every other judged family and
the champion), backtest.json (every row behind the metrics), promotion.json (the gate's comparisons),
model_summary.json, the Optuna trials when tuned, the per-member held-out predictions the gate bootstrapped, and
a `promoted` tag; the model itself is registered as the dataset's DATASET.KIND model ("models from code").
"""

from __future__ import annotations

import json
import tempfile
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from features.common.errors import DataError
from features.dataset.store import Dataset
from features.pipelines.snapshots import fingerprint
from serving.models import pyfunc_model, registry
from serving.models.base import MemberModel
from serving.models.kinds import ModelKind, Task
from training.choosing import Judgement
from training.gate import HeldOutPredictions
from training.trainer import Evaluation, Fitted, HeldOut, TrainSettings

# The per-member held-out predictions a run was judged on, kept with it so `promote` bootstraps the same gate.
PREDICTIONS_ARTIFACT = "held_out_predictions.npz"
# What an uplift model was trained on, logged with its run so that `promote` judges it on the same campaign.
CAMPAIGN_SETTINGS = ("campaign", "outcome", "treatment_arm", "control_arm")


def log_run(
    client: Any,
    dataset: Dataset,
    kind: ModelKind,
    settings: TrainSettings,
    as_of: date,
    held_out: HeldOut,
    chosen: tuple[str, str],
    judged: dict[str, dict[str, Any]],
    tuning: tuple[str, pd.DataFrame],
    evaluation: Evaluation,
    judgement: Judgement,
    fitted: Fitted,
) -> tuple[str, str]:
    """Logs the run and registers its model; returns (the run's id, the registered version). `chosen`: the
    candidate family and why; `tuning`: what Optuna was allowed and its trials."""
    family, choice = chosen
    params = judged[family]
    logged = {
        "dataset": dataset.name,
        "kind": kind.name,
        "family": family,
        "data_fingerprint": fingerprint(dataset),
        "as_of": str(as_of),
        "horizon_days": settings.horizon_days,
        "training_cutoffs_count": settings.training_cutoffs,
        "k": settings.k,
        "split": settings.split,
        **({f: getattr(settings, f) for f in CAMPAIGN_SETTINGS if getattr(settings, f)} if settings.campaign else {}),
        "tuning": tuning[0],
        "seed": settings.seed,
        "params": json.dumps(params, sort_keys=True),
        "judged_params": json.dumps(judged, sort_keys=True),  # what every family was judged with
        **held_out.params(),
        **fitted.params,
    }
    promoted_tag = str(judgement.verdict.passed and settings.promote)
    experiment_id = registry.experiment(client, dataset.home, kind.registered_name(dataset.name))
    run_name = f"{kind.registered_name(dataset.name)} {family} {as_of}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags({"dataset": dataset.name, "kind": kind.name, "family": family, "promoted": promoted_tag})
        mlflow.log_params({**logged, **{f"param.{k}": v for k, v in params.items()}})
        _log_evaluation(evaluation.scores[family], judgement, evaluation.rows, choice)
        mlflow.log_dict(fitted.model.summary(), "model_summary.json")
        if not tuning[1].empty:
            mlflow.log_text(tuning[1].to_csv(index=False), "optuna_trials.csv")
        info = _log_model(fitted, kind, dataset.name)
    return run.info.run_id, str(info.registered_model_version)


def _log_evaluation(metrics: dict[str, float], judgement: Judgement, rows: list[dict[str, Any]], choice: str) -> None:
    verdict, rivals, evidence = judgement.verdict, judgement.rivals, judgement.evidence
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    mlflow.log_metrics({f"rival_{_slug(r)}_{k}": v for r, values in rivals.items() for k, v in values.items()})
    mlflow.log_dict(rivals, "rivals.json")
    mlflow.log_dict({"rows": rows}, "backtest.json")
    mlflow.log_dict(
        {
            "passed": verdict.passed,
            "reasons": verdict.reasons,
            "choice": choice,
            "comparisons": [c.row() for c in verdict.comparisons],
        },
        "promotion.json",
    )
    if evidence is not None and evidence.cutoffs:  # what `promote` bootstraps the same comparisons from
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / PREDICTIONS_ARTIFACT
            evidence.save(path)
            mlflow.log_artifact(str(path))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def _log_model(fitted: Fitted, kind: ModelKind, dataset: str) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = fitted.model.save(Path(tmp))
        signature = None
        if isinstance(fitted.model, MemberModel):
            with warnings.catch_warnings():
                # MLflow warns that integer columns cannot hold missing values; snapshot counts are zero-filled,
                # never missing, and declaring them float would make MLflow refuse the snapshot's int64 columns.
                warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
                prediction = pd.Series(fitted.model.predict(fitted.example), name="prediction")
                signature = infer_signature(fitted.example, prediction)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(pyfunc_model.__file__)),
                artifacts=artifacts,
                signature=signature,
                input_example=fitted.example,
                registered_model_name=kind.registered_name(dataset),
                # Named, not inferred: inference would load the model in a subprocess on every training run.
                pip_requirements=[f"mlflow=={mlflow.__version__}", *_requirements(kind)],
            )


def _requirements(kind: ModelKind) -> list[str]:
    from importlib.metadata import version

    library = "lightgbm" if kind.task is Task.member else "implicit"
    return [f"{library}=={version(library)}", f"pandas=={pd.__version__}"]


class LoggedRun:
    """A registered version's run as `promote` reads it back: its candidate's metrics, its rivals, its settings
    and what every family was judged with, on which held-out data."""

    def __init__(self, client: Any, dataset: str, kind: ModelKind, version: str) -> None:
        name = kind.registered_name(dataset)
        run = client.get_run(client.get_model_version(name, version).run_id)
        self.run_id = run.info.run_id
        params, metrics = run.data.params, run.data.metrics
        self.family = params.get("family", kind.family)
        self.metrics = {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
        try:
            rivals = json.loads(Path(client.download_artifacts(self.run_id, "rivals.json")).read_text())
        except MlflowException as exc:
            raise DataError(
                f"{name} version {version} has no recorded rivals (run {self.run_id}); it cannot be judged on "
                f"the same held-out data: train it again with `{kind.train_command(dataset)}`"
            ) from exc
        self.rivals = {r: m for r, m in rivals.items() if not r.startswith("champion")}  # today's is re-judged
        self.settings = TrainSettings(
            horizon_days=int(params["horizon_days"]),
            training_cutoffs=int(params["training_cutoffs_count"]),
            k=int(params["k"]),
            seed=int(params["seed"]),
            split=params.get("split", "time"),
            **{f: params[f] for f in CAMPAIGN_SETTINGS if f in params},
        )
        self.judged = json.loads(params.get("judged_params", "{}")) or {self.family: json.loads(params["params"])}
        self.held_out = HeldOut.from_params(params)
        self.evidence = logged_predictions(client, self.run_id)

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """Every family the run judged, the candidate's own figures included."""
        return {**self.rivals, self.family: self.metrics}


def logged_predictions(client: Any, run_id: str) -> HeldOutPredictions | None:
    """The per-member held-out predictions a run logged (None: a run of a kind that keeps none, or older)."""
    try:
        return HeldOutPredictions.load(Path(client.download_artifacts(run_id, PREDICTIONS_ARTIFACT)))
    except (MlflowException, OSError):
        return None
