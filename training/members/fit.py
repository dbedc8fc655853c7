"""Fitting member models (churn, value, any binary or amount kind) on point-in-time features stacked over
cutoffs, for every member family: LightGBM, and the baselines (their calibration); scoring with them lives in
the model runtime (serving/models/families)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import nnls
from sklearn.linear_model import LogisticRegression

from features.common.errors import DataError
from features.pipelines.schema import FEATURES
from serving.models.base import MemberModel
from serving.models.calibration import logit
from serving.models.families.baselines import BASELINES, BaselineModel, BaselineSpec, baselines_of
from serving.models.families.combined import BlendModel, CombinedSpec, TwoPartModel
from serving.models.families.gbm import GBMModel, GBMSpec, categories_of, encode, offset_of
from serving.models.inputs import INPUTS, fit_btyd, with_inputs_by_cutoff
from serving.models.kinds import CHURN, ModelKind, Target
from training.members.frames import LabelledFrame

if TYPE_CHECKING:
    import optuna

# Small trees with large leaves: on Online Retail's few thousand members per cutoff, deeper trees overfit
# (backtest ROC-AUC 0.743 with 31 leaves against 0.753 with 7).
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 1000,
    "learning_rate": 0.02,
    "num_leaves": 7,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}
ANCHORED = {f.name for f in FEATURES if f.anchored}
# The amount baselines a LightGBM value model may start from (its offset): those with nothing to fit.
OFFSETS = ("run-rate", "bgnbd-gamma-gamma")


def lgb_params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    # Row-wise, deterministic histograms: the same data and seed give the same model.
    return {
        **DEFAULT_PARAMS,
        **params,
        "random_state": seed,
        "deterministic": True,
        "force_row_wise": True,
        "n_jobs": 2,
        "verbose": -1,
    }


def _newest(data: LabelledFrame) -> pd.Series:
    """The newest cutoff's rows: what early stopping, calibration and the choice of offset are judged on."""
    cutoff = data.frame["cutoff"]
    return cutoff == cutoff.max()


def _validation_split(data: LabelledFrame, seed: int) -> tuple[pd.Series, pd.Series]:
    """(train, validation) masks: the newest cutoff validates when there are several, else a random fifth."""
    if data.frame["cutoff"].nunique() > 1:
        valid = _newest(data)
    else:
        valid = pd.Series(np.random.default_rng(seed).random(len(data.frame)) < 0.2, index=data.frame.index)
    return ~valid, valid


def _fit(
    estimator: Any, spec: GBMSpec, data: LabelledFrame, target: pd.Series, seed: int, offset: np.ndarray | None
) -> pd.Series:
    """Fits with early stopping on the validation part; returns that part's mask."""
    x = encode(spec, data.frame)
    train, valid = _validation_split(data, seed)
    extra: dict[str, Any] = {}
    if offset is not None:
        extra = {"init_score": offset[train.to_numpy()], "eval_init_score": [offset[valid.to_numpy()]]}
    estimator.fit(
        x[train],
        target[train],
        eval_X=(x[valid],),
        eval_y=(target[valid],),
        callbacks=[lgb.early_stopping(50, verbose=False)],
        **extra,
    )
    return valid


def fit_platt(z: np.ndarray, label: pd.Series) -> tuple[float, float]:
    """(slope, intercept) of Platt scaling (serving/models/calibration.py) of scores `z` against a yes/no label;
    unregularised (C=1e6): two numbers fitted on thousands of members."""
    fitted = LogisticRegression(C=1e6).fit(np.asarray(z, dtype=float).reshape(-1, 1), label)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def _with_inputs(data: LabelledFrame, horizon_days: int) -> LabelledFrame:
    return LabelledFrame(with_inputs_by_cutoff(data.frame, horizon_days))


def _best_offset(data: LabelledFrame, kind: ModelKind, horizon_days: int) -> str:
    """The amount baseline with the lowest RMSE on the newest training cutoff: the one the booster corrects.
    (On CDNOW the BG/NBD + Gamma-Gamma start took the model's Gini from 0.63 to 0.68 at 1997-10-01; on Online
    Retail both starts beat both baselines.)"""
    newest = data.frame[_newest(data)]
    actual = newest[str(kind.label)].clip(lower=0).to_numpy(dtype=float)

    def rmse(family: str) -> float:
        return float(np.sqrt(np.mean((BASELINES[family].score(newest, horizon_days, {}) - actual) ** 2)))

    return min(OFFSETS, key=rmse)


