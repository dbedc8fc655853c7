"""The profile book of a snapshot: what the profile reads beside the snapshot's feature rows, built once per
snapshot and settings, beside the snapshot (so it goes with it: a `privacy forget` removes every snapshot).

- `profile-<key>/`: every member's history fields (features/profiles/history.py) laid out for lookups by id
  (features/common/columns.py: what the service, batch profiles and `privacy export` read), the population's percentile
  grids of every number a rule may rank (pct), and the learned behavioural types (features/profiles/learned.py)
  where the members carry no persona.
Segments, tags and the models' outputs are worked out when asked (they read a member's current row), never kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.common.columns import LAYOUT_FILE, Columns, floats, write_columns
from features.common.progress import step
from features.dataset.store import Dataset, made_once
from features.profiles.history import HISTORY_TEXT, WEEKDAYS, ProfileSettings, member_history, unknowable
from features.profiles.learned import LearnedTypes, learn

BOOK_LAYOUT = 4  # 2: last contacts, consent per channel; 3: the channel from the features; 4: no parquet copy
GRID = 1001  # points of each percentile grid: pct() is exact to a thousandth


@dataclass(frozen=True)
class ProfileBook:
    as_of: date
    history: Columns
    quantiles: dict[str, np.ndarray]  # field -> sorted population values (GRID points)
    learned: LearnedTypes | None
    unknowable: dict[str, str]  # profile field -> why this dataset cannot tell it

    @classmethod
    def open(
        cls,
        dataset: Dataset,
        snapshot_path: Path,
        as_of: date,
        features: Callable[[], pd.DataFrame],
        settings: ProfileSettings,
        clusters: int | None,
    ) -> ProfileBook:
        """The book of the snapshot at `snapshot_path`, built first where missing (one process at a time);
        `features`: the snapshot's features, read only to build it."""
        key = _key(settings, clusters)
        folder = snapshot_path / f"profile-{key}"

        def build() -> None:
            _build(dataset, folder, as_of, features(), settings, clusters)

        made_once(folder / LAYOUT_FILE, build, lock=snapshot_path / f".profile-{key}.lock")
        history = Columns.open(folder)
        with np.load(folder / "quantiles.npz") as grids:
            quantiles = {name: grids[name] for name in grids.files}
        meta = history.layout
        learned = None if meta["learned"] is None else LearnedTypes.from_json(meta["learned"])
        return cls(as_of, history, quantiles, learned, meta["unknowable"])

    def rows(self, member_ids: list[str]) -> tuple[list[int | None], dict[str, np.ndarray]]:
        """Each member's position (None: not in the snapshot) and the history columns of those found, in order."""
        positions = [self.history.position(m) for m in member_ids]
        found = np.array([p for p in positions if p is not None], dtype=np.int64)
        return positions, self.history.arrays(found)


def _key(settings: ProfileSettings, clusters: int | None) -> str:
    named = [BOOK_LAYOUT, settings.model_dump(), clusters]
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()[:10]


def _build(
    dataset: Dataset,
    folder: Path,
    as_of: date,
    features: pd.DataFrame,
    settings: ProfileSettings,
    clusters: int | None,
) -> None:
    with step(f"profiling {len(features):,} members of {dataset.name} as of {as_of}"):
        cutoff = datetime.combine(as_of, datetime.min.time())
        history = member_history(dataset, cutoff, features["member_id"].astype(str), settings)
        for i in range(1, 4):  # weekdays by name: what a rule compares (active_weekday in ['Sat', 'Sun'])
            day = history.pop(f"active_weekday_{i}")
            history[f"active_weekday_{i}"] = [None if d != d else WEEKDAYS[int(d)] for d in day]
        joined = features.reset_index(drop=True).drop(columns=["member_id"]).join(history.drop(columns=["member_id"]))
        columns = {c: floats(joined[c]) for c in joined.columns if _is_number(joined[c])}
        quantiles = {c: _grid(v) for c, v in columns.items()}
        learned = None
        if "persona" not in features or features["persona"].isna().all():
            learned = learn(columns, clusters)
        text = [*HISTORY_TEXT, *(f"active_weekday_{i}" for i in range(1, 4))]
        meta: dict[str, Any] = {
            "version": BOOK_LAYOUT,
            "as_of": str(as_of),
            "settings": settings.model_dump(),
            "learned": None if learned is None else learned.to_json(),
            "unknowable": unknowable(dataset),
        }
        write_columns(folder, history, text, meta, {"quantiles": quantiles})


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _grid(values: np.ndarray) -> np.ndarray:
    """The population's values at GRID evenly spaced quantiles (empty: no value to rank against)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.array([], dtype=float)
    return np.quantile(finite, np.linspace(0, 1, GRID))
