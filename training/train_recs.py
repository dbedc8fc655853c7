"""Training the product and content recommenders: tune on a validation split, judge on the last horizon,
register in MLflow, promote through the same gate as the member models.

For a recommender that serves as of T (horizon H): the test split trains on interactions before T-H and tests
on [T-H, T); the validation split that Optuna sees trains before T-2H and tests on [T-2H, T-H); the final
model is fitted on everything before T.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from features import pyfunc_recs_model
from features.progress import say, step
from features.recommending import Recommender, RecsKind, RecsSpec
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot, fingerprint, resolve_as_of
from features.store import Dataset
from training import registry
from training.recs_eval import ALS_DEFAULTS, Split, als, compare, fit_als, item_cosine, popular, time_split
from training.train import RunResult, gate

RANK_SWEEP = (64, 16, 32, 128)
# Repeat buying is normal in retail; content already read is not worth pushing again.
EXCLUDE_SEEN = {RecsKind.products: False, RecsKind.contents: True}


class RecsTrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: date | None = None
    horizon_days: int = Field(90, ge=7, le=365)
    trials: int = Field(0, ge=0, le=500)
    k: int = Field(10, ge=1, le=100)
    seed: int = 0
    promote: bool = True


class RecsTrainResult(RunResult):
    kind: RecsKind


def suggest(trial: optuna.Trial, repeats: bool) -> dict[str, Any]:
    """ALS parameters to try; the repeat boost only matters for lists that may hold the member's own items."""
    params = {
        "factors": trial.suggest_int("factors", 16, 256, log=True),
        "regularization": trial.suggest_float("regularization", 1e-3, 1.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.1, 10.0, log=True),
        "iterations": trial.suggest_int("iterations", 10, 40),
        "bm25_k1": trial.suggest_float("bm25_k1", 1.0, 1000.0, log=True),
        "bm25_b": trial.suggest_float("bm25_b", 0.0, 1.0),
    }
    if repeats:
        params["repeat_weight"] = trial.suggest_float("repeat_weight", 0.0, 16.0)
    return params


def _score(
    split: Split, params: dict[str, Any], kind: RecsKind, k: int, seed: int, exclude_seen: bool | None = None
) -> dict[str, float]:
    mode = EXCLUDE_SEEN[kind] if exclude_seen is None else exclude_seen
    row = compare(split, {"als": als(params, seed)}, k=k, modes=(mode,))[0]
    return {key: float(v) for key, v in row.items() if isinstance(v, float)}


def tune_als(
    split: Split, kind: RecsKind, trials: int, k: int, seed: int, exclude_seen: bool | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Best ALS parameters by precision@k on the validation split (never the test split), for lists with or
    without the member's own items (default: the kind's)."""
    mode = EXCLUDE_SEEN[kind] if exclude_seen is None else exclude_seen
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    # A coarse sweep of the rank first, the parameter that matters most (16 factors suit the synthetic
    # community's few personas, 64 Online Retail's wide catalogue); TPE then searches around the best.
    for factors in RANK_SWEEP[:trials]:
        study.enqueue_trial({**ALS_DEFAULTS, "factors": factors}, skip_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        params = {**ALS_DEFAULTS, **suggest(trial, repeats=not mode)}
        precision = _score(split, params, kind, k, seed, mode)["precision"]
        say(f"  trial {trial.number + 1}/{trials}: precision@{k} {precision:.4f}")
        return precision

    study.optimize(objective, n_trials=trials)
    return {**ALS_DEFAULTS, **study.best_params}, study.trials_dataframe()


def item_attributes(dataset: Dataset, kind: RecsKind) -> pd.DataFrame:
    """What the business rules need per item: active and category (products), content type (contents)."""
    if kind is RecsKind.products:
        frame = dataset.read("products", ["product_id", "active", "category"]).rename(columns={"product_id": "item_id"})
    else:
        frame = dataset.read("contents", ["content_id", "content_type"]).rename(columns={"content_id": "item_id"})
    return frame.drop_duplicates("item_id").set_index("item_id")


def member_segments(dataset: Dataset) -> dict[str, str]:
    """Each member's cold-start segment: their persona where known, else the first group they joined."""
    segments: dict[str, str] = {}
    if dataset.has("engagements"):
        joins = dataset.read("engagements", ["member_id", "ts", "action", "group_id"])
        joins = joins[(joins["action"] == "join_group") & joins["group_id"].notna()].sort_values("ts", kind="stable")
        segments |= {
            m: f"group:{g}"
            for m, g in joins.drop_duplicates("member_id")[["member_id", "group_id"]].itertuples(index=False)
        }
    if dataset.has("members"):
        personas = dataset.read("members", ["member_id", "persona"]).dropna()
        segments |= {m: f"persona:{p}" for m, p in personas.itertuples(index=False)}
    return segments


def segment_popularity(
    matrix: sp.csr_matrix, member_ids: np.ndarray, segments: dict[str, str]
) -> dict[str, np.ndarray]:
    """Members per item within each segment that has at least 20 members with history."""
    labels = pd.Series([segments.get(str(m)) for m in member_ids])
    out = {}
    for segment, rows in labels.dropna().groupby(labels.dropna()).groups.items():
        if len(rows) >= 20:
            out[str(segment)] = np.asarray((matrix[np.asarray(rows)] > 0).sum(axis=0)).ravel().astype(np.float32)
    return out


