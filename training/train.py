"""The training job: tune on validation cutoffs, judge on held-out cutoffs, fit, log to MLflow, promote or not.

Cutoffs, newest first, for a model that scores members as of T (horizon H, monthly steps):
- the final model trains on T-H, T-H-30, ... (labels that end by T);
- held-out test cutoffs T-H, T-H-30, ... (`test_cutoffs` of them) judge it: for each, a model trained on the
  cutoffs before it scores it, beside the baselines and the current champion's configuration;
- validation cutoffs, older than every test cutoff, are all that Optuna ever sees.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from pydantic import BaseModel, ConfigDict, Field

from features import pyfunc_model
from features.errors import DataError
from features.progress import say, step
from features.scoring import MemberScorer, ModelKind
from features.snapshots import dataset_span, fingerprint, resolve_as_of
from features.store import Dataset
from training import registry
from training.backtest import BacktestReport, BacktestSettings, backtest
from training.frames import stacked, training_cutoffs
from training.models import FITTERS, importance
from training.tuning import tune

# What a candidate must beat every rival on: higher is better unless marked "lower".
GATE: dict[str, tuple[tuple[str, str], ...]] = {
    "churn": (("roc_auc", "higher"),),
    "value": (("rmse", "lower"), ("normalized_gini", "higher")),
    "product-recs": (("precision", "higher"), ("ndcg", "higher")),
    "content-recs": (("precision", "higher"), ("ndcg", "higher")),
}
STEP_DAYS = 30


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: date | None = Field(None, description="score members as of this date; default: the day after the data")
    horizon_days: int = Field(90, ge=7, le=365)
    training_cutoffs: int = Field(6, ge=1, le=36)
    test_cutoffs: int = Field(3, ge=1, le=12, description="held-out cutoffs that judge the candidate")
    validation_cutoffs: int = Field(2, ge=1, le=12, description="cutoffs Optuna tunes on (older than the tests)")
    trials: int = Field(0, ge=0, le=500, description="Optuna trials; 0 keeps the default parameters")
    seed: int = 0
    promote: bool = Field(True, description="move the champion alias when the candidate passes the gate")


class RunResult(BaseModel):
    """What a training run did: the registered version, whether it became champion, and against what."""

    dataset: str
    as_of: date
    version: str
    run_id: str
    promoted: bool
    reasons: list[str]
    metrics: dict[str, float]
    rivals: dict[str, dict[str, float]]
    params: dict[str, Any]
    seconds: float


class TrainResult(RunResult):
    kind: ModelKind
    test_cutoffs: list[date]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]


def gate(kind: str, candidate: dict[str, float], rivals: dict[str, dict[str, float]]) -> Verdict:
    """Passes only if the candidate beats every rival (baselines and champion) on every gate metric."""
    reasons = []
    for rival, metrics in rivals.items():
        for metric, better in GATE[str(kind)]:
            ours, theirs = candidate[metric], metrics[metric]
            if not (ours > theirs if better == "higher" else ours < theirs):
                reasons.append(f"{metric} {ours:.4f} does not beat {rival} ({theirs:.4f})")
    return Verdict(not reasons, reasons)


def monthly_cutoffs(newest: date, count: int) -> list[date]:
    return [newest - timedelta(days=STEP_DAYS * k) for k in range(count)]


def plan_cutoffs(dataset: Dataset, settings: TrainSettings, as_of: date) -> tuple[list[date], list[date]]:
    """(test cutoffs, validation cutoffs): each needs a usable training cutoff (30 days of history) before it."""
    first = dataset_span(dataset)[0].date()
    earliest = first + timedelta(days=30 + settings.horizon_days)
    tests = [
        c
        for c in monthly_cutoffs(as_of - timedelta(days=settings.horizon_days), settings.test_cutoffs)
        if c >= earliest
    ]
    if not tests:
        raise DataError(
            f"{dataset.name}: not enough history before {as_of} for a held-out test cutoff with a "
            f"{settings.horizon_days}-day horizon (the data starts {first}); choose a later --as-of or a shorter "
            "--horizon-days"
        )
    validation = [
        c for c in monthly_cutoffs(min(tests) - timedelta(days=STEP_DAYS), settings.validation_cutoffs) if c >= earliest
    ]
    return sorted(tests), sorted(validation)


def _rivals(report: BacktestReport) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    means = report.mean_by_method().drop(columns=["train_rows", "test_members"])
    table = {str(m): {k: float(v) for k, v in row.dropna().items()} for m, row in means.iterrows()}
    return table.pop("lightgbm"), table


def _champion_metrics(
    dataset: Dataset, kind: ModelKind, client: Any, settings: BacktestSettings, candidate: dict[str, float]
) -> tuple[str, dict[str, float]] | None:
    """The current champion's configuration, re-trained and scored on the candidate's own test cutoffs."""
    current = registry.champion(client, kind.value)
    if current is None:
        return None
    logged = registry.run_params(client, current)
    params = json.loads(logged.get("lgb_params", "{}"))
    name = f"champion v{current.version}"
    if params == settings.params and logged.get("data_fingerprint") == fingerprint(dataset):
        return name, candidate  # same configuration, same data: the backtest would repeat itself exactly
    with step(f"re-scoring champion version {current.version} on the same cutoffs"):
        report = backtest(dataset, kind, settings.model_copy(update={"params": params}))
    return name, _rivals(report)[0]


def _log_model(scorer: MemberScorer, example: pd.DataFrame, kind: ModelKind) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = scorer.save(Path(tmp))
        with warnings.catch_warnings():
            # MLflow warns that integer columns cannot hold missing values; snapshot counts are zero-filled,
            # never missing, and declaring them float would make MLflow refuse the snapshot's own int64 columns.
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
            signature = infer_signature(example, pd.Series(scorer.predict(example), name="prediction"))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(pyfunc_model.__file__)),
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            registered_model_name=kind.value,
            # Named, not inferred: inference would load the model in a subprocess on every training run.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"lightgbm=={_version('lightgbm')}",
                f"pandas=={pd.__version__}",
            ],
        )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def train(dataset: Dataset, kind: ModelKind, settings: TrainSettings) -> TrainResult:
    started = time.perf_counter()
    dataset.require()
    as_of = resolve_as_of(dataset, settings.as_of)
    tests, validation = plan_cutoffs(dataset, settings, as_of)
    client = registry.connect(dataset.home)
    experiment_id = registry.experiment(client, dataset.home, f"{kind.value}")
    say(f"{kind.value} as of {as_of}: test cutoffs {', '.join(map(str, tests))}")

    params: dict[str, Any] = {}
    trials = pd.DataFrame()
    if settings.trials:
        if not validation:
            raise DataError(f"{dataset.name}: no validation cutoff older than the test cutoffs to tune on")
        with step(f"tuning with {settings.trials} Optuna trials on {', '.join(map(str, validation))}"):
            params, trials = tune(
                dataset,
                kind,
                validation,
                trials=settings.trials,
                horizon_days=settings.horizon_days,
                training_cutoffs=settings.training_cutoffs,
                seed=settings.seed,
                study_name=f"{dataset.name}-{kind.value}-{as_of}-{int(time.time())}",
            )

    evaluation = BacktestSettings(
        cutoffs=tests,
        horizon_days=settings.horizon_days,
        training_cutoffs=settings.training_cutoffs,
        seed=settings.seed,
        params=params,
    )
    report = backtest(dataset, kind, evaluation)
    metrics, rivals = _rivals(report)
    champion = _champion_metrics(dataset, kind, client, evaluation, metrics)
    if champion is not None:
        rivals[champion[0]] = champion[1]
    verdict = gate(kind, metrics, rivals)

    with step(f"fitting the {kind.value} model that scores members as of {as_of}"):
        final_cutoffs = training_cutoffs(as_of, settings.horizon_days, settings.training_cutoffs)
        data = stacked(dataset, final_cutoffs, settings.horizon_days)
        scorer = FITTERS[kind](data, params, settings.seed, settings.horizon_days)

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{kind.value} {dataset.name} {as_of}") as run:
        mlflow.set_tags(
            {"dataset": dataset.name, "kind": kind.value, "promoted": str(verdict.passed and settings.promote)}
        )
        mlflow.log_params(
            {
                "dataset": dataset.name,
                "data_fingerprint": fingerprint(dataset),
                "as_of": str(as_of),
                "horizon_days": settings.horizon_days,
                "training_cutoffs": ",".join(str(c) for c in sorted(final_cutoffs)),
                "test_cutoffs": ",".join(map(str, tests)),
                "validation_cutoffs": ",".join(map(str, validation)),
                "trials": settings.trials,
                "seed": settings.seed,
                "lgb_params": json.dumps(params, sort_keys=True),
                **{f"lgb.{k}": v for k, v in params.items()},
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_metrics(
            {f"rival_{_slug(rival)}_{k}": v for rival, values in rivals.items() for k, v in values.items()}
        )
        mlflow.log_dict({"rows": report.rows}, "backtest.json")
        mlflow.log_dict(importance(scorer), "feature_importance.json")
        mlflow.log_dict({"passed": verdict.passed, "reasons": verdict.reasons}, "promotion.json")
        baselines = {name: values for name, values in rivals.items() if not name.startswith("champion")}
        mlflow.log_dict(baselines, "baselines.json")
        if not trials.empty:
            mlflow.log_text(trials.to_csv(index=False), "optuna_trials.csv")
        info = _log_model(scorer, data.frame[scorer.spec.columns].head(5), kind)
    version = str(info.registered_model_version)

    promoted, reasons = registry.conclude(client, kind.value, version, verdict.reasons, settings.promote)
    return TrainResult(
        kind=kind,
        dataset=dataset.name,
        as_of=as_of,
        version=version,
        run_id=run.info.run_id,
        promoted=promoted,
        reasons=reasons,
        metrics=metrics,
        rivals=rivals,
        params=params,
        test_cutoffs=tests,
        seconds=round(time.perf_counter() - started, 1),
    )


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


class PromotionResult(BaseModel):
    kind: ModelKind
    version: str
    promoted: bool
    reasons: list[str]


def promote(home: Any, kind: ModelKind, version: str | None = None) -> PromotionResult:
    """Runs the gate again for a registered version (default: the newest) against today's champion.

    The candidate keeps the held-out metrics and baselines logged with it; the champion's configuration is
    re-trained and scored on the candidate's own test cutoffs, so both are judged on the same members.
    """
    client = registry.connect(home)
    versions = client.search_model_versions(f"name='{kind.value}'")
    if not versions:
        raise DataError(f"no {kind.value} model is registered yet; train one with `community-ml train {kind.value}`")
    chosen = str(version or max(int(v.version) for v in versions))
    if chosen not in {str(v.version) for v in versions}:
        known = ", ".join(sorted((str(v.version) for v in versions), key=int))
        raise DataError(f"{kind.value} has no version {chosen} (registered versions: {known})")
    current = registry.champion(client, kind.value)
    if current is not None and str(current.version) == chosen:
        return PromotionResult(kind=kind, version=chosen, promoted=True, reasons=[])
    run = client.get_run(client.get_model_version(kind.value, chosen).run_id)
    params, metrics = run.data.params, run.data.metrics
    candidate = {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
    try:
        rivals = json.loads(Path(client.download_artifacts(run.info.run_id, "baselines.json")).read_text())
    except MlflowException as exc:
        raise DataError(
            f"{kind.value} version {chosen} has no recorded baselines (run {run.info.run_id}); it cannot be judged "
            f"on the same cutoffs: train it again with `community-ml train {kind.value}`"
        ) from exc
    settings = BacktestSettings(
        cutoffs=[date.fromisoformat(c) for c in params["test_cutoffs"].split(",")],
        horizon_days=int(params["horizon_days"]),
        training_cutoffs=len(params["training_cutoffs"].split(",")),
        seed=int(params["seed"]),
        params=json.loads(params["lgb_params"]),
    )
    champion = _champion_metrics(Dataset(home, params["dataset"]), kind, client, settings, candidate)
    if champion is not None:
        rivals[champion[0]] = champion[1]
    verdict = gate(kind, candidate, rivals)
    reasons = verdict.reasons or [problem for problem in [registry.unloadable(kind.value, chosen)] if problem]
    if not reasons:
        registry.set_champion(client, kind.value, chosen)
    return PromotionResult(kind=kind, version=chosen, promoted=not reasons, reasons=reasons)
