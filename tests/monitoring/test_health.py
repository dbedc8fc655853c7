"""The community health model: indicators equal their hand computation, the declining group is found, missing tables
say so, the watch exit code, and the ops console in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features.common.home import StateHome
from features.dataset.store import Dataset
from monitoring.console import record_health
from monitoring.health.indicators import load_health_settings
from monitoring.health.report import SegmentBy, compute_health
from tests.conftest import PROJECT_ROOT, synthetic

# 8 groups so that each holds a few hundred members; G0002 declines from March (features/dataset/synthetic.py).
COMMUNITY = {"members": 1_500, "months": 18, "seed": 11, "groups": 8, "declining_group_at": date(2026, 3, 1)}
AS_OF = date(2026, 6, 1)
ARTEFACTS = Path(os.environ.get("COMMUNITY_ML_TEST_ARTEFACTS", PROJECT_ROOT / ".test-artefacts"))


@pytest.fixture(scope="module")
def community(shared_home: StateHome) -> Dataset:
    return synthetic(shared_home, "healthy", **COMMUNITY)


def _health(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["health", *args, "--json", "--no-record"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output)


def _value(payload: dict, indicator: str, segment: str = "community") -> dict:
    return next(v for v in payload["indicators"] if v["indicator"] == indicator and v["segment"] == segment)


def test_indicators_equal_their_hand_computation(community: Dataset) -> None:
    _, payload = _health("--dataset", "healthy", "--as-of", str(AS_OF))
    end = pd.Timestamp(AS_OF)
    week, month = end - pd.Timedelta(days=7), end - pd.Timedelta(days=30)
    members = community.read("members")
    members = members[members["joined_at"] < end]
    orders = community.read("orders")
    sold = orders[~orders["is_return"] & (orders["amount"] > 0) & (orders["ts"] < end)]
    engagements = community.read("engagements")
    engagements = engagements[engagements["ts"] < end]
    acting = engagements[~engagements["action"].isin(["join_group", "leave_group"])]

    active = set(sold.loc[sold["ts"] >= week, "member_id"]) | set(acting.loc[acting["ts"] >= week, "member_id"])
    assert _value(payload, "weekly_active_rate")["value"] == pytest.approx(len(active) / len(members))

    in_month = sold[sold["ts"] >= month]
    buyers = set(in_month["member_id"])
    before = set(sold.loc[sold["ts"] < month, "member_id"])
    assert _value(payload, "repurchase_rate")["value"] == pytest.approx(len(buyers & before) / len(buyers))
    aov = in_month["amount"].sum() / in_month["order_id"].nunique()
    assert _value(payload, "average_order_value")["value"] == pytest.approx(aov)

    readers = set(engagements.loc[(engagements["ts"] >= month) & (engagements["action"] == "read"), "member_id"])
    assert _value(payload, "monthly_read_rate")["value"] == pytest.approx(len(readers) / len(members))

    surveys = community.read("surveys")
    quarter = surveys[(surveys["ts"] >= end - pd.Timedelta(days=90)) & (surveys["ts"] < end)]["score"]
    nps = 100 * ((quarter >= 9).mean() - (quarter <= 6).mean())
    assert _value(payload, "nps")["value"] == pytest.approx(nps)
    # the change is against the window before
    weekly = _value(payload, "weekly_active_rate")
    assert weekly["change"] == pytest.approx(weekly["value"] - weekly["previous"])


def test_the_declining_group_is_ranked_first(community: Dataset) -> None:
    truth = pd.read_parquet(community.path / "truth_groups.parquet")
    declining = truth.loc[truth["declining_from"].notna(), "group_id"].tolist()
    assert declining == ["G0002"]
    report = compute_health(community, AS_OF, load_health_settings(), SegmentBy.group)
    assert report.ranking[0].segment == "G0002"
    # measured on this community: 0.686 against the next group's 0.493; its members' read rate fell from 0.443
    # three months before to 0.198
    assert report.ranking[0].shortfall > report.ranking[1].shortfall + 0.1
    read = report.value("monthly_read_rate", "G0002")
    before = compute_health(community, AS_OF - timedelta(days=90), load_health_settings(), SegmentBy.group)
    assert read.value < 0.7 * before.value("monthly_read_rate", "G0002").value


def test_an_indicator_without_its_table_says_no_data(community: Dataset, shared_home: StateHome) -> None:
    orders_only = Dataset(shared_home, "orders-only")
    if not orders_only.exists():
        orders_only.write("orders", community.read("orders"))
        orders_only.record({"kind": "import", "table": "orders"})
    _, payload = _health("--dataset", "orders-only", "--as-of", str(AS_OF))
    assert _value(payload, "nps")["status"] == "no data: import `surveys`" and _value(payload, "nps")["value"] is None
    assert _value(payload, "monthly_read_rate")["status"] == "no data: import `engagements`"
    assert _value(payload, "campaign_roi")["status"] == "no data: import `exposures`"
    # members come from the orders: everyone who had ordered by then, all of them buyers once
    assert (
        _value(payload, "members")["value"]
        == community.read("orders").query("ts < @pd.Timestamp(@AS_OF)")["member_id"].nunique()
    )
    assert _value(payload, "order_rate")["value"] > 0
    by_group = CliRunner().invoke(app, ["health", "--dataset", "orders-only", "--by", "group", "--no-record"])
    assert by_group.exit_code == 2 and "import `engagements`" in by_group.output  # a user error, not a watch


def test_the_watch_exit_code(community: Dataset, tmp_path: Path) -> None:
    code, payload = _health("--dataset", "healthy", "--as-of", str(AS_OF))
    assert code == 0 and payload["watch_breaches"] == []
    strict = tmp_path / "health.yaml"
    config = load_health_settings().model_dump(mode="json")
    for indicator in config["indicators"]:
        if indicator["name"] == "weekly_active_rate":
            indicator["watch"] = 0.9
    strict.write_text(json.dumps(config))  # JSON is YAML
    code, payload = _health("--dataset", "healthy", "--as-of", str(AS_OF), "--config", str(strict))
    assert code == 1 and payload["watch_breaches"][0].startswith("weekly_active_rate ")
    assert "below its floor 0.9" in payload["watch_breaches"][0]


def test_a_wrong_formula_is_named_with_its_file(tmp_path: Path) -> None:
    bad = tmp_path / "health.yaml"
    bad.write_text(
        "indicators:\n  - {name: x, dimension: members, area: scale, meaning: m, unit: u, formula: nope / members}\n"
    )
    result = CliRunner().invoke(app, ["health", "--dataset", "healthy", "--config", str(bad)])
    assert result.exit_code == 2 and str(bad) in result.output and "names nope: not a measure" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (`make test` installs it)")
def test_the_ops_console_shows_the_health_dashboard_in_chromium(community: Dataset, shared_home: StateHome) -> None:
    settings = load_health_settings()
    for months_back in (2, 1, 0):
        record_health(
            shared_home, compute_health(community, AS_OF - timedelta(days=30 * months_back), settings), settings
        )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "ops", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "COMMUNITY_ML_HOME": str(shared_home.root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        projects = _wait_for(f"http://127.0.0.1:{port}/api/projects")
        project = next(p for p in projects if p["name"] == "healthy")
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page = f"http://127.0.0.1:{port}/projects/{project['id']}"
        screenshot = ARTEFACTS / "ops-console.png"
        dom, log = _chromium(page, screenshot)
        assert screenshot.exists() and screenshot.stat().st_size > 50_000
        assert "Community health of healthy" in dom
        assert "weekly_active_rate" in dom and "nps" in dom
        # Chromium logs every console message, errors and uncaught exceptions included, as INFO:CONSOLE (checked
        # with a page calling console.error); the console logs nothing when all is well.
        messages = [line for line in log.splitlines() if ":CONSOLE" in line]
        assert messages == [], messages
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(url: str, seconds: float = 60) -> list[dict]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _chromium(page: str, screenshot: Path) -> tuple[str, str]:
    """The page's DOM once its scripts ran, and the browser's log (console messages included)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2400", "--virtual-time-budget=15000"]
    shot = subprocess.run(
        ["chromium", *flags, "--enable-logging=stderr", "--v=0", f"--screenshot={screenshot}", page],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True
    )
    return dom.stdout, shot.stderr
