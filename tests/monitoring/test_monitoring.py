"""Monitoring: drift against the champion's training snapshot, the check's verdict, real performance, reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cli import app
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.pseudonyms import pseudonym, pseudonym_key
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from monitoring.check import breaches
from monitoring.monitor import MonitorResult, run_monitor
from monitoring.performance import matured_performance, member_performance, precision_at_k, recommended_lists
from monitoring.reports import write_reports
from monitoring.thresholds import AlertSettings, MonitorSettings, load_settings
from serving.models.batch import score_members
from serving.models.kinds import CHURN, PRODUCT_RECS, VALUE
from serving.prediction_log import PredictionLog, read_log
from tests.conftest import synthetic, with_champions
from training.job import TrainSettings

# A small community over 18 months; "shifted" is the same community whose population changes, and whose prices
# double, from the day after its reference. Each dataset has its own champions, trained for 2026-06-01 on 30-day
# horizons: their reference snapshot is their newest training cutoff, 2026-05-02, and monitoring looks at
# 2026-06-01, a month on (measured: base 5 of 74 features drifted, shifted 10 of 74; the alert is at 10%).
COMMUNITY = {"members": 3_000, "months": 18, "seed": 7}
SHIFT = {"shift_at": date(2026, 5, 3), "shift_price_factor": 2.0}
TRAINED_AS_OF = date(2026, 6, 1)
MONITORED_AS_OF = TRAINED_AS_OF
HORIZON = 30
# LightGBM champions, whatever the gate would choose: these tests monitor what it serves (and judging only it and
# the baselines keeps them quick).
CHAMPIONS = TrainSettings(
    as_of=TRAINED_AS_OF, horizon_days=HORIZON, training_cutoffs=2, test_cutoffs=1, family="lightgbm"
)


@pytest.fixture(scope="module")
def home(shared_home: StateHome) -> Iterator[StateHome]:
    with_champions(synthetic(shared_home, "base", **COMMUNITY), [CHURN, VALUE], CHAMPIONS)
    with_champions(synthetic(shared_home, "shifted", **COMMUNITY, **SHIFT), [CHURN, VALUE], CHAMPIONS)
    yield shared_home


@pytest.fixture(scope="module")
def monitored(home: StateHome) -> dict[str, MonitorResult]:
    """One monitoring pass per dataset, shared by the tests that read them."""
    return {
        name: run_monitor(home, Dataset(home, name), MONITORED_AS_OF, MonitorSettings()) for name in ("base", "shifted")
    }


def test_the_shifted_generator_changes_prices_only_from_the_shift(home: StateHome) -> None:
    def unit_price(name: str, after: bool) -> float:
        orders = Dataset(home, name).read("orders")
        orders = orders[~orders["is_return"] & ((orders["ts"] >= pd.Timestamp(SHIFT["shift_at"])) == after)]
        return float((orders["amount"] / orders["quantity"]).mean())

    assert unit_price("shifted", after=False) == pytest.approx(unit_price("base", after=False), rel=0.05)
    assert 1.8 < unit_price("shifted", after=True) / unit_price("base", after=True) < 2.2


def test_an_unshifted_later_period_passes_the_check(monitored: dict[str, MonitorResult]) -> None:
    settings, result = MonitorSettings(), monitored["base"]
    assert result.reference.as_of == date(2026, 5, 2) and result.reference.dataset.name == "base"
    # its own champions, never the other dataset's
    assert {c.name for c in result.reference.champions.by_kind.values()} == {"base.churn", "base.value"}
    assert len(result.data_drift.columns) > 50
    assert result.data_drift.share <= settings.data_drift.max_drift_share
    assert breaches(result, settings) == []


def test_a_shifted_period_fails_the_check_and_names_what_moved(monitored: dict[str, MonitorResult]) -> None:
    settings, result = MonitorSettings(), monitored["shifted"]
    found = breaches(result, settings)
    # The calibrated rule (the default): prices doubled, so the price index moved by log 2, far past the largest
    # move between calm months of the history (measured: 0.693 against a threshold of 0.071).
    index = next(a for a in result.alerts if a.statistic == "orders.price_index")
    assert index.change == pytest.approx(np.log(2.0), abs=0.02) and index.threshold < 0.2
    assert found[: len(result.alerts)] == [a.message() for a in result.alerts]
    # The older rule's view of the same pass: the price change moves spending features; engagement, untouched by
    # the shift, does not drift.
    older = breaches(result, settings.model_copy(update={"alerts": AlertSettings(rule="drift-share")}))
    assert older[0].startswith("data drift:") and "spend_30d" in older[0] and "avg_basket" in older[0]
    assert {"spend_30d", "spend_90d", "avg_basket"} <= set(result.data_drift.drifted)
    assert not any(c.startswith("eng_") for c in result.data_drift.drifted)


@pytest.fixture
def passes_so_far(monitored: dict[str, MonitorResult], monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's monitoring pass answered from the passes already computed (with the same default tests):
    the CLI tests test the command, its thresholds and exit codes, not Evidently's ten seconds a pass again."""

    def known_pass(home: StateHome, dataset: Dataset, as_of: date, settings: MonitorSettings) -> MonitorResult:
        assert as_of == MONITORED_AS_OF and settings.data_drift == MonitorSettings().data_drift.model_copy(
            update={"max_drift_share": settings.data_drift.max_drift_share}
        )
        return monitored[dataset.name]

    monkeypatch.setattr("monitoring.monitor.run_monitor", known_pass)