def fit_gbm(
    data: LabelledFrame, kind: ModelKind, params: dict[str, Any] | None = None, seed: int = 0, horizon_days: int = 90
) -> GBMModel:
    """LightGBM on the kind's label, over the snapshot's features that mean the same at every cutoff (not the
    anchored ones: ages) and the model inputs (BG/NBD and Gamma-Gamma outputs, the RFM score), each cutoff's
    inputs fitted on that cutoff's own population.

    Binary kinds (churn): a classifier, then Platt scaling on the newest cutoff, so probabilities mean what they
    say; a logistic map is strictly increasing, so unlike isotonic steps it keeps the ranking (and ROC-AUC).

    Amount kinds (value): a correction of the best baseline's prediction. Spend is zero for many members and
    long-tailed for the rest, so the loss is Tweedie (log link), and the log of the baseline's prediction is the
    starting score (an offset): trees alone cap their predictions at leaf averages and miss the few largest
    buyers, who dominate RMSE, while the baseline already scales with them.
    """
    data = _with_inputs(data, horizon_days)
    spec = _spec(data, kind, horizon_days)
    label = data.frame[str(kind.label)]
    if kind.target is Target.binary:
        y = label.astype(int)
        classifier = lgb.LGBMClassifier(**lgb_params(params or {}, seed))
        valid = _fit(classifier, spec, data, y, seed, offset=None)
        raw = classifier.booster_.predict(encode(spec, data.frame[valid]))
        spec.calibration_slope, spec.calibration_intercept = fit_platt(logit(raw), y[valid])
        return GBMModel(spec, classifier.booster_)
    spec.offset = _best_offset(data, kind, horizon_days)
    regressor = lgb.LGBMRegressor(
        **lgb_params({"objective": "tweedie", "tweedie_variance_power": 1.3, **(params or {})}, seed)
    )
    _fit(regressor, spec, data, label.clip(lower=0), seed, offset_of(spec, data.frame))
    return GBMModel(spec, regressor.booster_)


def _spec(data: LabelledFrame, kind: ModelKind, horizon_days: int) -> GBMSpec:
    """A booster's spec before fitting: every feature that means the same at every cutoff, and the inputs."""
    columns = [c for c in data.feature_columns if c not in ANCHORED]
    return GBMSpec(
        kind=kind.name,
        target=kind.target,
        columns=columns,
        categories=categories_of(data.frame, columns),
        horizon_days=horizon_days,
        btyd=fit_btyd(data.frame[_newest(data)]).params(),
    )


def fit_log_amount(
    data: LabelledFrame, kind: ModelKind, params: dict[str, Any] | None = None, seed: int = 0, horizon_days: int = 90
) -> GBMModel:
    """LightGBM (squared error) on log(1 + amount), turned back into an amount by Duan's smearing estimate: the
    mean of exp(residual) on the validation rows (the newest cutoff), so that the mean of the predictions is not
    the geometric mean's underestimate."""
    data = _with_inputs(data, horizon_days)
    spec = _spec(data, kind, horizon_days)
    target = np.log1p(data.frame[str(kind.label)].clip(lower=0).astype(float))
    regressor = lgb.LGBMRegressor(**lgb_params({"objective": "regression", **(params or {})}, seed))
    valid = _fit(regressor, spec, data, target, seed, offset=None)
    residual = target[valid].to_numpy() - regressor.booster_.predict(encode(spec, data.frame[valid]))
    spec.smearing = float(np.mean(np.exp(residual))) if len(residual) else 1.0
    return GBMModel(spec, regressor.booster_)


def _parts_params(params: dict[str, Any] | None, part: str) -> dict[str, Any]:
    """A combination's parameters for one part: those named `PART_NAME` (how Optuna names them), unprefixed."""
    return {k.removeprefix(f"{part}_"): v for k, v in (params or {}).items() if k.startswith(f"{part}_")}


