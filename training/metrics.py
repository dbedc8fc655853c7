"""Every metric a candidate is judged by, defined once: churn's ranking and calibration, value's error and
ranking, a kind's target metrics, recommenders' top-k metrics, uplift's Qini and lift, and the gate's
bootstrap versions of its metrics (each figure under many rows of count weights at once)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from serving.models.kinds import ModelKind, Target


def churn_metrics(churned: np.ndarray, score: np.ndarray, probability: bool) -> dict[str, float]:
    """ROC-AUC and PR-AUC of any score; Brier score and calibration error only for probabilities."""
    out = {"roc_auc": float(roc_auc_score(churned, score)), "pr_auc": float(average_precision_score(churned, score))}
    if probability:
        out["brier"] = float(brier_score_loss(churned, score))
        out["calibration_error"] = expected_calibration_error(churned, score)
    return out


def expected_calibration_error(churned: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean probability| over equal-width probability bins, weighted by members."""
    edges = np.minimum((probability * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(edges):
        inside = edges == b
        error += inside.mean() * abs(churned[inside].mean() - probability[inside].mean())
    return float(error)


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of the predicted ranking over the Gini of the perfect ranking (1 = perfect, 0 = random)."""

    def gini(order_by: np.ndarray) -> float:
        order = np.lexsort((np.arange(len(order_by)), -order_by))
        cumulative = np.cumsum(actual[order]) / actual.sum()
        return float(cumulative.sum() / len(actual) - (len(actual) + 1) / (2 * len(actual)))

    return gini(predicted) / gini(actual)


def value_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(np.mean((actual - predicted) ** 2))),
        "mae": float(np.mean(np.abs(actual - predicted))),
        "normalized_gini": normalized_gini(actual, predicted),
        "total_error_pct": float(100 * (predicted.sum() - actual.sum()) / actual.sum()),
    }


def _uplift_cumulatives(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> dict[str, np.ndarray]:
    """Treated and control members, and their summed outcomes, among the top n members by score, for n = 1..N.
    Tied scores share their places: the sums rise evenly across a tie, so the order within it (arbitrary) counts
    for nothing, and a constant score is exactly random targeting."""
    order = np.argsort(-score, kind="stable")
    s, t, y = score[order], treated[order].astype(float), outcome[order].astype(float)
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1] + 1  # each tie group's last place (1-based)
    places = np.arange(1, len(s) + 1)
    out = {}
    for name, values in {"n_t": t, "n_c": 1 - t, "y_t": y * t, "y_c": y * (1 - t)}.items():
        cumulative = np.cumsum(values)
        out[name] = np.interp(places, np.r_[0, ends], np.r_[0.0, cumulative[ends - 1]])
    return out


def qini_curve(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Radcliffe's Qini curve, per treated member: the incremental outcome among the top n members (treated
    outcomes less control outcomes scaled to as many members), divided by the treated members in all."""
    c = _uplift_cumulatives(score, treated, outcome)
    scaled = np.divide(c["y_c"] * c["n_t"], c["n_c"], out=np.zeros_like(c["y_c"]), where=c["n_c"] > 0)
    return (c["y_t"] - scaled) / max(float(np.sum(treated)), 1.0)


def qini_coefficient(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> float:
    """The area between the Qini curve and the random-targeting diagonal, over the share targeted (0 to 1): 0 for
    random targeting, positive when the ranking puts the members the campaign moves first."""
    curve = qini_curve(score, treated, outcome)
    diagonal = curve[-1] * np.arange(1, len(curve) + 1) / len(curve)
    return float(np.mean(curve - diagonal))


def uplift_at(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray, share: float) -> float:
    """The campaign's effect among the top `share` of members by score: treated mean less control mean."""
    c = _uplift_cumulatives(score, treated, outcome)
    n = max(int(np.ceil(share * len(score))), 1) - 1
    if c["n_t"][n] == 0 or c["n_c"][n] == 0:
        return float("nan")
    return float(c["y_t"][n] / c["n_t"][n] - c["y_c"][n] / c["n_c"][n])


def uplift_metrics(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    return {
        "qini": qini_coefficient(score, treated, outcome),
        "uplift_at_10": uplift_at(score, treated, outcome, 0.1),
        "uplift_at_30": uplift_at(score, treated, outcome, 0.3),
    }


def target_metrics(kind: ModelKind, test: pd.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    """The metrics of what the kind predicts: ranking and calibration of a yes/no label's probabilities; error
    and ranking of an amount."""
    label = test[str(kind.label)]
    if kind.target is Target.binary:
        return churn_metrics(label.astype(int).to_numpy(), predicted, probability=True)
    return value_metrics(label.clip(lower=0).to_numpy(dtype=float), predicted)


def top_k_metrics(
    recs: list[np.ndarray], truth: list[set[int]], seen: list[set[int]], k: int, catalogue: int
) -> dict[str, float]:
    """precision, recall, nDCG, MAP and new-to-member precision at k, and catalogue coverage."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision, recall, ndcg, ap, new = [], [], [], [], []
    for items, relevant, had in zip(recs, truth, seen, strict=True):
        hits = np.array([i in relevant for i in items[:k]], dtype=float)
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / len(relevant))
        ideal = discounts[: min(len(relevant), k)].sum()
        ndcg.append(float((hits * discounts[: len(hits)]).sum() / ideal))
        cumulative = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        ap.append(float((cumulative * hits).sum() / min(len(relevant), k)))
        new.append(sum(1 for i in items[:k] if i in relevant and i not in had) / k)
    covered = len(set(np.concatenate(recs).tolist())) if recs else 0
    return {
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "ndcg": float(np.mean(ndcg)),
        "map": float(np.mean(ap)),
        "new_precision": float(np.mean(new)),
        "coverage": covered / catalogue,
    }


def weighted_rmse(actual: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """RMSE under each column of count weights (members x replicates)."""
    return np.sqrt(((actual - predicted) ** 2 @ weights) / weights.sum(axis=0))


def unnormalised_weighted_gini(actual: np.ndarray, order_by: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`training.metrics.normalized_gini`'s unnormalised Gini with each member repeated as often as weighed: a member
    of weight w holds w places in a row, over which the cumulative spend climbs by its spend each place."""
    order = np.lexsort((np.arange(len(order_by)), -order_by))
    a, w = actual[order, None], weights[order]
    spent = w * a
    before = np.cumsum(spent, axis=0) - spent
    places = w.sum(axis=0)
    total = spent.sum(axis=0)
    area = (w * before).sum(axis=0) + (a * w * (w + 1)).sum(axis=0) / 2
    return area / (total * places) - (places + 1) / (2 * places)


def weighted_gini(actual: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Normalized Gini under each column of count weights."""
    return unnormalised_weighted_gini(actual, predicted, weights) / unnormalised_weighted_gini(actual, actual, weights)


def weighted_auc(actual: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC under each column of count weights; tied scores count half, as in sklearn."""
    order = np.argsort(predicted, kind="stable")
    s, y, w = predicted[order], actual[order, None] > 0, weights[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    positives = np.add.reduceat(w * y, starts, axis=0)
    negatives = np.add.reduceat(w * ~y, starts, axis=0)
    below = np.cumsum(negatives, axis=0) - negatives
    pairs = positives.sum(axis=0) * negatives.sum(axis=0)
    return (positives * (below + negatives / 2)).sum(axis=0) / pairs


# The gate metrics a bootstrap can weigh: (actual, predicted, count weights per replicate) -> one figure each.
WEIGHTED: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "rmse": weighted_rmse,
    "normalized_gini": weighted_gini,
    "roc_auc": weighted_auc,
}
