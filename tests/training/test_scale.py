"""What keeps training in proportion to the work at the plan's sizes: DuckDB's limits from the machine or the
environment, stated samples of members (training rows, population fits, the gate's bootstrap) that leave the
real datasets whole."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.settings import project_settings
from features.pipelines.engines import DUCKDB_MEMORY_ENV, DUCKDB_THREADS_ENV, configure_duckdb, duckdb_settings
from serving.models.btyd import RFMSummary
from tests.conftest import synthetic


def test_duckdb_takes_its_limits_from_the_environment_or_else_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    monkeypatch.delenv(DUCKDB_MEMORY_ENV, raising=False)
    monkeypatch.delenv(DUCKDB_THREADS_ENV, raising=False)
    default = duckdb_settings()
    assert default["memory_limit"].endswith("MB") and int(default["threads"]) >= 1
    monkeypatch.setenv(DUCKDB_MEMORY_ENV, "3GB")
    monkeypatch.setenv(DUCKDB_THREADS_ENV, "1")
    con = duckdb.connect()
    configure_duckdb(con)
    limit, threads = con.execute("select current_setting('memory_limit'), current_setting('threads')").fetchone()
    assert (limit, threads) == ("2.7 GiB", 1)  # 3 GB as DuckDB writes it
    monkeypatch.setenv(DUCKDB_MEMORY_ENV, "lots")
    with pytest.raises(DataError, match=DUCKDB_MEMORY_ENV):
        duckdb_settings()
    monkeypatch.setenv(DUCKDB_MEMORY_ENV, "3GB")
    monkeypatch.setenv(DUCKDB_THREADS_ENV, "0")
    with pytest.raises(DataError, match=DUCKDB_THREADS_ENV):
        duckdb_settings()


def test_member_kinds_learn_and_are_judged_on_one_fixed_sample_past_the_cap(home: StateHome) -> None:
    from serving.models.kinds import CHURN
    from training.members.evaluation import BacktestSettings, backtest

    # given: a community of 3,000 members where the cap is 1,000
    community = synthetic(home, "big", members=3000, months=14)
    settings = BacktestSettings(cutoffs=[date(2025, 10, 1)], training_cutoffs=2, training_members=1000)
    # when
    capped = backtest(community, CHURN, settings, families=["recency"]).rows[0]
    whole = backtest(community, CHURN, settings.model_copy(update={"training_members": None}), ["recency"]).rows[0]
    # then: the sample's members known at each cutoff, in training and in the test alike
    assert 500 < capped["test_members"] <= 1000 < whole["test_members"]
    assert capped["train_rows"] <= 2 * 1000 < whole["train_rows"]
    assert project_settings().training_members >= 23_570  # CDNOW's and Online Retail's members are all learned from


def test_a_population_fit_reads_a_sample_of_buyers_only_past_the_cap() -> None:
    cap = project_settings().fit_members
    rng = np.random.default_rng(0)
    n = cap + 500
    summary = RFMSummary(rng.poisson(2, n).astype(float), rng.random(n) * 100, rng.random(n) * 100 + 100, rng.random(n))
    sample = summary.sample(cap)
    assert len(sample.x) == cap
    assert np.array_equal(sample.T, summary.sample(cap).T)  # the same draw each time
    small = RFMSummary(summary.x[:100], summary.t_x[:100], summary.T[:100], summary.monetary[:100])
    assert small.sample(cap) is small
    assert cap >= 23_570  # CDNOW is fitted whole


def test_the_gate_bootstraps_a_sample_of_members_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import training.gate as gate
    from serving.models.kinds import GateMetric

    # given: 4,000 members where the gate draws from 1,000 at most
    monkeypatch.setenv("COMMUNITY_ML_GATE_MEMBERS", "1000")
    rng = np.random.default_rng(5)
    held = gate.HeldOutPredictions()
    actual = rng.gamma(1.0, 50.0, 4000)
    held.add_cutoff("c", np.array([f"M{i}" for i in range(4000)]), actual)
    held.add("ours", actual + rng.normal(0, 10, 4000))
    held.add("theirs", actual + rng.normal(0, 20, 4000))
    # when
    low, high = gate.paired_interval(GateMetric("rmse", False), held, "ours", "theirs", replicates=300)
    # then: the interval still covers the gain (about 10) and is about twice as wide as all members would give
    monkeypatch.setenv("COMMUNITY_ML_GATE_MEMBERS", "10000")
    held.figures.clear()
    all_low, all_high = gate.paired_interval(GateMetric("rmse", False), held, "ours", "theirs", replicates=300)
    assert low < 10 < high and all_low < 10 < all_high
    assert 1.5 < (high - low) / (all_high - all_low) < 2.7


def test_the_tuning_budget_starts_no_trial_the_longest_so_far_says_would_overrun(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import optuna

    from training.tuning import BudgetCap

    def study_of(durations: list[float], seconds: float) -> int:
        """Trials run under the cap, each taking the next of `durations` on a clock of its own."""
        clock = iter(np.cumsum([0.0, *durations]))
        now = [0.0]

        def tick() -> float:
            return now[0]

        cap = BudgetCap("als", seconds, clock=tick)

        def objective(trial: optuna.Trial) -> float:
            now[0] = float(next(clock)) + durations[trial.number]
            return 0.0

        study = optuna.create_study()
        study.optimize(objective, n_trials=len(durations), callbacks=[cap])
        return len(study.trials)

    # 10 s trials in 35 s: after the third (30 s gone, 10 s the longest) a fourth would end at 40 s
    assert study_of([10.0] * 8, 35.0) == 3
    # a slow second trial counts for the rest: 5 + 20 s gone, 20 s the longest
    assert study_of([5.0, 20.0, 1.0, 1.0], 40.0) == 2
    # a first trial past the whole budget: none after it, and said so
    assert study_of([50.0, 1.0], 35.0) == 1
    assert "first trial took 50 s, past its share" in capsys.readouterr().err
