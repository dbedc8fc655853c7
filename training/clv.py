"""BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma models: the classic probabilistic CLV baselines.

Written here from the papers' likelihoods (numpy/scipy) rather than taken from a library: lifetimes is no longer
maintained (its `summary_data_from_transaction_data` returns NaN rows with pandas 2.3) and PyMC-Marketing brings
a whole probabilistic-programming stack for four parameters. The fit is checked by simulating customers from
known parameters and recovering them (tests/training/test_clv.py).

Time is in days. Per member: x = repeat purchases (orders - 1), t_x = age at the last purchase, T = age now
(both counted from the first purchase), m = average order value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1


@dataclass(frozen=True)
class RFMSummary:
    """The sufficient statistics of BG/NBD and Gamma-Gamma, one entry per member with a purchase."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    monetary: np.ndarray

    @classmethod
    def from_features(cls, frame: pd.DataFrame) -> tuple[RFMSummary, np.ndarray]:
        """From a feature snapshot; returns the summary and the mask of members it covers (bought at least once)."""
        bought = (frame["frequency"] > 0) & frame["first_order_days_ago"].notna()
        f = frame[bought]
        age = f["first_order_days_ago"].to_numpy(dtype=float)
        return (
            cls(
                x=(f["frequency"].to_numpy(dtype=float) - 1).clip(min=0),
                t_x=(age - f["recency_days"].to_numpy(dtype=float)).clip(min=0),
                T=age,
                monetary=f["avg_basket"].to_numpy(dtype=float),
            ),
            bought.to_numpy(),
        )


def _minimize(neg_ll, start: np.ndarray) -> np.ndarray:
    """Fits positive parameters on the log scale; Nelder-Mead is slow but sure on these smooth, small problems."""
    result = minimize(
        lambda z: neg_ll(np.exp(z)),
        np.log(start),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8},
    )
    return np.exp(result.x)


@dataclass(frozen=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def log_likelihood(params: np.ndarray, s: RFMSummary) -> np.ndarray:
        r, alpha, a, b = params
        x, t_x, T = s.x, s.t_x, s.T
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = betaln(a, b + x) - betaln(a, b)
        a3 = -(r + x) * np.log(alpha + T)
        a4 = np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x)
        return a1 + a2 + np.where(x > 0, np.logaddexp(a3, a4), a3)

    @classmethod
    def fit(cls, s: RFMSummary, penalty: float = 0.0) -> BGNBD:
        def neg_ll(p: np.ndarray) -> float:
            # A touch of L2 on the parameters keeps the optimiser away from degenerate corners.
            return -cls.log_likelihood(p, s).mean() + penalty * float(np.sum(p**2))

        return cls(*_minimize(neg_ll, np.array([1.0, 30.0, 1.0, 1.0])))

    def _odds_dead(self, s: RFMSummary) -> np.ndarray:
        ratio = ((self.alpha + s.T) / (self.alpha + s.t_x)) ** (self.r + s.x)
        return np.where(s.x > 0, self.a / (self.b + s.x - 1) * ratio, 0.0)

    def p_alive(self, s: RFMSummary) -> np.ndarray:
        return 1.0 / (1.0 + self._odds_dead(s))

    def expected_purchases(self, s: RFMSummary, t: float) -> np.ndarray:
        """Expected purchases in the next t days, given each member's history."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, T = s.x, s.T
        z = t / (alpha + T + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        return numerator / (1.0 + self._odds_dead(s))


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        p, q, g = params
        return (
            gammaln(p * x + q)
            - gammaln(p * x)
            - gammaln(q)
            + q * np.log(g)
            + (p * x - 1) * np.log(m)
            + p * x * np.log(x)
            - (p * x + q) * np.log(g + m * x)
        )

    @classmethod
    def fit(cls, s: RFMSummary, penalty: float = 0.0) -> GammaGamma:
        """Fitted on members with repeat purchases and a positive average order value, as the model assumes."""
        use = (s.x > 0) & (s.monetary > 0)
        x, m = s.x[use], s.monetary[use]

        def neg_ll(params: np.ndarray) -> float:
            return -cls.log_likelihood(params, x, m).mean() + penalty * float(np.sum(params**2))

        return cls(*_minimize(neg_ll, np.array([1.0, 2.0, float(np.median(m))])))

    def expected_order_value(self, s: RFMSummary) -> np.ndarray:
        """Each member's expected average order value: the population mean shrunk towards their own."""
        p, q, g = self.p, self.q, self.gamma
        m = np.where(s.monetary > 0, s.monetary, 0.0)
        weight = p * s.x / (p * s.x + q - 1)
        return (1 - weight) * (g * p / (q - 1)) + weight * m


@dataclass(frozen=True)
class CLVBaselines:
    """BG/NBD and Gamma-Gamma scores for every member of a snapshot (members who never bought: most at risk)."""

    churn_p_alive: np.ndarray  # 1 - P(alive)
    churn_expected: np.ndarray  # minus the expected purchases in the horizon
    expected_value: np.ndarray  # expected purchases x expected order value


def clv_baselines(frame: pd.DataFrame, horizon_days: int) -> CLVBaselines:
    """Fitted on the snapshot itself, which holds only history before its cutoff.

    BG/NBD gives every one-time buyer P(alive) = 1, which ranks them as safe; the expected purchases in the
    horizon do not have that blind spot, so both are reported as churn baselines.
    """
    summary, bought = RFMSummary.from_features(frame)
    bgnbd = BGNBD.fit(summary)
    purchases = bgnbd.expected_purchases(summary, horizon_days)
    spend = np.nan_to_num(purchases * GammaGamma.fit(summary).expected_order_value(summary), nan=0.0, posinf=0.0)
    p_alive, expected, value = np.ones(len(frame)), np.zeros(len(frame)), np.zeros(len(frame))
    p_alive[bought] = 1.0 - bgnbd.p_alive(summary)
    expected[bought] = -purchases
    value[bought] = spend.clip(min=0)
    return CLVBaselines(p_alive, expected, value)
