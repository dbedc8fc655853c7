"""Evaluation metrics for churn (ranking and calibration) and value (error and ranking)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


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