def fit_two_part(
    data: LabelledFrame, kind: ModelKind, params: dict[str, Any] | None = None, seed: int = 0, horizon_days: int = 90
) -> TwoPartModel:
    """P(buys in the horizon) from LightGBM as churn learns it (calibrated; the chance of buying is one less the
    chance of churning), times a buyer's expected spend from LightGBM on the buyers of every training cutoff."""
    buys = replace(CHURN, name=kind.name)  # saved as the value model's part, reporting as the value model
    # The model inputs (BG/NBD and the RFM score) of every member, as serving computes them from the whole
    # population: the buyers' are not refitted on the buyers alone.
    data = _with_inputs(data, horizon_days)
    churns = fit_gbm(data, buys, _parts_params(params, "buy"), seed, horizon_days)
    buyers = data.frame[~data.frame[str(CHURN.label)].astype(bool)]
    buyers.attrs.update(data.frame.attrs)
    spend = fit_log_amount(LabelledFrame(buyers), kind, _parts_params(params, "spend"), seed, horizon_days)
    spend.spec.btyd = churns.spec.btyd  # the fallback for a population too small to fit on: the same for both
    spec = CombinedSpec(family=TwoPartModel.family, kind=kind.name, parts=["no-purchase", "spend"])
    return TwoPartModel(spec, [churns, spend])


# The families the value blend weighs: the learned ones and the two baselines that are not a plain window.
BLEND_PARTS = ("lightgbm", "two-part", "run-rate-shrunk", "bgnbd-gamma-gamma")


def fit_blend(
    data: LabelledFrame, kind: ModelKind, params: dict[str, Any] | None = None, seed: int = 0, horizon_days: int = 90
) -> BlendModel:
    """Every part fitted on the training cutoffs, then non-negative least squares of the newest training cutoff's
    spend on the parts' predictions for it. Those predictions are out of sample for all that the parts learn
    from many numbers: a booster's trees learn from the older cutoffs only (`_fit`); what the newest cutoff sets
    is one or two numbers of each part alike (when the booster stops, its calibration or smearing, a baseline's
    window), so no part is favoured by being judged where it learned. Never a held-out cutoff: the weights are
    part of the model the backtest judges. With one training cutoff there is nothing out of sample to weigh on:
    the parts weigh alike.

    (Until issue 31 each part was fitted a second time on the cutoffs before the newest to weigh on: three more
    booster fits a blend, half of `train value`'s, for weights within their noise on Online Retail and CDNOW:
    experiments/results/churn_value.md.)"""
    newest = _newest(data)
    parts = list(BLEND_PARTS)
    models = [fitted(f, data, kind, {}, seed, horizon_days) for f in parts]
    if newest.all():
        weights, note = np.full(len(parts), 1 / len(parts)), "one training cutoff: equal weights"
    else:
        test = data.frame[newest].reset_index(drop=True)
        predicted = np.column_stack([model.predict(test) for model in models])
        actual = test[str(kind.label)].clip(lower=0).to_numpy(float)
        weights, _ = nnls(predicted, actual)
        note = f"non-negative least squares on {len(test):,} members of the newest training cutoff"
        if not weights.any():
            weights, note = np.full(len(parts), 1 / len(parts)), "no part fitted the newest cutoff: equal weights"
    spec = CombinedSpec(
        family=BlendModel.family, kind=kind.name, parts=parts, weights=[float(w) for w in weights], note=note
    )
    return BlendModel(spec, models)


# Recent fits, so that a blend's parts fitted on the same frame as the families judged beside it (a backtest's
# cutoff) are not fitted twice: fits are deterministic for the same data, parameters and seed. An entry holds
# its frame (so a key is never reused for another frame with the same id): as few are kept as one blend needs,
# so no more than one training frame outlives its use.
_RECENT: list[tuple[tuple[Any, ...], pd.DataFrame, MemberModel]] = []
RECENT_FITS = len(BLEND_PARTS)


def fitted(
    family: str, data: LabelledFrame, kind: ModelKind, params: dict[str, Any], seed: int, horizon_days: int
) -> MemberModel:
    """The family fitted on `data`, or the same fit made a moment ago."""
    key = (family, kind.name, json.dumps(params, sort_keys=True, default=str), seed, horizon_days)
    for known, frame, model in _RECENT:
        if known == key and frame is data.frame:
            return model
    model = member_family(family).fit(data, kind, params, seed, horizon_days)
    _RECENT.append((key, data.frame, model))
    del _RECENT[:-RECENT_FITS]
    return model


