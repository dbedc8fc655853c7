"""Training uplift models on a randomized campaign: who does the push change?

The members are the campaign's treatment and control arms (its `exposures`), their features are the snapshot as
of the campaign's first day (nothing the campaign caused), their outcome is what they did in the H days after
their exposure (features/dataset/campaigns.py). A stable random 30% of them is held out: every family is fitted on the
rest and judged there by the Qini coefficient and the effect among the top 10% and 30% it ranks, beside random
targeting (the "random" family) and targeting by churn probability (the dataset's churn champion, else the
recency baseline), the win-back list's order today. The learners are LightGBM meta-learners (T- and X-learner);
the gate lets one serve only where it beats random targeting and the champion, and churn targeting too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.common.errors import DataError
from features.common.progress import say, step
from features.dataset.campaigns import campaign_start, control_arm, exposures, saved_plan, split_position
from features.dataset.pseudonyms import pseudonym_key
from features.dataset.store import Dataset
from features.pipelines.outcomes import measured_members, member_outcomes
from features.pipelines.schema import ATTRIBUTES
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, dataset_span
from serving.models.champions import load_champions
from serving.models.families.baselines import BASELINES
from serving.models.families.gbm import GBMSpec, categories_of, encode, model_matrix
from serving.models.families.uplift import BOOSTERS, UPLIFT_FAMILIES, UpliftModel, UpliftSpec
from serving.models.kinds import CHURN, ModelKind
from training.members.fit import lgb_params
from training.metrics import uplift_metrics
from training.trainers import Evaluation, FamilyParams, Fitted, HeldOut, Trainer, TrainSettings, Tuning

HELD_OUT_SHARE = 0.3
# A binary outcome's models are classifiers; spend is an amount.
BINARY_OUTCOMES = ("conversion", "visit", "retention")
# Uplift is a small signal in noisy outcomes: shallow trees, large leaves, early stopping on a fifth.
UPLIFT_PARAMS: dict[str, Any] = {"n_estimators": 400, "learning_rate": 0.03, "num_leaves": 7, "min_child_samples": 50}
CHURN_TARGETING = "churn-targeting"


@dataclass
class CampaignData:
    """One row per measured member of the campaign's two arms: features as of its start, treated, outcome."""

    frame: pd.DataFrame
    columns: list[str]
    treated: np.ndarray
    outcome: np.ndarray
    held_out: np.ndarray  # the members every family is judged on
    start: date
    treatment_arm: str
    control_arm: str


def campaign_data(dataset: Dataset, settings: TrainSettings) -> CampaignData:
    if not settings.campaign:
        raise DataError("train uplift needs --campaign: the randomized campaign whose exposures it learns from")
    exposed = exposures(dataset, settings.campaign)
    control = control_arm(saved_plan(dataset, settings.campaign), settings.campaign, exposed, settings.control_arm)
    pushed = sorted(a for a in exposed["arm"].astype(str).unique() if a != control)
    treatment = settings.treatment_arm or (pushed[0] if len(pushed) == 1 else None)
    if treatment not in pushed:
        raise DataError(
            f"campaign {settings.campaign!r}: choose the arm to model with --treatment-arm (one of {', '.join(pushed)})"
        )
    exposed = exposed[exposed["arm"].isin([treatment, control])]
    outcomes = member_outcomes(dataset, exposed, settings.horizon_days, pre_days=365)
    outcomes, complete = measured_members(dataset, outcomes, str(settings.campaign), settings.horizon_days)
    if not complete:
        say(f"no member's {settings.horizon_days}-day window is complete in the data: learning from what there is")
    if outcomes["arm"].nunique() < 2 or outcomes["arm"].value_counts().min() < 50:
        raise DataError(
            f"campaign {settings.campaign!r}: fewer than 50 measured members in {treatment} or {control} with a "
            f"complete {settings.horizon_days}-day window; an uplift model needs both arms"
        )
    start = campaign_start(exposed)
    features = _features_before(dataset, start, settings.horizon_days)
    # Members with no history before the campaign have no feature row: their features are missing, as LightGBM
    # reads a missing value, not zero.
    frame = outcomes[["member_id"]].merge(features, on="member_id", how="left")
    columns = [c for c in features.columns if c != "member_id"]
    position = split_position(pseudonym_key(dataset.home), frame["member_id"].tolist(), f"{settings.campaign}#held-out")
    return CampaignData(
        frame=frame,
        columns=columns,
        treated=(outcomes["arm"] == treatment).to_numpy(),
        outcome=outcomes[settings.outcome].to_numpy(float),
        held_out=position < HELD_OUT_SHARE,
        start=start,
        treatment_arm=treatment,
        control_arm=control,
    )


