"""BG/NBD and Gamma-Gamma: parameters recovered from customers simulated with known ones."""

from __future__ import annotations

import numpy as np
import pytest

from serving.models.btyd import BGNBD, GammaGamma, RFMSummary

TRUE = {"r": 0.8, "alpha": 20.0, "a": 0.8, "b": 2.5}


def simulate(n: int, calibration: float, holdout: float, seed: int = 0) -> tuple[RFMSummary, np.ndarray]:
    """Customers from the BG/NBD story: Poisson buying at rate lambda, dropping out with p after each purchase."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    drop = rng.beta(TRUE["a"], TRUE["b"], n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t, alive = 0.0, True
        while alive:
            t += rng.exponential(1 / lam[i])
            if t > calibration + holdout:
                break
            if t <= calibration:
                x[i], t_x[i] = x[i] + 1, t
            else:
                future[i] += 1
            alive = rng.random() > drop[i]
    spend = rng.gamma(4.0, 10.0, n)  # each customer's average order value
    return RFMSummary(x=x, t_x=t_x, T=np.full(n, calibration), monetary=spend), future


@pytest.mark.slow
def test_bgnbd_recovers_known_parameters_and_predicts_the_holdout() -> None:
    summary, future = simulate(6_000, calibration=365.0, holdout=90.0)
    model = BGNBD.fit(summary, penalty=0.0)
    for name, value in TRUE.items():
        assert getattr(model, name) == pytest.approx(value, rel=0.3), name
    predicted = model.expected_purchases(summary, 90.0)
    assert predicted.sum() == pytest.approx(future.sum(), rel=0.1)
    # Ranking: customers predicted to buy more do buy more.
    top = predicted > np.quantile(predicted, 0.8)
    assert future[top].mean() > 3 * future[~top].mean()
    assert ((model.p_alive(summary) > 0) & (model.p_alive(summary) <= 1)).all()


def test_gamma_gamma_recovers_known_parameters() -> None:
    rng = np.random.default_rng(1)
    p, q, gamma = 6.0, 4.0, 15.0
    x = rng.integers(1, 10, 8_000).astype(float)
    nu = rng.gamma(q, 1 / gamma, len(x))  # each customer's rate: order values ~ Gamma(p, nu)
    monetary = np.array([rng.gamma(p, 1 / v, int(k)).mean() for v, k in zip(nu, x, strict=True)])
    summary = RFMSummary(x=x, t_x=x, T=x + 1, monetary=monetary)
    model = GammaGamma.fit(summary, penalty=0.0)
    assert (model.p, model.q, model.gamma) == (
        pytest.approx(p, rel=0.2),
        pytest.approx(q, rel=0.2),
        pytest.approx(gamma, rel=0.25),
    )
    expected = model.expected_order_value(summary)
    assert np.corrcoef(expected, p * nu**-1)[0, 1] > 0.8


def test_the_bgnbd_churn_probability_ranks_one_time_buyers_where_one_minus_p_alive_cannot() -> None:
    from sklearn.metrics import roc_auc_score

    summary, future = simulate(4_000, calibration=365.0, holdout=90.0)
    model = BGNBD.fit(summary)
    churned = (future == 0).astype(int)
    no_purchase = model.p_no_purchase(summary, 90.0)
    # 1 - P(alive) is 0 for every member without a repeat purchase (the model lets members die only after one):
    # on real data, where most members buy once and most of those churn, it called the likeliest churners the
    # safest and scored ROC-AUC 0.35-0.39 as a churn baseline.
    once = summary.x == 0
    assert once.sum() > 50 and (1 - model.p_alive(summary))[once].max() == 0
    assert no_purchase[once].min() > 0 and churned[once].mean() > 0.5
    # 0.916 against 0.830
    assert roc_auc_score(churned, no_purchase) > max(0.75, roc_auc_score(churned, 1 - model.p_alive(summary)))
    assert ((no_purchase > 0) & (no_purchase <= 1)).all()
    # and it is the model's own probability: about as many members stay quiet as it expects
    assert no_purchase.mean() == pytest.approx(churned.mean(), abs=0.03)
