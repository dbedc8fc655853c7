"""The statistics of a randomized comparison: a difference of means with its 95% interval, the same difference
with variance reduced by a pre-period covariate (CUPED, Deng et al. 2013), and the sample-ratio-mismatch check.
Campaign reports and the champion/challenger split of monitoring both use them, and show an outcome's figures the
same way everywhere (`shown`, `shown_interval`)."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel
from scipy import stats

Z95 = 1.959963984540054
SRM_ALPHA = 0.001  # a split this unlikely under the plan means the assignment or the logging is broken


AMOUNTS = ("spend", "pre_spend")  # money per member; the other outcomes are shares of members


def shown(outcome: str, value: float, signed: bool = False) -> str:
    """An outcome's value as people read it: money to the cent, a share of members as a percentage."""
    sign = "+" if signed else ""
    return f"{value:{sign},.2f}" if outcome in AMOUNTS else f"{value:{sign}.2%}"


def shown_interval(outcome: str, difference: float, low: float, high: float) -> str:
    """A difference with its interval: "+4.94% [+2.86%, +7.01%]"."""
    return f"{shown(outcome, difference, True)} [{shown(outcome, low, True)}, {shown(outcome, high, True)}]"


class Difference(BaseModel):
    """arm - control: the difference of means, its 95% interval, the p-value, and the lift relative to control."""

    treated_mean: float
    control_mean: float
    difference: float
    low: float
    high: float
    p_value: float
    relative: float | None  # difference / control mean, None when the control's mean is 0

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def difference(treated: np.ndarray, control: np.ndarray) -> Difference:
    """Welch's difference of means with a normal 95% interval (arms of hundreds of members or more)."""
    t, c = np.asarray(treated, float), np.asarray(control, float)
    diff = float(t.mean() - c.mean())
    se = math.sqrt(_var(t) / len(t) + _var(c) / len(c))
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return Difference(
        treated_mean=float(t.mean()),
        control_mean=float(c.mean()),
        difference=diff,
        low=diff - Z95 * se,
        high=diff + Z95 * se,
        p_value=p,
        relative=diff / float(c.mean()) if c.mean() != 0 else None,
    )


def _var(x: np.ndarray) -> float:
    return float(x.var(ddof=1)) if len(x) > 1 else 0.0


class Adjusted(BaseModel):
    """The CUPED estimate: the same difference on Y - theta * (X - mean X), and how much variance it removed."""

    estimate: Difference
    theta: float
    variance_reduction: float  # 1 - var(adjusted) / var(raw), pooled over both arms


def cuped(treated: np.ndarray, control: np.ndarray, treated_pre: np.ndarray, control_pre: np.ndarray) -> Adjusted:
    """The difference adjusted by a pre-period covariate. Randomization makes the covariate independent of the arm,
    so the estimate stays unbiased and its interval narrows by the share of variance the covariate explains."""
    y = np.concatenate([treated, control]).astype(float)
    x = np.concatenate([treated_pre, control_pre]).astype(float)
    var_x = _var(x)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    mean_x = float(x.mean())
    adjusted_t = treated - theta * (treated_pre - mean_x)
    adjusted_c = control - theta * (control_pre - mean_x)
    var_y = _var(y)
    var_adj = _var(np.concatenate([adjusted_t, adjusted_c]))
    return Adjusted(
        estimate=difference(adjusted_t, adjusted_c),
        theta=theta,
        variance_reduction=1.0 - var_adj / var_y if var_y > 0 else 0.0,
    )


class SampleRatio(BaseModel):
    """Observed members per arm against the planned split: a chi-square test, flagged below SRM_ALPHA."""

    observed: dict[str, int]
    expected_shares: dict[str, float]
    chi_square: float
    p_value: float
    mismatch: bool


def sample_ratio(observed: dict[str, int], expected_shares: dict[str, float]) -> SampleRatio:
    arms = list(expected_shares)
    counts = np.array([observed.get(a, 0) for a in arms], float)
    shares = np.array([expected_shares[a] for a in arms], float)
    expected = counts.sum() * shares / shares.sum()
    chi2, p = stats.chisquare(counts, expected) if len(arms) > 1 else (0.0, 1.0)
    return SampleRatio(
        observed={a: int(n) for a, n in zip(arms, counts, strict=True)},
        expected_shares={a: float(s) for a, s in zip(arms, shares / shares.sum(), strict=True)},
        chi_square=float(chi2),
        p_value=float(p),
        mismatch=bool(p < SRM_ALPHA),
    )
