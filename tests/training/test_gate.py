"""The promotion gate: bootstrap intervals that cover what they claim to, and a candidate better by noise alone
refused while a truly better one passes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from serving.models.kinds import CHURN, VALUE, GateMetric
from training.gate import HeldOutPredictions, gate, paired_interval
from training.metrics import normalized_gini, value_metrics, weighted_auc, weighted_gini, weighted_rmse

RMSE, AUC = GateMetric("rmse", False), GateMetric("roc_auc", True)


def evidence_of(actual: list[np.ndarray], **methods: list[np.ndarray]) -> HeldOutPredictions:
    """Held-out predictions of cutoffs whose members are M0..Mn at every cutoff."""
    held = HeldOutPredictions()
    for i, a in enumerate(actual):
        held.add_cutoff(f"c{i}", np.array([f"M{j}" for j in range(len(a))]), a)
        for name, values in methods.items():
            held.add(name, values[i])
    return held


def test_weighted_metrics_equal_the_metrics_of_the_members_repeated() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    actual = np.where(rng.random(400) < 0.6, 0.0, rng.lognormal(3, 1, 400))
    predicted = np.round(actual * 0.5 + rng.lognormal(2, 1, 400), 0)  # rounded: ties in the ranking
    counts = rng.integers(0, 4, 400)
    copies = np.repeat(np.arange(400), counts)
    weights = counts[:, None].astype(float)  # members x one replicate
    assert weighted_gini(actual, predicted, weights)[0] == pytest.approx(
        normalized_gini(actual[copies], predicted[copies])
    )
    assert weighted_rmse(actual, predicted, weights)[0] == pytest.approx(
        value_metrics(actual[copies], predicted[copies])["rmse"]
    )
    churned = (actual > 0).astype(float)
    assert weighted_auc(churned, predicted, weights)[0] == pytest.approx(
        roc_auc_score(churned[copies], predicted[copies])
    )


@pytest.mark.parametrize("metric", [RMSE, AUC], ids=["rmse", "roc_auc"])
def test_the_interval_of_a_known_difference_covers_it_about_as_often_as_it_says(metric: GateMetric) -> None:
    # given: two models whose difference in the population is known exactly
    # - RMSE: errors N(0, 1) against N(0, 2): the gain is 2 - 1 = 1
    # - ROC-AUC: scores N(mu, 1) for members who churn, N(0, 1) otherwise: AUC = Phi(mu / sqrt 2)
    truth = 1.0 if metric is RMSE else float(norm.cdf(1.5 / np.sqrt(2)) - norm.cdf(0.5 / np.sqrt(2)))
    covered, widths = 0, []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        actual, ours, theirs = [], [], []
        for _ in range(2):  # two cutoffs
            if metric is RMSE:
                a = rng.gamma(1.0, 20.0, 1500)
                ours.append(a + rng.normal(0, 1, 1500))
                theirs.append(a + rng.normal(0, 2, 1500))
            else:
                a = (rng.random(1500) < 0.4).astype(float)
                ours.append(rng.normal(1.5 * a, 1))
                theirs.append(rng.normal(0.5 * a, 1))
            actual.append(a)
        low, high = paired_interval(metric, evidence_of(actual, ours=ours, theirs=theirs), "ours", "theirs", 400, seed)
        covered += low <= truth <= high
        widths.append(high - low)
    # then: 95% intervals cover the truth in about 38 of 40 samples; 34 or fewer has a chance under 2% if they are
    # right, and intervals too wide to mean anything would cover it always, so their width is checked too
    assert covered >= 35
    assert np.mean(widths) < 0.25 * truth


def test_a_candidate_better_by_noise_alone_is_refused_and_a_better_one_passes() -> None:
    from sklearn.metrics import roc_auc_score

    def auc(held: HeldOutPredictions, name: str) -> dict[str, float]:
        pairs = zip(held.actual, held.predicted[name], strict=True)
        return {"roc_auc": float(np.mean([roc_auc_score(a, p) for a, p in pairs]))}

    # given: a rival and a candidate that are the same model with different noise, on the first draw of members
    # where the candidate's ROC-AUC comes out higher by chance (a point rule would promote it)
    for seed in range(100):
        rng = np.random.default_rng(seed)
        actual = [(rng.random(3000) < 0.3).astype(float) for _ in range(3)]
        held = evidence_of(
            actual,
            rival=[rng.normal(a, 1) for a in actual],
            lucky=[rng.normal(a, 1) for a in actual],
            better=[rng.normal(1.5 * a, 1) for a in actual],
        )
        if auc(held, "lucky")["roc_auc"] > auc(held, "rival")["roc_auc"]:
            break
    rivals = {"rival": auc(held, "rival")}
    assert gate(CHURN, auc(held, "lucky"), rivals).passed  # the point rule would promote it
    # when
    refused = gate(CHURN, auc(held, "lucky"), rivals, held, "lucky")
    passed = gate(CHURN, auc(held, "better"), rivals, held, "better")
    # then: the interval of the lucky one's gain straddles zero; the better one's (a gain of about 0.1) is well
    # above it
    first = refused.comparisons[0]
    assert not refused.passed and first.low < 0 < first.high
    assert "is not above zero" in refused.reasons[0]
    assert passed.passed and passed.comparisons[0].low > 0.05


def test_the_other_metrics_may_be_worse_only_within_their_stated_margin() -> None:
    # given: a rival with noisy predictions, and candidates that rank every member perfectly but scale spend
    # wrongly: one with an RMSE about the rival's, one with a third more
    rng = np.random.default_rng(11)
    actual = [rng.gamma(1.0, 100.0, 4000) for _ in range(2)]
    rival = [a + rng.normal(0, 60, len(a)) for a in actual]

    def scaled(rmse: float) -> list[np.ndarray]:  # k x actual, its RMSE = (1 - k) x the root mean square
        return [a * (1 - rmse / np.sqrt(np.mean(a**2))) for a in actual]

    held = evidence_of(actual, rival=rival, close=scaled(60.5), worse=scaled(80.0))

    def figures(name: str) -> dict[str, float]:
        per_cutoff = [value_metrics(a, p) for a, p in zip(actual, held.predicted[name], strict=True)]
        return {k: float(np.mean([m[k] for m in per_cutoff])) for k in ("normalized_gini", "rmse")}

    rivals = {"rival": figures("rival")}
    # when
    close = gate(VALUE, figures("close"), rivals, held, "close")
    worse = gate(VALUE, figures("worse"), rivals, held, "worse")
    # then: both rank confidently better; an RMSE within noise of the rival's passes, a third more does not
    assert figures("close")["rmse"] > rivals["rival"]["rmse"]  # worse on the point figure, as a point rule sees it
    assert close.passed, close.reasons
    assert [c.metric for c in worse.comparisons if not c.passed] == ["rmse"]
    assert worse.reasons[0].startswith("rmse ") and "by more than the margin" in worse.reasons[0]
    rmse = next(c for c in worse.comparisons if c.metric == "rmse")
    assert rmse.high is not None and rmse.high < -0.2 * rivals["rival"]["rmse"]  # well past the 1% margin


def test_predictions_kept_with_a_run_read_back_the_same(tmp_path) -> None:
    held = evidence_of([np.arange(5.0), np.arange(3.0)], a=[np.ones(5), np.zeros(3)], b=[np.arange(5.0), np.ones(3)])
    held.save(tmp_path / "p.npz")
    back = HeldOutPredictions.load(tmp_path / "p.npz")
    assert back.cutoffs == held.cutoffs and back.same_members(held) and back.has("a", "b")
    assert all(np.array_equal(x, y) for x, y in zip(back.predicted["b"], held.predicted["b"], strict=True))


def test_a_method_added_later_is_drawn_on_the_same_members_as_the_others() -> None:
    # the champion's predictions join a run's after its figures were worked out: its replicates must be paired
    # with the others' (the same draws), so a copy of a method has exactly that method's interval
    rng = np.random.default_rng(2)
    actual = [rng.gamma(1.0, 50.0, 2000) for _ in range(2)]
    held = evidence_of(actual, ours=[a + rng.normal(0, 5, 2000) for a in actual], theirs=[a + 0.0 for a in actual])
    gini = GateMetric("normalized_gini", True)
    first = paired_interval(gini, held, "theirs", "ours")
    later = evidence_of(actual, copy=held.predicted["theirs"])
    assert paired_interval(gini, held.merged(later), "copy", "ours") == first
    assert paired_interval(gini, held.renamed("theirs", "champion"), "champion", "ours") == first