def _features_before(dataset: Dataset, start: date, horizon_days: int) -> pd.DataFrame:
    """The members' features as of the campaign's first day; where the data holds no event before it (a campaign
    imported with its outcomes only), the members' attributes alone, which the snapshots carry under the same
    names (so the model scores the latest snapshot as well)."""
    if dataset_span(dataset)[0].date() < start:
        build_snapshot(dataset, SnapshotSettings(as_of=start, horizon_days=horizon_days))
        return Snapshot(dataset, start).features()
    members = dataset.read("members")
    present = [a for a in ATTRIBUTES if a in members and members[a].notna().any()]
    if not present:
        raise DataError(
            f"{dataset.name}: no event before the campaign began ({start}) and no member attributes "
            f"({', '.join(ATTRIBUTES)}): nothing to learn who responds from; import the members' earlier orders "
            "and engagements, or their attributes"
        )
    say(f"no event before the campaign: its members are described by their attributes ({', '.join(present)})")
    return members[["member_id", *present]].astype({a: "string" for a in present if a != "consent_marketing"})


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


def churn_scores(dataset: Dataset, frame: pd.DataFrame, horizon_days: int) -> tuple[np.ndarray, str]:
    """Each member's churn risk: the dataset's churn champion where it has one, else the recency baseline
    (days since the last purchase); members with no history get the median."""
    champions = load_champions(dataset.home, dataset.name, [CHURN], optional=True)
    if CHURN in champions:
        champion = champions[CHURN]
        known = frame.dropna(subset=["recency_days"]) if "recency_days" in frame else frame
        scores = pd.Series(np.nan, index=frame.index)
        if len(known):
            model = champion.model
            scores[known.index] = model.predict(model.prepare(known.reset_index(drop=True)))  # type: ignore[union-attr]
        source = f"churn champion {champion.family} v{champion.version}"
    else:
        scores = pd.Series(BASELINES["recency"].score(frame, horizon_days, {}), index=frame.index, dtype=float)
        source = "recency baseline (no churn champion)"
    values = scores.to_numpy(float)
    return np.where(np.isnan(values), np.nanmedian(values) if np.isfinite(values).any() else 0.0, values), source


class UpliftTrainer(Trainer):
    """The uplift kind: fitted and judged on one randomized campaign (see the module's docstring)."""

    def __init__(self) -> None:
        self._data: dict[tuple[Any, ...], CampaignData] = {}

    def campaign(self, dataset: Dataset, settings: TrainSettings) -> CampaignData:
        """The campaign's members, prepared once per training run (held_out, evaluate and fit all read them)."""
        key = (str(dataset.path), settings.campaign, settings.outcome, settings.treatment_arm, settings.control_arm)
        key += (settings.horizon_days,)
        if key not in self._data:
            self._data[key] = campaign_data(dataset, settings)
        return self._data[key]

    def servable(self, kind: ModelKind) -> list[str]:
        return list(UPLIFT_FAMILIES)

    def learned(self, kind: ModelKind) -> list[str]:
        return [f for f in UPLIFT_FAMILIES if BOOSTERS[f]]

    def references(self, kind: ModelKind) -> list[str]:
        return [CHURN_TARGETING]

    def held_out(self, dataset: Dataset, kind: ModelKind, settings: TrainSettings, as_of: date) -> HeldOut:
        data = self.campaign(dataset, settings)
        return HeldOut([data.start], [data.start])

    def tune(
        self, dataset: Dataset, kind: ModelKind, held_out: HeldOut, settings: TrainSettings, plan: Tuning, study: str
    ) -> tuple[FamilyParams, pd.DataFrame]:
        say("uplift learners are not tuned: one campaign's members are too few to tune on and judge on both")
        return {}, pd.DataFrame()

    def evaluate(
        self,
        dataset: Dataset,
        kind: ModelKind,
        held_out: HeldOut,
        params: FamilyParams,
        settings: TrainSettings,
        only: str | None = None,
    ) -> Evaluation:
        data = self.campaign(dataset, settings)
        test = data.held_out
        families = [only] if only else self.servable(kind)
        scores: dict[str, dict[str, float]] = {}
        rows: list[dict[str, Any]] = []
        with step(
            f"judging {', '.join(families)} on {int(test.sum()):,} held-out members of {settings.campaign} "
            f"({settings.outcome} over {settings.horizon_days} days)"
        ):
            ranked = {f: fit_uplift(f, data, ~test, kind, settings).predict(data.frame[test]) for f in families}
            if only is None:
                churn, source = churn_scores(dataset, data.frame[test].reset_index(drop=True), settings.horizon_days)
                ranked[CHURN_TARGETING] = churn
            for family, score in ranked.items():
                scores[family] = uplift_metrics(score, data.treated[test], data.outcome[test])
                note = {"source": source} if family == CHURN_TARGETING else {}
                rows.append({"cutoff": str(data.start), "method": family, **scores[family], **note})
        return Evaluation(scores, rows)

    def fit(
        self,
        dataset: Dataset,
        kind: ModelKind,
        as_of: date,
        family: str,
        params: dict[str, Any],
        settings: TrainSettings,
    ) -> Fitted:
        data = self.campaign(dataset, settings)
        everyone = np.ones(len(data.frame), dtype=bool)
        model = fit_uplift(family, data, everyone, kind, settings)
        logged = {
            "campaign_start": str(data.start),
            "treatment_arm": data.treatment_arm,
            "control_arm": data.control_arm,
            "campaign_members": str(len(data.frame)),
        }
        return Fitted(model, data.frame[data.columns].head(5), logged)
