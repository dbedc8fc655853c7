"""Fitting and tuning recommenders (item kinds): each item family's factors on a snapshot's interaction matrix
(ALS, BPR, item neighbours, EASE, or the popularity baselines), with what the served model needs beside them (item
attributes for the rules, popularity by segment for cold start); Optuna's search space for each learned family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp

from features.progress import say
from features.snapshots import Snapshot, SnapshotSettings, build_snapshot
from features.store import Dataset
from serving.models.base import ItemModel
from serving.models.families.factors import ITEM_FAMILIES, REPEATS_ONLY, FactorRecommender, RecsSpec
from serving.models.kinds import ModelKind
from training.recs_eval import (
    FACTORIZERS,
    FAMILY_DEFAULTS,
    Recommend,
    Split,
    compare,
    factor_method,
)


def suggest_als(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 256, log=True),
        "regularization": trial.suggest_float("regularization", 1e-3, 1.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.1, 10.0, log=True),
        "iterations": trial.suggest_int("iterations", 10, 40),
        "bm25_k1": trial.suggest_float("bm25_k1", 1.0, 1000.0, log=True),
        "bm25_b": trial.suggest_float("bm25_b", 0.0, 1.0),
    }


def suggest_bpr(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 256, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
        "iterations": trial.suggest_int("iterations", 30, 300, log=True),
    }


def suggest_item_knn(trial: optuna.Trial) -> dict[str, Any]:
    params: dict[str, Any] = {
        "weighting": trial.suggest_categorical("weighting", ["bm25", "cosine"]),
        "neighbours": trial.suggest_int("neighbours", 5, 400, log=True),
    }
    if params["weighting"] == "bm25":
        params["bm25_k1"] = trial.suggest_float("bm25_k1", 0.1, 100.0, log=True)
        params["bm25_b"] = trial.suggest_float("bm25_b", 0.0, 1.0)
    return params


def suggest_ease(trial: optuna.Trial) -> dict[str, Any]:
    return {"l2": trial.suggest_float("l2", 1.0, 1e5, log=True)}


# What Optuna searches per family; the popularity baselines have nothing to tune.
SEARCH_SPACES: dict[str, Callable[[optuna.Trial], dict[str, Any]]] = {
    "als": suggest_als,
    "bpr": suggest_bpr,
    "item-knn": suggest_item_knn,
    "ease": suggest_ease,
}
# Where each search starts, before TPE: the defaults, then a coarse sweep of the parameter that matters most (for
# ALS the rank: 16 factors suit the synthetic community's few personas, 64 Online Retail's wide catalogue).
STARTS: dict[str, list[dict[str, Any]]] = {
    "als": [{"factors": f} for f in (64, 16, 32, 128)],
    "bpr": [{"factors": f} for f in (64, 16, 128)],
    "item-knn": [{}, {"weighting": "cosine", "neighbours": 100}, {"neighbours": 100}],
    "ease": [{"l2": v} for v in (500.0, 50.0, 5000.0)],
}


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
    (a trial under way is finished; the family's defaults are always the first trial, so tuning never does worse
    on validation than not tuning).

    The objective is precision@k of every kind of list the gate judges (`modes`: whether each leaves out the
    member's own items), added, so that tuning seeks what the gate asks for rather than trading one list for the
    other."""
    defaults = FAMILY_DEFAULTS[family]
    repeats = False in modes
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    first = _searched(defaults, family)
    if repeats:
        first["repeat_weight"] = float(defaults.get("repeat_weight", 0.0))
    for start in STARTS[family][: trials or None]:
        study.enqueue_trial({**first, **start}, skip_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        params = {**defaults, **SEARCH_SPACES[family](trial)}
        if repeats:  # the repeat boost only matters for lists that may hold the member's own items
            params["repeat_weight"] = trial.suggest_float("repeat_weight", 0.0, 16.0)
        method = factor_method(family, params, seed)
        precision = [row["precision"] for row in compare(split, {family: method}, k=k, modes=modes)]
        say(f"  {family} trial {trial.number + 1}: precision@{k} " + " + ".join(f"{p:.4f}" for p in precision))
        return float(sum(precision))

    study.optimize(objective, n_trials=trials, timeout=seconds)
    frame = study.trials_dataframe()
    frame.insert(0, "family", family)
    return {**defaults, **study.best_params}, frame


def _searched(defaults: dict[str, Any], family: str) -> dict[str, Any]:
    """The defaults of the parameters a family's search suggests (an enqueued trial fixes only those)."""
    probe = optuna.trial.FixedTrial(defaults)
    return {name: defaults[name] for name in SEARCH_SPACES[family](probe) if name in defaults}


def item_attributes(dataset: Dataset, kind: ModelKind) -> pd.DataFrame:
    """What the business rules need per item: active and category (products), content type (contents)."""
    assert kind.items is not None
    table = kind.items.matrix
    wanted = [c for c in (kind.items.id_column, "active", kind.items.category_column) if c in dataset.read(table)]
    frame = dataset.read(table, wanted).rename(columns={kind.items.id_column: "item_id"})
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


def fit_recommender(
    dataset: Dataset, kind: ModelKind, as_of: date, params: dict[str, Any], seed: int, family: str = "als"
) -> FactorRecommender:
    """The family's factors on everything before `as_of`, with the popularity order for cold start and the items'
    attributes."""
    assert kind.items is not None
    build_snapshot(dataset, SnapshotSettings(as_of=as_of))
    interactions = Snapshot(dataset, as_of).interactions(kind.items.matrix)
    matrix = interactions.matrix.tocsr()
    p = {**FAMILY_DEFAULTS[family], **params}
    user_factors, item_factors = FACTORIZERS[family](matrix, p, seed)
    segments = member_segments(dataset)
    with_history = set(interactions.member_ids.tolist())
    return FactorRecommender(
        RecsSpec(
            family=family,
            kind=kind.name,
            params=p,
            exclude_seen_default=kind.exclude_seen,
            category_column=kind.items.category_column,
        ),
        # Neighbour families score a member from their own row of the matrix: no member factors to keep.
        np.zeros((0, 0), dtype=np.float32) if user_factors is None else user_factors,
        item_factors,
        matrix,
        interactions.member_ids,
        interactions.item_ids,
        np.diff(matrix.tocsc().indptr).astype(np.float32),
        item_attributes(dataset, kind),
        segment_popularity(matrix, interactions.member_ids, segments),
        # Only members without history need a segment: everyone else is served from their own factors.
        {m: s for m, s in segments.items() if m not in with_history},
    )


@dataclass(frozen=True)
class ItemFitter:
    """How the training job handles one item family: its default parameters, the family ranking a split's test
    members (to judge it), whether Optuna tunes it, and the fit of the model that serves."""

    defaults: dict[str, Any]
    method: Callable[[dict[str, Any], int], Recommend]  # (params, seed) -> the family as a split's recommender
    tuned: bool
    fit: Callable[[Dataset, ModelKind, date, dict[str, Any], int], ItemModel]


# How each item family is fitted, judged and tuned (the member families' fitters are in training/member_fit.py).
ITEM_FITTERS: dict[str, ItemFitter] = {
    family: ItemFitter(
        FAMILY_DEFAULTS[family],
        partial(factor_method, family),
        family in SEARCH_SPACES,
        partial(fit_recommender, family=family),
    )
    for family in ITEM_FAMILIES
}


def item_families(kind: ModelKind) -> list[str]:
    """Every family that can serve an item kind: its learned family first, then the others in ITEM_FAMILIES'
    order, but for "buy again" where lists hold only items new to the member (there it is most popular)."""
    others = [f for f in ITEM_FAMILIES if f != kind.family and not (kind.exclude_seen and f in REPEATS_ONLY)]
    return [kind.family, *others]
