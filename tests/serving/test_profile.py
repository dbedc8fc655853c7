"""`POST /profile` against batch `community-ml profile`, and tags declared in YAML reaching every place a list is
chosen with no code change."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from cli import app
from features.common.home import StateHome
from features.dataset.store import Dataset
from features.pipelines.snapshots import Snapshot
from features.profiles.config import CONFIGS
from serving.campaigns import audience_members
from serving.models.batch import profile, score, winback
from serving.profiles import flattened
from tests.conftest import write_text

AS_OF = date(2026, 4, 1)  # the shop's latest snapshot: what the service serves


@pytest.mark.slow
def test_profile_answers_as_batch_profile_and_unknown_members_are_cold_start(
    http: TestClient, home: StateHome, tmp_path: Path
) -> None:
    summary = profile(Dataset(home, "shop"), AS_OF, tmp_path / "profiles.parquet")
    batch = pd.read_parquet(tmp_path / "profiles.parquet").set_index("member_id")
    assert summary.members == len(batch) and summary.segments and summary.tags
    members = list(batch.index[5:45])
    response = http.post("/profile", json={"member_ids": [*members, "NOBODY"]})
    assert response.status_code == 200
    body = response.json()
    assert body["models"] == summary.models and body["as_of"] == str(AS_OF)
    answers = flattened(body["members"][:-1]).set_index("member_id")
    shared = [c for c in answers.columns if not c.endswith("_model")]
    pd.testing.assert_frame_equal(answers[shared], batch.loc[members, shared], check_dtype=False)
    one = body["members"][0]
    assert {"churn_probability", "expected_value", "tier", "top_reasons", "price_sensitivity", "segments"} <= set(one)
    assert one["favourite_categories"] and 0 < one["favourite_categories"][0]["share"] <= 1
    nobody = body["members"][-1]
    assert nobody["cold_start"] is True and nobody["churn_probability"] is None and nobody["tier"] == "new"
    assert nobody["favourite_categories"] == [] and nobody["price_sensitivity"] is None
    assert "does not know them" in nobody["unknown"]["history"]


@pytest.mark.slow
def test_a_tag_added_in_yaml_appears_in_profile_score_and_audiences(
    http: TestClient, home: StateHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = Dataset(home, "shop")
    declared = (CONFIGS / "tags.yaml").read_text()
    tags = write_text(
        tmp_path / "tags.yaml",
        declared + "  bought_often:\n    meaning: five orders or more\n    rule: frequency >= 5\n",
    )
    monkeypatch.setenv("COMMUNITY_ML_TAGS_CONFIG", str(tags))
    features = Snapshot(shop, AS_OF).features().set_index("member_id")
    often = set(features.index[features["frequency"] >= 5])
    assert 0 < len(often) < len(features)
    try:
        assert http.post("/reload", json={}).status_code == 200
        asked = sorted(often)[:5] + sorted(set(features.index) - often)[:5]
        answered = http.post("/profile", json={"member_ids": asked}).json()["members"]
        assert [("bought_often" in a["tags"]) for a in answered] == [m in often for m in asked]
        profile(shop, AS_OF, tmp_path / "profiles.csv")
        listed = pd.read_csv(tmp_path / "profiles.csv", keep_default_na=False).set_index("member_id")
        assert set(listed.index[listed["tags"].str.split("|").map(lambda t: "bought_often" in t)]) == often
        score(shop, AS_OF, tmp_path / "scores.parquet")
        scored = pd.read_parquet(tmp_path / "scores.parquet").set_index("member_id")
        assert set(scored.index[scored["tags"].str.contains("bought_often")]) == often
        assert set(audience_members(shop, "tag:bought_often")[0]) == often  # campaign plan's audience
        listed = winback(shop, AS_OF, tmp_path / "winback.csv", audience="tag:bought_often")["members"]
        everyone = winback(shop, AS_OF, tmp_path / "everyone.csv")["members"]
        assert set(pd.read_csv(tmp_path / "winback.csv")["member_id"]) <= often and listed < everyone
        options = ["--kind", "product-recs", "--members", "tag:bought_often", "--consent-recorded-elsewhere"]
        recommended = CliRunner().invoke(
            app, ["recommend", "--dataset", "shop", *options, "--out", str(tmp_path / "recs.csv")]
        )
        assert recommended.exit_code == 0, recommended.output
        consenting = set(features.index[features["consent_marketing"].fillna(True).astype(bool)])
        assert set(pd.read_csv(tmp_path / "recs.csv")["member_id"]) == often & consenting
    finally:
        monkeypatch.delenv("COMMUNITY_ML_TAGS_CONFIG")
        assert http.post("/reload", json={}).status_code == 200


@pytest.mark.slow
def test_a_bad_rule_stops_the_profile_with_its_file_and_field_and_nothing_else(
    http: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tags = write_text(tmp_path / "tags.yaml", "tags:\n  broken:\n    meaning: m\n    rule: frequncy >= 2\n")
    monkeypatch.setenv("COMMUNITY_ML_TAGS_CONFIG", str(tags))
    try:
        done = CliRunner().invoke(app, ["profile", "--dataset", "shop", "--out", str(tmp_path / "p.csv")])
        assert done.exit_code != 0 and "Traceback" not in done.output
        assert "tags.broken.rule" in done.output and "unknown field 'frequncy'" in done.output
        assert http.post("/reload", json={}).status_code == 200
        refused = http.post("/profile", json={"member_ids": ["M000002"]})
        assert refused.status_code == 503  # the server's configuration: its log says what (callers see a 503)
        assert "tags.broken.rule: unknown field 'frequncy'" in caplog.text
        assert http.post("/churn", json={"member_ids": ["M000002"]}).status_code == 200  # predictions go on
    finally:
        monkeypatch.delenv("COMMUNITY_ML_TAGS_CONFIG")
        assert http.post("/reload", json={}).status_code == 200