def test_check_exits_1_naming_the_drift_and_0_when_within_bounds(home: StateHome, passes_so_far: None) -> None:
    runner = CliRunner()
    shifted = runner.invoke(app, ["monitor", "check", "--dataset", "shifted", "--as-of", str(MONITORED_AS_OF)])
    assert shifted.exit_code == 1, shifted.output
    assert "alert level: orders.price_index" in shifted.output
    loose = home.root / "loose.yaml"
    loose.write_text(
        "alerts:\n  rule: drift-share\ndata_drift:\n  max_drift_share: 0.5\nprediction_drift:\n  alert_on: []\n"
    )
    relaxed = runner.invoke(
        app, ["monitor", "check", "--dataset", "shifted", "--as-of", str(MONITORED_AS_OF), "--config", str(loose)]
    )
    assert relaxed.exit_code == 0, relaxed.output
    assert "ok: every monitored figure is within its threshold" in relaxed.output


def test_check_with_retrain_retrains_the_member_models_of_that_dataset(
    home: StateHome, monkeypatch: pytest.MonkeyPatch, passes_so_far: None
) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_retrain(dataset: Dataset, kinds: list) -> list:
        calls.append((dataset.name, [k.name for k in kinds]))
        return []

    monkeypatch.setattr("training.job.retrain", fake_retrain)
    done = CliRunner().invoke(
        app, ["monitor", "check", "--dataset", "shifted", "--as-of", str(MONITORED_AS_OF), "--retrain"]
    )
    assert done.exit_code == 1  # still an alert: the scheduler hears of the drift whatever the retraining did
    assert calls == [("shifted", ["churn", "value"])]


def test_a_wrong_threshold_key_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "monitoring.yaml"
    config.write_text("data_drift:\n  max_drift_shares: 0.2\n")
    with pytest.raises(DataError, match=r"data_drift\.max_drift_shares"):
        load_settings(config)


def test_member_performance_on_known_outcomes() -> None:
    predictions = pd.DataFrame(
        {"member": ["a", "b", "c", "d"], "churn_probability": [0.9, 0.2, 0.6, 0.4], "expected_value": [0, 100, 50, 30]}
    )
    outcomes = pd.DataFrame(
        {"member": ["a", "b", "c", "d"], "churned": [True, False, False, True], "future_value": [0, 80, 50, 0]}
    )
    metrics = member_performance(predictions, outcomes)
    # Churned a (0.9) and d (0.4) against stayed b (0.2) and c (0.6): 3 of 4 pairs ordered right.
    assert metrics["churn_roc_auc"] == pytest.approx(0.75)
    assert metrics["churn_brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    assert metrics["value_mae"] == pytest.approx((0 + 20 + 0 + 30) / 4)
    assert metrics["value_rmse"] == pytest.approx(np.sqrt((400 + 900) / 4))
    assert metrics["value_total_error_pct"] == pytest.approx(100 * (180 - 130) / 130)


def test_precision_at_k_counts_hits_among_members_who_bought() -> None:
    lists = pd.DataFrame({"member": ["a", "b", "c"], "items": [["p1", "p2"], ["p3", "p4"], ["p1", "p5"]]})
    truth = pd.DataFrame({"member": ["a", "a", "b"], "item_id": ["p1", "p2", "p9"]})  # c bought nothing
    assert precision_at_k(lists, truth) == {"precision_at_k": 0.5, "k": 2}


def test_matured_predictions_are_measured_against_what_members_then_did(home: StateHome) -> None:
    """Batch scores logged as of 2026-05-01 mature by 2026-05-31; the data runs to the end of June."""
    dataset, as_of = Dataset(home, "base"), date(2026, 5, 1)
    scores, champions = score_members(dataset, as_of)
    PredictionLog(home, "base").write(
        "batch/score", scores.to_dict("records"), champions.versions(), time.perf_counter(), as_of=as_of
    )
    points, report = matured_performance(dataset, read_log(home), HORIZON)
    point = next(p for p in points if p.as_of == as_of and p.model == "members")
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=HORIZON))
    labels = Snapshot(dataset, as_of).labels(HORIZON).merge(scores, on="member_id")
    assert point.members == len(scores)
    assert point.metrics["churn_roc_auc"] == pytest.approx(
        roc_auc_score(labels["churned"], labels["churn_probability"])
    )
    assert point.metrics["churn_roc_auc"] > 0.8
    assert report is not None and "RocAuc" in str(report.dict())


