"""Platt scaling: how a member family's score becomes a probability, p = sigmoid(slope * z + intercept).

A logistic map is strictly increasing, so unlike isotonic steps it keeps a score's ranking (and ROC-AUC). LightGBM
calibrates its log-odds, each churn baseline a transform of its own score; training fits the two numbers
(training/members/fit.py), every family applies them here.
"""

from __future__ import annotations

import numpy as np


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def platt(z: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """The calibrated probability of a score `z` on its (near-linear) log-odds scale."""
    return 1.0 / (1.0 + np.exp(-(slope * np.asarray(z, dtype=float) + intercept)))
