"""Churn and value models: metrics, and the planted effects of the synthetic community found on held-out cutoffs."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from features.common.home import StateHome
from features.dataset.store import Dataset
from serving.models.kinds import CHURN, VALUE
from tests.conftest import synthetic
from training.members.evaluation import BacktestSettings, backtest
from training.members.frames import training_cutoffs
from training.metrics import expected_calibration_error, normalized_gini, value_metrics


def test_normalized_gini_is_one_for_the_perfect_ranking_and_about_zero_for_noise() -> None:
    actual = np.array([0.0, 0.0, 5.0, 10.0, 100.0])
    assert normalized_gini(actual, actual) == pytest.approx(1.0)
    assert normalized_gini(actual, actual * 3 + 1) == pytest.approx(1.0)  # only the order matters
    assert normalized_gini(actual, -actual) < 0
    rng = np.random.default_rng(0)
    noise = rng.gamma(1.0, 10.0, 20_000)
    assert abs(normalized_gini(noise, rng.random(20_000))) < 0.03


def test_value_metrics_by_hand() -> None:
    metrics = value_metrics(np.array([10.0, 0.0, 30.0]), np.array([12.0, 3.0, 24.0]))
    assert metrics["rmse"] == pytest.approx(np.sqrt((4 + 9 + 36) / 3))
    assert metrics["mae"] == pytest.approx(11 / 3)
    assert metrics["total_error_pct"] == pytest.approx(-2.5)


def test_calibration_error_of_a_calibrated_forecast_is_small() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(50_000)
    assert expected_calibration_error((rng.random(50_000) < p).astype(int), p) < 0.01
    assert expected_calibration_error(np.zeros(1000, dtype=int), np.full(1000, 0.7)) == pytest.approx(0.7)


def test_training_cutoffs_end_their_labels_before_the_test_cutoff() -> None:
    cutoffs = training_cutoffs(date(2011, 9, 1), 90, 3)
    assert cutoffs == [date(2011, 6, 3), date(2011, 5, 4), date(2011, 4, 4)]


@pytest.fixture(scope="module")
def community(shared_home: StateHome) -> Dataset:
    return synthetic(shared_home, "backtest", members=3_000)


@pytest.mark.slow
def test_the_churn_model_finds_the_planted_effects_on_a_held_out_cutoff(community: Dataset) -> None:
    settings = BacktestSettings(cutoffs=[date(2025, 12, 1)], training_cutoffs=3)
    report = backtest(community, CHURN, settings)
    auc = report.mean_by_method()["roc_auc"]
    # Engagement fades before churn, which recency and RFM cannot see (ROC-AUC 0.963 against 0.886 and 0.811).
    assert auc["lightgbm"] > 0.9
    assert auc["lightgbm"] > auc["recency"] + 0.05
    assert auc["lightgbm"] > auc["rfm"] + 0.05
    assert report.mean_by_method().loc["lightgbm", "calibration_error"] < 0.05


@pytest.mark.slow
def test_the_value_model_beats_the_run_rate_on_a_held_out_cutoff(community: Dataset) -> None:
    settings = BacktestSettings(cutoffs=[date(2025, 12, 1)], training_cutoffs=3)
    means = backtest(community, VALUE, settings).mean_by_method()
    # Gini 0.890 against 0.793, RMSE 871 against 1,272
    assert means.loc["lightgbm", "normalized_gini"] > means.loc["run-rate", "normalized_gini"] + 0.05
    assert means.loc["lightgbm", "rmse"] < 0.9 * means.loc["run-rate", "rmse"]


@pytest.mark.slow
def test_contributions_explain_the_churn_score_and_more_engagement_does_not_raise_risk(community: Dataset) -> None:
    from serving.models.families.gbm import encode
    from training.members.fit import fit_gbm
    from training.members.frames import labelled_snapshot, stacked

    model = fit_gbm(stacked(community, training_cutoffs(date(2025, 12, 1), 90, 3), 90), CHURN)
    # the model inputs (BG/NBD outputs, RFM score) of the whole population, then 500 of its members
    test = model.prepare(labelled_snapshot(community, date(2025, 12, 1), 90)).head(500)
    contributions = model.contributions(test)
    raw = model.booster.predict(encode(model.spec, test))
    bias = model.paths.bias
    np.testing.assert_allclose(1 / (1 + np.exp(-(contributions.sum(axis=1) + bias))), raw, rtol=1e-6)
    reasons = model.top_reasons(test, k=3)
    assert len(reasons) == 500 and all(len(r) <= 3 for r in reasons)
    assert reasons[0] == [
        c for c in contributions.iloc[0].sort_values(ascending=False).index[:3] if contributions.iloc[0][c] > 0
    ]
    # Behavioural check: the same members, but engaging as much recently as before, are not riskier.
    livelier = test.copy()
    livelier["eng_30d"] = livelier[["eng_30d", "eng_prev_30d"]].max(axis=1)
    livelier["eng_trend_30d"] = (livelier["eng_30d"] + 1) / (livelier["eng_prev_30d"] + 1)
    assert model.predict(livelier).mean() <= model.predict(test).mean()


@pytest.mark.slow
def test_the_blend_weighs_its_parts_on_training_cutoffs_only(community: Dataset, monkeypatch, tmp_path) -> None:
    import training.members.fit as member_fit
    from serving.models.families import load_model
    from serving.models.inputs import InputContext
    from training.members.frames import stacked

    # given: every frame any part is fitted on, the cutoffs every booster's trees learn from, and every row the
    # weights are fitted on, recorded
    test_cutoff = date(2025, 12, 1)
    fitted_on, trees_on, weighed = [], [], []
    real_fit, real_nnls, real_split = member_fit.fitted, member_fit.nnls, member_fit._validation_split

    def recording_fit(family, data, *args):
        fitted_on.append((family, set(data.frame["cutoff"].dt.date)))
        return real_fit(family, data, *args)

    def recording_split(data, seed):
        train, valid = real_split(data, seed)
        trees_on.append(set(data.frame.loc[train, "cutoff"].dt.date))
        return train, valid

    def recording_nnls(predicted, actual):
        weighed.append(len(actual))
        return real_nnls(predicted, actual)

    monkeypatch.setattr(member_fit, "fitted", recording_fit)
    monkeypatch.setattr(member_fit, "nnls", recording_nnls)
    monkeypatch.setattr(member_fit, "_validation_split", recording_split)
    # when: the blend is judged at a held-out cutoff
    settings = BacktestSettings(cutoffs=[test_cutoff], training_cutoffs=3)
    report = backtest(community, VALUE, settings, families=["blend"])
    # then: each part fitted once; its weights come from the newest training cutoff, scored by boosters whose
    # trees never learned from it, and nothing it fitted saw a label past the test cutoff (every training
    # cutoff's 90 days end by it)
    cutoffs = training_cutoffs(test_cutoff, 90, 3)
    newest, older = max(cutoffs), set(cutoffs) - {max(cutoffs)}
    train = stacked(community, cutoffs, 90).frame
    assert weighed == [int((train["cutoff"].dt.date == newest).sum())]
    assert [f for f, seen in fitted_on if seen == set(cutoffs)] == list(member_fit.BLEND_PARTS)
    assert len(fitted_on) == len(member_fit.BLEND_PARTS)
    assert len(trees_on) == 3 and all(seen == older for seen in trees_on)  # lightgbm, two-part's two boosters
    assert all((test_cutoff - c).days >= 90 for _, seen in fitted_on for c in seen)
    assert report.rows[0]["normalized_gini"] > 0.8
    # and the blend (and the two-part model inside it) saved and loaded predicts the same, one member at a time too
    model = member_fit.fit_blend(stacked(community, cutoffs, 90), VALUE)
    assert all(w >= 0 for w in model.spec.weights) and sum(model.spec.weights) > 0
    loaded = load_model(model.save(tmp_path / "blend"))
    test = stacked(community, [test_cutoff], 90).frame.head(50)
    assert np.allclose(loaded.predict(test), model.predict(test), rtol=1e-9)
    context = loaded.input_context(test)
    assert isinstance(context, InputContext)
    rows = context.with_rows(test.to_dict("records"))
    assert np.allclose(loaded.predict_rows(rows, context), model.predict(test), rtol=1e-6)
