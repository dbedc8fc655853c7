"""Training and test frames: point-in-time features joined to their labels, stacked over cutoffs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from features.common.errors import DataError
from features.dataset.store import Dataset
from features.pipelines.schema import LABEL_NAMES
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, dataset_span


@dataclass
class LabelledFrame:
    """Features and labels of members at one or more cutoffs; `cutoff` says which."""

    frame: pd.DataFrame  # member_id, cutoff, features..., labels...

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in ("member_id", "cutoff", *LABEL_NAMES)]


def labelled_snapshot(dataset: Dataset, as_of: date, horizon_days: int, members: int | None = None) -> pd.DataFrame:
    """Features as of T with the labels of the H days from T; builds (or reuses) the snapshot. With `members`,
    of the dataset's fixed sample of that many members only, where it has more (features/pipelines/snapshots.py:
    member_sample)."""
    # A sample's interaction matrices are for recommenders: churn and value learn from features and labels alone.
    settings = SnapshotSettings(as_of=as_of, horizon_days=horizon_days, sample_members=members, interactions=False)
    result = build_snapshot(dataset, settings)
    if not result.labels_written:
        raise DataError(
            f"cutoff {as_of}: the data of {dataset.name} does not reach {horizon_days} days past it, "
            "so there are no labels to learn from or score against"
        )
    snapshot = Snapshot(dataset, as_of, result.sample)
    frame = snapshot.features().merge(snapshot.labels(horizon_days), on="member_id", how="inner")
    frame.insert(1, "cutoff", pd.Timestamp(as_of))
    return frame


def training_cutoffs(as_of: date, horizon_days: int, count: int, step_days: int = 30) -> list[date]:
    """Cutoffs whose whole label window ends by `as_of`: T-H, T-H-30, ... (newest first)."""
    last = as_of - timedelta(days=horizon_days)
    return [last - timedelta(days=step_days * k) for k in range(count)]


# The members a member model learns from and is judged on at most (`--training-members`, default the setting
# COMMUNITY_ML_TRAINING_MEMBERS, 25,000: features/common/settings.py): a fixed sample of the
# dataset's members (features/pipelines/snapshots.py: member_sample), drawn once, whose snapshots are built from their
# own events only. Snapshots, population fits and LightGBM's rows then grow with the sample, not the community.
# LightGBM's cost is rounds x rows (about 30 ms a round at 300,000 rows on 2 cores; `train value` fits 12
# boosters), while its small trees (7 leaves, 100 members a leaf) gain nothing measurable past a few tens of
# thousands of members a cutoff (held-out ROC-AUC 0.9647 from 100,000 a cutoff, 0.9646 from 50,000), and the
# gate's intervals on three held-out cutoffs of 25,000 are under a hundredth of ROC-AUC wide
# (experiments/results/scale.md). Online Retail (about 4,000 members), CDNOW (23,570) and the demo (10,000) are
# learned from and judged whole.


def stacked(dataset: Dataset, cutoffs: list[date], horizon_days: int, members: int | None = None) -> LabelledFrame:
    """Labelled snapshots for every cutoff with at least 30 days of history before it, stacked; of the dataset's
    sample of `members` members (None: all)."""
    first_event = dataset_span(dataset)[0].date()
    usable = [c for c in cutoffs if c >= first_event + timedelta(days=30)]
    if not usable:
        raise DataError(
            f"no training cutoff has 30 days of history before it (first event {first_event}); "
            "choose a later --as-of or a shorter --horizon-days"
        )
    frames = [labelled_snapshot(dataset, c, horizon_days, members) for c in sorted(usable)]
    # Every snapshot of a dataset has the same columns (features/pipelines/schema.py); anything else is a bug to report,
    # never something to paper over with empty columns.
    for frame, cutoff in zip(frames, sorted(usable), strict=True):
        if list(frame.columns) != list(frames[-1].columns):
            raise DataError(f"the snapshot as of {cutoff} has other columns than the newest one: rebuild it (--force)")
    return LabelledFrame(pd.concat(frames, ignore_index=True))