def fit_recommender(dataset: Dataset, kind: RecsKind, as_of: date, params: dict[str, Any], seed: int) -> Recommender:
    """ALS on everything before `as_of`, with the popularity order for cold start and the items' attributes."""
    build_snapshot(dataset, SnapshotSettings(as_of=as_of))
    interactions = Snapshot(dataset, as_of).interactions(kind.matrix)
    model = fit_als(interactions.matrix.tocsr(), params, seed)
    popularity = np.diff(interactions.matrix.tocsc().indptr).astype(np.float32)
    segments = member_segments(dataset)
    return Recommender(
        RecsSpec(
            kind=kind,
            als_params={**ALS_DEFAULTS, **params},
            exclude_seen_default=EXCLUDE_SEEN[kind],
            interactions="counts",
        ),
        np.asarray(model.user_factors),
        np.asarray(model.item_factors),
        interactions.matrix.tocsr(),
        interactions.member_ids,
        interactions.item_ids,
        popularity,
        item_attributes(dataset, kind),
        segment_popularity(interactions.matrix.tocsr(), interactions.member_ids, segments),
        # Only members without history need a segment: everyone else is served from their own factors.
        {m: s for m, s in segments.items() if m not in set(interactions.member_ids.tolist())},
    )


def train_recs(dataset: Dataset, kind: RecsKind, settings: RecsTrainSettings) -> RecsTrainResult:
    started = time.perf_counter()
    dataset.require()
    as_of = resolve_as_of(dataset, settings.as_of)
    horizon = timedelta(days=settings.horizon_days)
    client = registry.connect(dataset.home)
    experiment_id = registry.experiment(client, dataset.home, kind.value)
    exclude_seen = EXCLUDE_SEEN[kind]

    params: dict[str, Any] = dict(ALS_DEFAULTS)
    trials = pd.DataFrame()
    if settings.trials:
        with step(f"tuning ALS with {settings.trials} Optuna trials on the split at {as_of - 2 * horizon}"):
            validation = time_split(dataset, kind.matrix, as_of - 2 * horizon, settings.horizon_days)
            params, trials = tune_als(validation, kind, settings.trials, settings.k, settings.seed)

    with step(f"judging on the split at {as_of - horizon} beside the baselines"):
        split = time_split(dataset, kind.matrix, as_of - horizon, settings.horizon_days)
        methods = {"ALS": als(params, settings.seed), "most popular": popular, "item-item cosine": item_cosine()}
        rows = {
            r["method"]: {k: float(v) for k, v in r.items() if isinstance(v, float)}
            for r in compare(split, methods, k=settings.k, modes=(exclude_seen,))
        }
        metrics = rows.pop("ALS")
        rivals = dict(rows)
        current = registry.champion(client, kind.value)
        if current is not None:
            logged = registry.run_params(client, current)
            champion_params = json.loads(logged.get("als_params", "{}"))
            same = champion_params == params and logged.get("data_fingerprint") == fingerprint(dataset)
            rivals[f"champion v{current.version}"] = (
                metrics if same else _score(split, champion_params, kind, settings.k, settings.seed)
            )
    verdict = gate(kind.value, metrics, rivals)

    with step(f"fitting the {kind.value} model on everything before {as_of}"):
        recommender = fit_recommender(dataset, kind, as_of, params, settings.seed)

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{kind.value} {dataset.name} {as_of}") as run:
        mlflow.set_tags({"dataset": dataset.name, "kind": kind.value})
        mlflow.log_params(
            {
                "dataset": dataset.name,
                "data_fingerprint": fingerprint(dataset),
                "as_of": str(as_of),
                "horizon_days": settings.horizon_days,
                "test_split_at": str(as_of - horizon),
                "k": settings.k,
                "exclude_seen": exclude_seen,
                "trials": settings.trials,
                "seed": settings.seed,
                "als_params": json.dumps(params, sort_keys=True),
                **{f"als.{k}": v for k, v in params.items()},
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_dict(rivals, "rivals.json")
        mlflow.log_dict({"passed": verdict.passed, "reasons": verdict.reasons}, "promotion.json")
        if not trials.empty:
            mlflow.log_text(trials.to_csv(index=False), "optuna_trials.csv")
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # The output's rank column is an integer that is never missing: MLflow's hint does not apply.
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(pyfunc_recs_model.__file__)),
                artifacts=recommender.save(Path(tmp)),
                input_example=pd.DataFrame({"member_id": recommender.member_ids[:3].astype(str)}),
                registered_model_name=kind.value,
                pip_requirements=[f"mlflow=={mlflow.__version__}", "implicit", f"pandas=={pd.__version__}"],
            )
    version = str(info.registered_model_version)
    promoted, reasons = registry.conclude(client, kind.value, version, verdict.reasons, settings.promote)
    return RecsTrainResult(
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
        seconds=round(time.perf_counter() - started, 1),
    )
