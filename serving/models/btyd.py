"""BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma models: the classic probabilistic CLV baselines.

Written here from the papers' likelihoods (numpy/scipy) rather than taken from a library: lifetimes is no longer
maintained (its `summary_data_from_transaction_data` returns NaN rows with pandas 2.3) and PyMC-Marketing brings
a whole probabilistic-programming stack for four parameters. The fit is checked by simulating customers from
known parameters and recovering them (tests/serving/models/test_btyd.py).

They serve three purposes: baseline families that can be champion (serving/models/families/baselines.py), the
classic outputs LightGBM starts from (serving/models/inputs.py), and the bar a learned model must clear.

Time is in days. Per member: x = repeat purchases (orders - 1), t_x = age at the last purchase, T = age now
(both counted from the first purchase), m = average order value.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from features.common.sampling import drawn
from features.common.settings import project_settings


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
        return cls.from_columns({c: frame[c].to_numpy(dtype=float) for c in SOURCES})

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray]) -> tuple[RFMSummary, np.ndarray]:
        """`from_features`, from the feature columns it reads (SOURCES) as float arrays."""
        frequency, age = columns["frequency"], columns["first_order_days_ago"]
        bought = (frequency > 0) & ~np.isnan(age)
        age = age[bought]
        return (
            cls(
                x=(frequency[bought] - 1).clip(min=0),
                t_x=(age - columns["recency_days"][bought]).clip(min=0),
                T=age,
                monetary=columns["avg_basket"][bought],
            ),
            bought,
        )

    def sample(self, size: int, seed: int = 0) -> RFMSummary:
        """At most `size` members, drawn without replacement (the same draw for the same summary and seed)."""
        keep = drawn(len(self.x), size, seed)
        if keep is None:
            return self
        return RFMSummary(self.x[keep], self.t_x[keep], self.T[keep], self.monetary[keep])

    def digest(self) -> str:
        """Identifies the summary's values (and so any fit on it)."""
        h = hashlib.blake2b(digest_size=16)
        for values in (self.x, self.t_x, self.T, self.monetary):
            h.update(np.ascontiguousarray(values, dtype=float).tobytes())
        return h.hexdigest()


# The fits' parameters are kept off degenerate corners (a fit with a ~ 1e-19, no dropout at all, was seen on one of
# CDNOW's cutoffs) by a small penalty on their logarithms: it costs a well-identified fit nothing measurable.
LOG_PENALTY = 1e-3


def _minimize(neg_ll, start: np.ndarray) -> np.ndarray:
    """Fits positive parameters on the log scale; Nelder-Mead is slow but sure on these smooth, small problems."""
    result = minimize(
        lambda z: neg_ll(np.exp(z)),
        np.log(start),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-8},
    )
    return np.exp(result.x)


def _penalty(params: np.ndarray, penalty: float) -> float:
    return penalty * float(np.sum(np.log(params) ** 2))


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
    def fit(cls, s: RFMSummary, penalty: float = LOG_PENALTY) -> BGNBD:
        # The likelihood depends on (x, t_x, T) alone, and many members share them (every one-time buyer of the
        # same first day): each distinct triple is evaluated once, weighted by its members (CDNOW: 2.5x faster).
        triples, counts = np.unique(np.column_stack([s.x, s.t_x, s.T]), axis=0, return_counts=True)
        distinct = RFMSummary(triples[:, 0], triples[:, 1], triples[:, 2], np.zeros(len(triples)))
        weights = counts / counts.sum()

        def neg_ll(p: np.ndarray) -> float:
            return -float(cls.log_likelihood(p, distinct) @ weights) + _penalty(p, penalty)

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

    def p_no_purchase(self, s: RFMSummary, t: float) -> np.ndarray:
        """The model's own churn probability: no purchase in the next t days, given each member's history.

        Dead, or alive and not buying for t days: (1 - P(alive)) + P(alive) ((alpha + T) / (alpha + T + t))^(r + x)
        (a living member's rate is Gamma(r + x, alpha + T) given their history, and no purchase means no dropout).
        Unlike 1 - P(alive), which is 0 for every one-time buyer (the model lets members die only after a repeat
        purchase) and so ranks the likeliest churners as the safest, this ranks every member.
        """
        alive = self.p_alive(s)
        stay_quiet = ((self.alpha + s.T) / (self.alpha + s.T + t)) ** (self.r + s.x)
        return (1.0 - alive) + alive * stay_quiet


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
    def fit(cls, s: RFMSummary, penalty: float = LOG_PENALTY) -> GammaGamma:
        """Fitted on members with repeat purchases and a positive average order value, as the model assumes."""
        use = (s.x > 0) & (s.monetary > 0)
        x, m = s.x[use], s.monetary[use]

        def neg_ll(params: np.ndarray) -> float:
            return -cls.log_likelihood(params, x, m).mean() + _penalty(params, penalty)

        return cls(*_minimize(neg_ll, np.array([1.0, 2.0, float(np.median(m))])))

    def expected_order_value(self, s: RFMSummary) -> np.ndarray:
        """Each member's expected average order value: the population mean shrunk towards their own."""
        p, q, g = self.p, self.q, self.gamma
        m = np.where(s.monetary > 0, s.monetary, 0.0)
        weight = p * s.x / (p * s.x + q - 1)
        return (1 - weight) * (g * p / (q - 1)) + weight * m


