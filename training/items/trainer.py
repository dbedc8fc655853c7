"""The trainer of item kinds (product-recs, content-recs, any recommender): a time split (or a random share of
each item's interactions) of an interaction matrix judges every recommender family."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd

from features.common.progress import say, step
from features.common.settings import project_settings
from features.dataset.store import Dataset
from features.pipelines.interactions import Interactions
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from serving.models.families.recommenders import item_family
from serving.models.kinds import ModelKind
from training.items.evaluation import (
    FactorMethod,
    Split,
    compare,
    factor_method,
    of_members,
    random_split,
    time_split,
)
from training.items.fit import fit_recommender, item_families
from training.items.new_items import PEERS, chosen_method, judged, new_item_split
from training.items.tuning import tune_family
from training.trainer import Evaluation, FamilyParams, Fitted, HeldOut, Trainer, TrainSettings
from training.tuning import Tuning

# The share of each item's interactions a random-per-item split holds out: the 75/25 of published results.
RANDOM_TEST_SHARE = 0.25
# The fewest test members who took a new item for new-item lists to be judged (fewer say nothing either way).
MIN_NEW_ITEM_MEMBERS = 30


class ItemTrainer(Trainer):
    """Item kinds: for a recommender serving as of T, the test split trains on interactions before T-H and tests
    on [T-H, T); the validation split Optuna sees trains before T-2H and tests on [T-2H, T-H); the final model
    is fitted on everything before T. Every family that can serve (`item_families`: ALS, BPR, item-item
    neighbours, EASE, most popular, buy again) is tuned on the validation split and judged on the same test split.

    Lists are judged as the kind serves them by default; where they may repeat the member's own items, the
    families' lists of items new to the member are judged too (`new_only_precision`), so the gate covers both. On a
    random per-item split every held-out interaction is new to its member by construction: only new-item lists
    are judged there."""

    def __init__(self) -> None:
        # Each family's way of ordering new items (its transfer, or the attribute peer that beat it), as evaluate
        # found: the fitted model serves new items so.
        self.new_item_methods: dict[str, str] = {}

    def family_params(self, family: str) -> dict[str, Any]:
        return dict(item_family(family).defaults)

    def servable(self, kind: ModelKind) -> list[str]:
        return item_families(kind)

    def learned(self, kind: ModelKind) -> list[str]:
        return [f for f in self.servable(kind) if not item_family(f).baseline]

    def held_out(self, dataset: Dataset, kind: ModelKind, settings: TrainSettings, as_of: date) -> HeldOut:
        if settings.split == "random-per-item":  # both splits are carved from the interactions before T
            return HeldOut([as_of], [as_of])
        horizon = timedelta(days=settings.horizon_days)
        return HeldOut([as_of - horizon], [as_of - 2 * horizon])

    def _split(self, dataset: Dataset, kind: ModelKind, at: date, settings: TrainSettings, tuning: bool) -> Split:
        """The time split at `at`, of at most the recommender_members setting's members; or, for random-per-item
        (rating data, every member), a random share of each item's interactions before `at` for the test, and for
        tuning a share of what remains (so tuning never sees a test interaction); of at most judged_members test
        members (features/common/settings.py)."""
        judged = project_settings().judged_members
        return of_members(self._every_member(dataset, kind, at, settings, tuning), judged, settings.seed)

    def _every_member(
        self, dataset: Dataset, kind: ModelKind, at: date, settings: TrainSettings, tuning: bool
    ) -> Split:
        if settings.split == "time":
            return time_split(dataset, kind, at, settings.horizon_days, project_settings().recommender_members)
        assert kind.items is not None
        build_snapshot(dataset, SnapshotSettings(as_of=at))
        interactions = Snapshot(dataset, at).interactions(kind.items.matrix)
        test = random_split(interactions, RANDOM_TEST_SHARE, settings.seed)
        if not tuning:
            return test
        remaining = Interactions(test.train, interactions.member_ids, interactions.item_ids)
        return random_split(remaining, RANDOM_TEST_SHARE, settings.seed + 1)

    def tune(
        self, dataset: Dataset, kind: ModelKind, held_out: HeldOut, settings: TrainSettings, plan: Tuning, study: str
    ) -> tuple[FamilyParams, pd.DataFrame]:
        validation = self._split(dataset, kind, held_out.validation[0], settings, tuning=True)
        families = _within_limits([f for f in self.servable(kind) if item_family(f).tuned], validation)
        each = plan.share(len(families))
        say(f"tuning {', '.join(families)} on the validation split ({each.describe(' each', ' each')})")
        tuned, frames = {}, []
        for family in families:
            tuned[family], trials = tune_family(
                validation,
                family,
                _judged_modes(kind, settings),
                settings.k,
                settings.seed,
                trials=each.trials,
                seconds=each.seconds,
            )
            frames.append(trials.dropna(axis=1, how="all"))  # a family stopped in its first trial has no value
        return tuned, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def evaluate(
        self,
        dataset: Dataset,
        kind: ModelKind,
        held_out: HeldOut,
        params: FamilyParams,
        settings: TrainSettings,
        only: str | None = None,
    ) -> Evaluation:
        families = [only] if only else self.servable(kind)
        where = f"the {settings.split} split at {held_out.tests[0]}"
        with step(f"judging {kind.name} on {where}: {', '.join(families)}"):
            split = self._split(dataset, kind, held_out.tests[0], settings, tuning=False)
            families = _within_limits(families, split)
            methods = {family: factor_method(family, params.get(family, {}), settings.seed) for family in families}
            mode = _judged_mode(kind, settings)
            rows = compare(split, methods, k=settings.k, modes=_judged_modes(kind, settings))
        metrics = {
            (r["method"], r["mode"] == "new only"): {k: v for k, v in r.items() if isinstance(v, float)} for r in rows
        }
        scores = {
            family: {**metrics[family, mode], "new_only_precision": metrics[family, True]["precision"]}
            for family in families
        }
        if settings.split == "time":
            new_rows = self._judge_new_items(dataset, kind, held_out.tests[0], settings, methods)
            for row in new_rows:
                if row["method"] in scores:
                    scores[row["method"]]["new_item_ndcg"] = row["ndcg"]
            rows += new_rows
        return Evaluation(scores, [{"cutoff": str(held_out.tests[0]), **r} for r in rows])

    def _judge_new_items(
        self, dataset: Dataset, kind: ModelKind, at: date, settings: TrainSettings, methods: dict[str, FactorMethod]
    ) -> list[dict[str, Any]]:
        """Every family's lists of items no one had touched at `at` (its transfer), beside the attribute and date
        peers, on the items first taken in the test window; and which way each family serves new items (the
        recommenders' point rule: the transfer where it beats every attribute peer)."""
        split = new_item_split(dataset, kind, at, settings.horizon_days, members=project_settings().recommender_members)
        if len(split.users) < MIN_NEW_ITEM_MEMBERS:
            say(
                f"new items not judged: {len(split.users)} members took one of the {len(split.candidate_ids)} items "
                f"first taken from {at} (at least {MIN_NEW_ITEM_MEMBERS} are needed); new items are placed by each "
                "family's transfer"
            )
            return []
        rows, peers_done = [], False
        for family, method in methods.items():
            if method.fitted_on is None or method.fitted_on.shape != split.train.shape:
                continue
            figures = judged(split, family, method.fitted_factors, settings.seed, settings.k)
            self.new_item_methods[family], why = chosen_method(figures)
            say(f"{family}: {why}")
            for name, metrics in figures.items():
                if name in PEERS and peers_done:
                    continue
                label = family if name == "transfer" else name
                rows.append({"method": label, "mode": "new items", "members": len(split.users), **metrics})
            peers_done = True
        return rows

    def fit(
        self,
        dataset: Dataset,
        kind: ModelKind,
        as_of: date,
        family: str,
        params: dict[str, Any],
        settings: TrainSettings,
    ) -> Fitted:
        method = self.new_item_methods.get(family, "transfer")
        model = fit_recommender(dataset, kind, as_of, params, settings.seed, family=family, new_item_method=method)
        return Fitted(model, pd.DataFrame({"member_id": model.member_ids[:3].astype(str)}))


def _judged_mode(kind: ModelKind, settings: TrainSettings) -> bool:
    """Whether the lists judged first leave out the member's own items: the kind's default, but always on a random
    per-item split (its held-out interactions are never the member's own)."""
    return kind.exclude_seen or settings.split == "random-per-item"


def _judged_modes(kind: ModelKind, settings: TrainSettings) -> tuple[bool, ...]:
    """The kinds of list judged (and tuned for): the kind's, and lists of new items too where it may repeat."""
    return (True,) if _judged_mode(kind, settings) else (False, True)


def _within_limits(families: list[str], split: Split) -> list[str]:
    """The families that can be fitted on the split's catalogue (EASE has an item limit); says which cannot."""
    items = split.train.shape[1]
    too_many = [f for f in families if items > (item_family(f).item_limit or items)]
    if too_many:
        say(f"not judged: {', '.join(too_many)} (past their item limit, {items:,} items)")
    return [f for f in families if f not in too_many]
