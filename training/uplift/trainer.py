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

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from features.common.progress import say, step
from features.dataset.store import Dataset
from serving.models.champions import load_champions
from serving.models.families.baselines import BASELINES
from serving.models.families.uplift import BOOSTERS, UPLIFT_FAMILIES
from serving.models.kinds import CHURN, ModelKind
from training.metrics import uplift_metrics
from training.trainer import Evaluation, FamilyParams, Fitted, HeldOut, Trainer, TrainSettings
from training.tuning import Tuning
from training.uplift.data import CampaignData, campaign_data
from training.uplift.fit import fit_uplift

CHURN_TARGETING = "churn-targeting"


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
