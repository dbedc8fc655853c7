"""Why a tree ensemble scored a member as it did, fast enough to answer per request: path attribution.

Each split on the path from a tree's root to the member's leaf moves the expected output from the split node's
value to its child's; the move is credited to the split's feature (Saabas's "tree interpreter", XGBoost's
`approx_contribs`). A node's value is the mean output of the training rows that reached it (its leaves' values
weighted by their counts), so a member's contributions add up exactly to their raw score minus the ensemble's
mean (`bias`). TreeSHAP (LightGBM's `pred_contrib`) averages over every order of the features instead, which
credits features deeper in the trees more fairly, but took 1.2 ms per member for a 989-tree churn model against
0.2 ms here: more than all the rest of a request. On the demo's 2,000 first members the two pick the same top
reason for 84% of them, the same ordered top three for 40%.

Every leaf's contributions are worked out once per model into a sparse leaves x features table: a member's
contributions are then the sum of the table rows of the leaves LightGBM puts them in (`pred_leaf`).

A request's member takes one pass through the trees for both their score and their reasons (`PathTable.explain`):
their leaves give the raw score (the leaf values added in tree order, as LightGBM adds them) and the contributions
(the leaves' table rows added in tree order, as the batch path's sparse product adds them), so both are bit for bit
what batch scoring computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp

_CHUNK = 20_000  # members per sparse product: bounds the leaf-indicator matrix of a large batch


@dataclass
class PathTable:
    table: sp.csr_matrix  # leaves of every tree (in order) x features: each leaf's path contributions
    offsets: np.ndarray  # each tree's first row in `table`
    bias: float  # the sum over trees of their mean output: a member's raw score minus their contributions
    leaf_values: np.ndarray  # every leaf's output, in `table`'s row order

    @classmethod
    def of(cls, booster: lgb.Booster) -> PathTable:
        dump = booster.dump_model()
        n_features = len(dump["feature_names"])
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        offsets, bias, first = [], 0.0, 0
        leaf_values: list[float] = []
        for tree in dump["tree_info"]:
            offsets.append(first)
            root = tree["tree_structure"]
            leaf_values.extend(_leaf_values(root, int(tree["num_leaves"])))
            _, root_value = _mean_output(root)
            bias += root_value
            stack: list[tuple[dict[str, Any], dict[int, float]]] = [(root, {})]
            while stack:
                node, credit = stack.pop()
                if "leaf_index" in node or "split_feature" not in node:
                    for feature, amount in credit.items():
                        rows.append(first + int(node.get("leaf_index", 0)))
                        cols.append(feature)
                        values.append(amount)
                    continue
                _, value = _mean_output(node)
                for child in (node["left_child"], node["right_child"]):
                    moved = dict(credit)
                    feature = int(node["split_feature"])
                    moved[feature] = moved.get(feature, 0.0) + _mean_output(child)[1] - value
                    stack.append((child, moved))
            first += int(tree["num_leaves"])
        table = sp.csr_matrix((values, (rows, cols)), shape=(first, n_features), dtype=np.float64)
        table.sum_duplicates()
        return cls(table, np.asarray(offsets, dtype=np.int64), bias, np.asarray(leaf_values, dtype=np.float64))

    @cached_property
    def _padded(self) -> tuple[np.ndarray, np.ndarray]:
        """The table as two leaves x (longest path) arrays, feature and amount, padded with a feature past the last
        at 0: a member's leaves gather their rows in one step."""
        per_leaf = np.diff(self.table.indptr)
        width = max(int(per_leaf.max(initial=0)), 1)
        n_features = self.table.shape[1]
        features = np.full((self.table.shape[0], width), n_features, dtype=np.int64)
        amounts = np.zeros((self.table.shape[0], width), dtype=np.float64)
        rows = np.repeat(np.arange(self.table.shape[0]), per_leaf)
        slots = np.arange(len(self.table.indices)) - np.repeat(self.table.indptr[:-1], per_leaf)
        features[rows, slots], amounts[rows, slots] = self.table.indices, self.table.data
        return features, amounts

    def explain(self, leaves: np.ndarray) -> tuple[float, np.ndarray]:
        """One member's raw score and contributions from their leaf in every tree (LightGBM's `pred_leaf` row)."""
        at = leaves.astype(np.int64, copy=False) + self.offsets
        raw = float(np.cumsum(self.leaf_values.take(at))[-1]) if len(at) else 0.0  # in order, as LightGBM adds
        features, amounts = self._padded
        n_features = self.table.shape[1]
        # `take` rather than fancy indexing: a third of the time for a thousand rows
        gathered = features.take(at, axis=0).ravel(), amounts.take(at, axis=0).ravel()
        return raw, np.bincount(*gathered, minlength=n_features + 1)[:n_features]

    def contributions(self, booster: lgb.Booster, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """Members x features: what each feature's splits added to the member's raw score."""
        out = np.zeros((len(x), self.table.shape[1]))
        for start in range(0, len(x), _CHUNK):
            leaves = booster.predict(x[start : start + _CHUNK], pred_leaf=True, num_threads=threads)
            leaves = np.asarray(leaves, dtype=np.int64).reshape(len(leaves), -1) + self.offsets
            n, trees = leaves.shape
            indicator = sp.csr_matrix(
                (np.ones(n * trees), leaves.ravel(), np.arange(0, n * trees + 1, trees)), shape=(n, self.table.shape[0])
            )
            out[start : start + n] = (indicator @ self.table).toarray()
        return out


def _leaf_values(root: dict[str, Any], count: int) -> list[float]:
    """A tree's leaf outputs by leaf index (a tree of one leaf has no index)."""
    values = [0.0] * count
    stack = [root]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            stack += [node["left_child"], node["right_child"]]
        else:
            values[int(node.get("leaf_index", 0))] = float(node["leaf_value"])
    return values


def _mean_output(node: dict[str, Any]) -> tuple[float, float]:
    """(training rows, mean output) of the subtree at `node`, from its leaves' values and counts."""
    if "split_feature" not in node:
        count = float(node.get("leaf_count", 1) or 1)
        return count, float(node["leaf_value"])
    cached = node.get("_mean")
    if cached is None:
        left, right = _mean_output(node["left_child"]), _mean_output(node["right_child"])
        count = left[0] + right[0]
        cached = node["_mean"] = (count, (left[0] * left[1] + right[0] * right[1]) / count if count else 0.0)
    return cached