# Recent fits by summary digest (see BTYD.fit): a few dozen populations cover a training run's cutoffs.
_FITS_KEPT = 64
_FITTED: OrderedDict[str, BTYD] = OrderedDict()
# The buyers a population's fit reads at most, drawn at random: four (and three) population parameters are pinned
# down long before 50,000 members (their standard errors shrink as 1/sqrt(n)), while each of the fit's ~1,000
# likelihood evaluations costs time in proportion to the members (6 s a fit at 100,000 members, 30 s at 500,000).
# CDNOW (23,570) and Online Retail (4,300) are fitted whole. (COMMUNITY_ML_FIT_MEMBERS: features/common/settings.py)

# The feature columns the models read.
SOURCES = ("frequency", "first_order_days_ago", "recency_days", "avg_basket")
OUTPUTS = ("btyd_p_alive", "btyd_purchases", "btyd_p_no_purchase", "btyd_order_value", "btyd_value")


@dataclass(frozen=True)
class BTYD:
    """BG/NBD and Gamma-Gamma fitted together on one population (a snapshot's members, history before its cutoff)."""

    bgnbd: BGNBD
    gamma_gamma: GammaGamma

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> BTYD:
        """Fitted on the frame's members who bought; with too few of them (an interactions-only dataset), the
        fits' neutral starting points, which rank no one above anyone.

        A fit is a pure function of the members' summary, and training fits the same cutoff's population many
        times (for each held-out cutoff, each family, the final model), so fits are remembered by the summary's
        digest: the same members give the same fit at once."""
        summary, _ = RFMSummary.from_features(frame)
        key = summary.digest()
        if key in _FITTED:
            _FITTED.move_to_end(key)
            return _FITTED[key]
        sample = summary.sample(project_settings().fit_members)
        repeat = (sample.x > 0) & (sample.monetary > 0)
        bgnbd = BGNBD.fit(sample) if len(sample.x) >= 2 else BGNBD(1.0, 30.0, 1.0, 1.0)
        gamma_gamma = GammaGamma.fit(sample) if repeat.sum() >= 2 else GammaGamma(1.0, 2.0, 1.0)
        fitted = _FITTED[key] = cls(bgnbd, gamma_gamma)
        if len(_FITTED) > _FITS_KEPT:
            _FITTED.popitem(last=False)
        return fitted

    def params(self) -> dict[str, float]:
        return {**vars(self.bgnbd), **vars(self.gamma_gamma)}

    @classmethod
    def from_params(cls, params: dict[str, float]) -> BTYD:
        return cls(
            BGNBD(*(params[k] for k in ("r", "alpha", "a", "b"))), GammaGamma(params["p"], params["q"], params["gamma"])
        )

    def outputs(self, frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
        """Per member: P(alive), expected purchases, P(no purchase) and expected spend over the horizon, and the
        expected order value (see `output_columns`)."""
        columns = self.output_columns({c: frame[c].to_numpy(dtype=float) for c in SOURCES}, horizon_days)
        return pd.DataFrame(columns, index=frame.index)

    def output_columns(self, columns: Mapping[str, np.ndarray], horizon_days: int) -> dict[str, np.ndarray]:
        """`outputs` from the feature columns it reads (SOURCES). Members who never bought have no history to
        speak of: P(alive) and order value are empty, expected purchases and spend 0, and they are certain to be
        quiet by the model's own story."""
        summary, bought = RFMSummary.from_columns(columns)
        n = len(bought)
        p_alive, order_value = np.full(n, np.nan), np.full(n, np.nan)
        purchases, no_purchase, value = np.zeros(n), np.ones(n), np.zeros(n)
        if bought.any():
            p_alive[bought] = self.bgnbd.p_alive(summary)
            purchases[bought] = self.bgnbd.expected_purchases(summary, horizon_days)
            no_purchase[bought] = self.bgnbd.p_no_purchase(summary, horizon_days)
            order_value[bought] = self.gamma_gamma.expected_order_value(summary)
            spend = np.nan_to_num(purchases[bought] * order_value[bought], nan=0.0, posinf=0.0)
            value[bought] = spend.clip(min=0)
        return dict(zip(OUTPUTS, (p_alive, purchases, no_purchase, order_value, value), strict=True))
