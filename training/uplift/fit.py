"""Fitting uplift learners (LightGBM T- and X-learners) on a campaign's members."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.common.errors import DataError
from serving.models.families.gbm import GBMSpec, categories_of, encode, model_matrix
from serving.models.families.uplift import BOOSTERS, UpliftModel, UpliftSpec
from serving.models.kinds import ModelKind
from training.members.fit import lgb_params
from training.trainer import TrainSettings
from training.uplift.data import CampaignData

# A binary outcome's models are classifiers; spend is an amount.
BINARY_OUTCOMES = ("conversion", "visit", "retention")


# Uplift is a small signal in noisy outcomes: shallow trees, large leaves, early stopping on a fifth.
UPLIFT_PARAMS: dict[str, Any] = {"n_estimators": 400, "learning_rate": 0.03, "num_leaves": 7, "min_child_samples": 50}


def _booster(x: pd.DataFrame, y: np.ndarray, binary: bool, seed: int) -> lgb.Booster:
    """A LightGBM model of `y`, stopped early on a random fifth of the rows."""
    params = lgb_params(UPLIFT_PARAMS, seed)
    model = lgb.LGBMClassifier(**params) if binary else lgb.LGBMRegressor(**params)
    valid = np.random.default_rng(seed).random(len(y)) < 0.2
    if binary and (len(np.unique(y[~valid])) < 2 or len(np.unique(y[valid])) < 2):
        raise DataError("the outcome is the same for every member of an arm: nothing to learn an uplift from")
    model.fit(
        x[~valid],
        y[~valid],
        eval_X=(x[valid],),
        eval_y=(y[valid],),
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    return model.booster_


def baskets_per_conversion(
    frame: pd.DataFrame, treated: np.ndarray, converted: np.ndarray, spend: np.ndarray
) -> float | None:
    """What one more buyer the campaign made spent in the window, in members' typical baskets: the arms'
    difference in spend over their difference in conversion (randomized arms make both causal; the ratio is the
    spend of the buyers the campaign added, where it stopped nobody from buying). A buyer places more than one
    order in a month more often than not, so a conversion lift x one basket undervalues an offer. None where the
    conversion effect is not clear of zero (two standard errors): the ratio would be noise."""
    t, c = converted[treated], converted[~treated]
    if len(t) < 2 or len(c) < 2:
        return None
    effect = t.mean() - c.mean()
    if effect <= 2 * np.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c)):
        return None
    baskets = pd.to_numeric(frame["avg_basket"], errors="coerce") if "avg_basket" in frame else pd.Series(dtype=float)
    typical = float(baskets[baskets > 0].median()) if (baskets > 0).any() else 0.0
    if typical <= 0:
        return None
    return max(0.0, float(spend[treated].mean() - spend[~treated].mean()) / effect / typical)


def fit_uplift(
    family: str, data: CampaignData, rows: np.ndarray, kind: ModelKind, settings: TrainSettings
) -> UpliftModel:
    """The family's model fitted on the campaign's `rows` (a boolean mask)."""
    frame, treated, y = data.frame[rows], data.treated[rows], data.outcome[rows]
    binary = settings.outcome in BINARY_OUTCOMES
    features = GBMSpec(
        kind=kind.name,
        target=kind.target,
        columns=data.columns,
        categories=categories_of(frame, data.columns),
        horizon_days=settings.horizon_days,
    )
    spec = UpliftSpec(
        family=family,  # type: ignore[arg-type]
        kind=kind.name,
        features=features,
        campaign=str(settings.campaign),
        outcome=settings.outcome,
        treatment_arm=data.treatment_arm,
        control_arm=data.control_arm,
        binary=binary,
        treated_share=float(treated.mean()),
        average_effect=float(y[treated].mean() - y[~treated].mean()),
        baskets_per_conversion=baskets_per_conversion(frame, treated, y, data.spend[rows])
        if settings.outcome == "conversion"
        else None,
    )
    x = encode(features, frame)
    boosters: dict[str, lgb.Booster] = {}
    if BOOSTERS[family]:
        seed = settings.seed
        boosters["mu0"] = _booster(x[~treated], y[~treated], binary, seed)
        boosters["mu1"] = _booster(x[treated], y[treated], binary, seed + 1)
    if family == "x-learner":
        matrix = model_matrix(features, frame)
        mu0, mu1 = boosters["mu0"].predict(matrix), boosters["mu1"].predict(matrix)
        # Each member's imputed effect: a treated member's outcome less what the control model expected of them;
        # a control member's, what the treated model expected less what they did.
        boosters["tau1"] = _booster(x[treated], y[treated] - mu0[treated], False, seed + 2)
        boosters["tau0"] = _booster(x[~treated], mu1[~treated] - y[~treated], False, seed + 3)
    return UpliftModel(spec, boosters)
