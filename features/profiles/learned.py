"""Behavioural types learned from the data, for a dataset whose members carry no operator persona.

k-means on the members who bought before T, over standardised logs of how they buy (and engage, and follow
promotions, where the data tells): a few interpretable centres that a member is assigned to by the nearest one,
the same way for the whole community in batch and for one member in a request. The number of types is chosen by
the silhouette on a sample (3 to 6: few enough to name and act on); types are numbered by their members' spend,
highest first, and named after what sets their centre apart. experiments/bench_profile.py measures how stable a
member's type is from one monthly snapshot to the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

# What a type is learned from, where the dataset has it: counts and money on a log scale, then shares.
LOGGED = (
    "frequency",
    "sales_value",
    "recency_days",
    "avg_basket",
    "orders_per_month",
    "distinct_products",
    "eng_total",
)
INPUTS = (*LOGGED, "returns_share", "price_sensitivity")
CHOICES = (3, 4, 5, 6)
SAMPLE = 20_000  # members the centres are fitted on (and 5,000 of them the silhouette): seconds at any size
NO_PURCHASE = "no purchase yet"


@dataclass(frozen=True)
class LearnedTypes:
    inputs: list[str]
    mean: list[float]
    scale: list[float]
    centres: list[list[float]]  # in standardised units, highest spend first
    names: list[str]
    silhouettes: dict[int, float]  # k -> silhouette on the sample

    def assign(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each member's type name (objects): the nearest centre; NO_PURCHASE for a member who never bought."""
        x = _standardised(columns, self.inputs, np.array(self.mean), np.array(self.scale))
        distances = ((x[:, None, :] - np.array(self.centres)[None, :, :]) ** 2).sum(axis=2)
        names = np.array(self.names, dtype=object)[distances.argmin(axis=1)]
        bought = np.nan_to_num(np.asarray(columns["frequency"], dtype=float)) > 0
        return np.where(bought, names, NO_PURCHASE)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LearnedTypes:
        return cls(**{**data, "silhouettes": {int(k): v for k, v in data["silhouettes"].items()}})


def learn(columns: Mapping[str, np.ndarray], clusters: int | None = None, seed: int = 0) -> LearnedTypes | None:
    """The types of the members who bought; None with fewer than 50 of them (nothing worth learning)."""
    inputs = [c for c in INPUTS if c in columns and np.isfinite(np.asarray(columns[c], dtype=float)).any()]
    bought = np.nan_to_num(np.asarray(columns["frequency"], dtype=float)) > 0
    if bought.sum() < 50 or not inputs:
        return None
    raw = np.column_stack([_logged(c, np.asarray(columns[c], dtype=float)[bought]) for c in inputs])
    mean, scale = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
    scale[~(scale > 0)] = 1.0
    x = np.nan_to_num((raw - mean) / scale)
    rng = np.random.default_rng(seed)
    fit_on = x[rng.choice(len(x), min(SAMPLE, len(x)), replace=False)]
    judged = fit_on[: min(5_000, len(fit_on))]
    fitted: dict[int, KMeans] = {}
    silhouettes: dict[int, float] = {}
    for k in [clusters] if clusters else CHOICES:
        if k < len(fit_on):
            fitted[k] = KMeans(k, n_init=4, random_state=seed).fit(fit_on)
            silhouettes[k] = float(silhouette_score(judged, fitted[k].predict(judged)))
    if not fitted:
        return None
    best = max(silhouettes, key=lambda k: silhouettes[k])
    centres = fitted[best].cluster_centers_
    spend = inputs.index("sales_value") if "sales_value" in inputs else 0
    centres = centres[np.argsort(-centres[:, spend], kind="stable")]
    names = [f"L{i + 1}: {_describe(c, inputs)}" for i, c in enumerate(centres)]
    return LearnedTypes(inputs, mean.tolist(), scale.tolist(), centres.tolist(), names, silhouettes)


def _logged(name: str, values: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(values, 0, None)) if name in LOGGED else values


def _standardised(
    columns: Mapping[str, np.ndarray], inputs: list[str], mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    raw = np.column_stack([_logged(c, np.asarray(columns[c], dtype=float)) for c in inputs])
    return np.nan_to_num((raw - mean) / scale)


def _describe(centre: np.ndarray, inputs: list[str]) -> str:
    """The two inputs that set the centre furthest from the average member, e.g. 'high frequency, low recency'."""
    order = np.argsort(-np.abs(centre), kind="stable")[:2]
    return ", ".join(f"{'high' if centre[j] > 0 else 'low'} {inputs[j].replace('_', ' ')}" for j in order)