def test_reports_are_written_and_the_index_lists_them(home: StateHome, monitored: dict[str, MonitorResult]) -> None:
    for result in monitored.values():
        index = write_reports(home, result, breaches(result, MonitorSettings()))
    page = index.read_text()
    assert page.count("<tr><td>") == 2 and "alert" in page and "ok" in page
    drift_html = home.reports / "shifted" / f"shifted_{MONITORED_AS_OF}_churn-v1_value-v1_data-drift.html"
    assert drift_html.exists() and drift_html.stat().st_size > 1_000_000  # Evidently embeds its scripts
    assert f'href="shifted/{drift_html.name}"' in page
    # the page and each report name the models judged, with their family
    family = monitored["shifted"].reference.models["churn"]["family"]
    assert f"churn {family} v1" in page
    payload = json.loads(drift_html.with_suffix(".json").read_text())
    assert payload["models"]["churn"] == {"name": "shifted.churn", "version": "1", "family": family}


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (`make test` installs it)")
def test_the_index_page_renders_in_headless_chromium(home: StateHome, monitored: dict[str, MonitorResult]) -> None:
    index = write_reports(home, monitored["shifted"], ["data drift: a test alert"])
    rendered = _render(index)
    assert "community-ml monitoring" in rendered
    assert "shifted" in rendered and "_data-drift.html" in rendered
    drift_page = next((home.reports / "shifted").glob("*_data-drift.html"))
    # Evidently draws its report with scripts: the drifted features appear only once the page has run them.
    assert "spend_30d" in _render(drift_page, wait_ms=10_000)


def _render(page: Path, wait_ms: int = 2_000) -> str:
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--virtual-time-budget={wait_ms}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_log_pseudonyms_match_the_outcomes_pseudonyms(home: StateHome) -> None:
    key = pseudonym_key(home)
    assert pseudonym(key, "M000001") == PredictionLog(home, "base").pseudonym("M000001") != "M000001"


def test_recommended_lists_come_from_the_service_and_batch_exports_of_that_kind() -> None:
    log = pd.DataFrame(
        {
            "endpoint": ["product-recs", "batch/product-recs", "content-recs", "churn"],
            "member": ["a", "b", "a", "a"],
            "items": [[{"item_id": "p1"}, {"item_id": "p2"}], [{"item_id": "p3"}], [{"item_id": "c1"}], None],
        }
    )
    lists = recommended_lists(log, PRODUCT_RECS)
    assert lists.to_dict("list") == {"member": ["a", "b"], "items": [["p1", "p2"], ["p3"]]}
    assert recommended_lists(log.drop(columns=["items"]), PRODUCT_RECS).empty


@pytest.mark.slow
def test_training_promoting_serving_and_monitoring_one_dataset_never_touch_anothers(
    home: StateHome, monitored: dict[str, MonitorResult]
) -> None:
    """Runs last in this module: it trains another version of one dataset's churn model."""
    from monitoring.reference import champion_reference
    from serving.models.champions import load_champions
    from serving.models.registry import champion, connect, versions
    from serving.state import load_state
    from training.job import train
    from training.promoting import promote

    client = connect(home)
    # when: shifted's churn model is trained again and put through promotion
    again = train(Dataset(home, "shifted"), CHURN, CHAMPIONS)
    by_hand = promote(home, "shifted", CHURN, again.version)
    # then: it is registered, judged and refused on shifted alone, against shifted's own champion
    assert again.version == "2" and not again.promoted
    champion_auc = f"against champion lightgbm v1 ({again.metrics['roc_auc']:.4f})"
    assert again.reasons[0].startswith(f"roc_auc {again.metrics['roc_auc']:.4f} {champion_auc}")
    assert (by_hand.dataset, by_hand.promoted) == ("shifted", False)
    assert [str(v.version) for v in versions(client, "base", CHURN)] == ["1"]
    assert str(champion(client, "base", CHURN).version) == "1"
    # and base is served and monitored with base's own champions, shifted with its own
    served = load_state(home, "base").models()
    assert {k: (m["name"], m["version"]) for k, m in served.items()} == {
        "churn": ("base.churn", "1"),
        "value": ("base.value", "1"),
    }
    reference = champion_reference(Dataset(home, "base"))
    assert {c.name for c in reference.champions.by_kind.values()} == {"base.churn", "base.value"}
    assert set(load_champions(home, "shifted").described()) == {"churn", "value"}
    assert {c.name for c in load_champions(home, "shifted").by_kind.values()} == {"shifted.churn", "shifted.value"}