def fit_baseline(
    data: LabelledFrame,
    kind: ModelKind,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    horizon_days: int = 90,
    *,
    family: str,
) -> BaselineModel:
    """A baseline family: for a yes/no label, Platt scaling of its score on the newest training cutoff, so that
    its probabilities mean what they say; for an amount, whatever the baseline chooses on that cutoff (the shrunk
    run rate's window and prior), or nothing."""
    data = _with_inputs(data, horizon_days)
    newest = data.frame[_newest(data)]
    spec = BaselineSpec(
        family=family,
        kind=kind.name,
        target=kind.target,
        horizon_days=horizon_days,
        btyd=fit_btyd(newest).params(),
    )
    baseline = BASELINES[family]
    if kind.target is Target.binary:
        z = baseline.link(baseline.score(newest, horizon_days, {}))
        spec.calibration_slope, spec.calibration_intercept = fit_platt(z, newest[str(kind.label)].astype(int))
    elif baseline.fit is not None:
        spec.params = baseline.fit(newest, horizon_days, newest[str(kind.label)].clip(lower=0).to_numpy(float))
    return BaselineModel(spec)


MemberFitter = Callable[[LabelledFrame, ModelKind, dict[str, Any], int, int], MemberModel]


def suggest_lightgbm(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.1, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    }


def suggest_two_part(trial: optuna.Trial) -> dict[str, Any]:
    """Each part its own parameters (`buy_...`, `spend_...`): what separates buyers and what sizes their spend
    need not be learned alike."""
    return {f"{part}_{name}": value for part in ("buy", "spend") for name, value in _prefixed(trial, part).items()}


def _prefixed(trial: optuna.Trial, part: str) -> dict[str, Any]:
    return {
        "num_leaves": trial.suggest_int(f"{part}_num_leaves", 4, 63, log=True),
        "min_child_samples": trial.suggest_int(f"{part}_min_child_samples", 10, 300, log=True),
        "learning_rate": trial.suggest_float(f"{part}_learning_rate", 0.005, 0.1, log=True),
        "reg_lambda": trial.suggest_float(f"{part}_reg_lambda", 1e-3, 30.0, log=True),
    }


@dataclass(frozen=True)
class MemberFamily:
    """What training knows of a member family: how it is fitted ((stacked training frames, kind, parameters,
    seed, horizon) -> model), what Optuna searches (None: nothing to tune) and, for a combination, the families
    it is made of (which it must beat to serve). How its saved models load and score is its class's (its
    algorithm: a MemberModel subclass, which registers the family by being defined)."""

    name: str
    fit: MemberFitter
    search: Callable[[optuna.Trial], dict[str, Any]] | None = None
    parts: tuple[str, ...] = ()


# Every member family training can fit, one record each: the learned ones, then the baselines of every target.
MEMBER_FAMILIES: dict[str, MemberFamily] = {
    f.name: f
    for f in (
        MemberFamily(GBMModel.family, fit_gbm, suggest_lightgbm),
        MemberFamily(TwoPartModel.family, fit_two_part, suggest_two_part),
        MemberFamily(BlendModel.family, fit_blend, parts=BLEND_PARTS),
        *(MemberFamily(name, partial(fit_baseline, family=name)) for name in BASELINES),
    )
}


def member_family(name: str) -> MemberFamily:
    """The family's record; a clear error for a name no record has."""
    if name not in MEMBER_FAMILIES:
        raise DataError(f"unknown member family {name!r}; the families are {', '.join(MEMBER_FAMILIES)}")
    return MEMBER_FAMILIES[name]


__all__ = ["INPUTS", "MEMBER_FAMILIES", "MemberFamily", "fit_baseline", "fit_gbm", "lgb_params", "member_family"]


def families_of(kind: ModelKind) -> list[str]:
    """Every family judged for a member kind: the learned families it declares, then the baselines of its target."""
    return [*kind.families, *baselines_of(kind.target)]
