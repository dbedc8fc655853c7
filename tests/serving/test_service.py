"""The prediction service: functions, HTTP through the ASGI app, and one real `community-ml serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from features.common.home import StateHome
from features.dataset.store import Dataset
from serving.models.batch import score
from tests.serving.conftest import free_port


@pytest.mark.slow
def test_churn_answers_match_batch_scoring_and_unknown_members_are_cold_start(
    http: TestClient, home: StateHome, tmp_path: Path
) -> None:
    summary = score(Dataset(home, "shop"), pd.Timestamp("2026-04-01").date(), tmp_path / "scores.parquet")
    batch = pd.read_parquet(tmp_path / "scores.parquet").set_index("member_id")
    members = list(batch.index[:50])
    response = http.post("/churn", json={"member_ids": [*members, "NOBODY"]})
    assert response.status_code == 200
    body = response.json()
    assert body["models"] == summary.models  # every answer names the models, versions and families behind it
    assert {m["name"] for m in body["models"].values()} == {"shop.churn", "shop.value"}
    assert body["models"]["churn"]["family"] == "lightgbm"
    answers = {m["member_id"]: m for m in body["members"]}
    for member in members:
        assert answers[member]["churn_probability"] == pytest.approx(batch.loc[member, "churn_probability"])
        assert answers[member]["tier"] == batch.loc[member, "tier"]
        assert ", ".join(answers[member]["top_reasons"]) == batch.loc[member, "top_reasons"]
    assert answers["NOBODY"] == {
        "member_id": "NOBODY",
        "cold_start": True,
        "fresh": False,
        "churn_probability": None,
        "expected_value": None,
        "recency_days": None,
        "tier": "new",
        "top_reasons": [],
    }
    value = http.post("/value", json={"member_ids": members[:3]}).json()
    assert [m["expected_value"] for m in value["members"]] == pytest.approx(
        list(batch.loc[members[:3], "expected_value"])
    )


@pytest.mark.slow
def test_recommendations_and_similar_products(http: TestClient) -> None:
    metadata = http.post("/metadata", json={}).json()
    assert set(metadata["models"]) == {"churn", "value", "product-recs", "content-recs"}
    products = http.post(
        "/recommend_products", json={"member_ids": ["M000001", "NOBODY"], "k": 5, "exclude": ["P00001"]}
    ).json()
    first, cold = products["members"]
    assert len(first["items"]) == 5 and "P00001" not in {i["item_id"] for i in first["items"]}
    assert cold["cold_start"] and len(cold["items"]) == 5
    content = http.post("/recommend_content", json={"member_ids": ["M000001"], "k": 3, "content_type": "knowledge"})
    assert content.status_code == 200 and len(content.json()["members"][0]["items"]) == 3
    similar = http.post("/similar_products", json={"product_id": first["items"][0]["item_id"], "k": 4}).json()
    assert len(similar["items"]) == 4
    assert http.post("/similar_products", json={"product_id": "NO-SUCH"}).status_code == 404
    # any item kind of the table, by name; an unknown kind is a 400 naming the parameter
    generic = http.post(
        "/recommend", json={"kind": "product-recs", "member_ids": ["M000001", "NOBODY"], "k": 5, "exclude": ["P00001"]}
    ).json()
    assert (
        generic["members"] == products["members"] and generic["models"]["product-recs"]["name"] == "shop.product-recs"
    )
    unknown = http.post("/recommend", json={"kind": "films", "member_ids": ["M000001"]})
    assert unknown.status_code == 400 and "kind" in unknown.text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/churn", {"member_ids": []}),
        ("/churn", {"member_ids": [f"M{i}" for i in range(1_001)]}),
        ("/churn", {"member_ids": "M000001"}),
        ("/churn", {}),
        ("/recommend_products", {"member_ids": ["M000001"], "k": 0}),
        ("/recommend_products", {"member_ids": ["M000001"], "k": "ten"}),
    ],
    ids=["empty", "too-many", "not-a-list", "missing", "k-zero", "k-text"],
)
def test_bad_input_gets_a_4xx_that_names_the_problem(http: TestClient, path: str, payload: dict) -> None:
    response = http.post(path, json=payload)
    assert 400 <= response.status_code < 500
    assert "member_ids" in response.text or "k" in response.text


@pytest.mark.slow
def test_rejected_requests_leave_no_member_id_in_the_server_log(
    http: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR"):
        answer = http.post("/churn", json={"member_ids": "M-SECRET-7", "k": 1})
    assert answer.status_code == 400
    assert "Exception on /churn" in caplog.text and "bad input" in caplog.text
    assert "M-SECRET-7" not in caplog.text


# A valid body for every POST endpoint: a misspelt field beside it must still be refused.
VALID_BODIES = {
    "/events": {"orders": [{"member_id": "M000001", "ts": "2026-04-02T10:00:00", "amount": 5}]},
    "/items": {"products": [{"product_id": "P-NEVER-KEPT", "category": "snacks"}]},
    "/score": {"member_ids": ["M000001"]},
    "/churn": {"member_ids": ["M000001"]},
    "/value": {"member_ids": ["M000001"]},
    "/profile": {"member_ids": ["M000001"]},
    "/next_action": {"member_id": "M000001"},
    "/recommend_products": {"member_ids": ["M000001"], "k": 3},
    "/recommend_content": {"member_ids": ["M000001"], "k": 3},
    "/recommend": {"kind": "product-recs", "member_ids": ["M000001"]},
    "/similar_products": {"product_id": "P00001"},
    "/metadata": {},
    "/health": {},
    "/reload": {},
}


@pytest.mark.slow
def test_a_misspelt_top_level_field_is_refused_on_every_post_endpoint_and_nothing_is_kept(
    http: TestClient, home: StateHome
) -> None:
    journal = home.events / "shop" / "journal.jsonl"
    before = journal.read_bytes() if journal.exists() else b""
    paths = http.get("/docs.json").json()["paths"]
    assert {p for p, operations in paths.items() if "post" in operations} == set(VALID_BODIES)  # none untested
    for path, body in VALID_BODIES.items():
        answer = http.post(path, json={**body, "memberids": ["M000001"]})
        assert answer.status_code == 400, path
        assert answer.json()["errors"] == [{"field": "memberids", "message": "Extra inputs are not permitted"}], path
    # the issue's own examples: a table misspelt, a body with no events, a body of other fields
    order = VALID_BODIES["/events"]["orders"][0]
    assert http.post("/events", json={"order": [order]}).json()["errors"][0]["field"] == "order"
    empty = http.post("/events", json={})
    assert empty.status_code == 400 and "the body has no events" in empty.text
    assert http.post("/events", json={"orders": []}).status_code == 400
    assert (
        http.post("/items", json={}).status_code == 400 and "the body has no items" in http.post("/items", json={}).text
    )
    refused = http.post("/events", json={"member_id": [1, 2, {}], "k": -5}).json()["errors"]
    assert sorted(e["field"] for e in refused) == ["k", "member_id"]
    assert (journal.read_bytes() if journal.exists() else b"") == before  # nothing was kept


@pytest.mark.slow
def test_no_answer_or_error_of_the_service_shows_the_state_home(
    http: TestClient, home: StateHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.service

    answers = [
        http.post("/events", json={"orders": [{"member_id": "M000001", "ts": "soon", "amount": 5}]}),  # 422, kept none
        http.post("/recommend", json={"kind": "nope", "member_ids": ["M000001"]}),
        http.post("/similar_products", json={"product_id": "NO-SUCH-PRODUCT"}),
        http.post("/churn", json={"member_ids": ["M000001", "NOBODY"]}),
        http.post("/recommend_products", json={"member_ids": ["M000001"]}),
        http.post("/metadata", json={}),
        http.post("/health", json={}),
    ]
    assert [a.status_code for a in answers] == [422, 400, 404, 200, 200, 200, 200]

    def broken(*args: object) -> None:  # an error that names a file of the state home
        raise FileNotFoundError(f"{home.root / 'features' / 'shop'} is gone")

    monkeypatch.setattr(serving.service, "load_state", broken)
    answers += [http.post("/reload", json={}), http.post("/metadata", json={}), http.post("/health", json={})]
    monkeypatch.undo()
    assert "$COMMUNITY_ML_HOME/features/shop is gone" in answers[-1].json()["last_reload_error"]
    assert http.post("/reload", json={}).status_code == 200
    for answer in answers:
        assert str(home.root) not in answer.text and str(home.root.resolve()) not in answer.text, answer.text


def test_malformed_json_is_a_400(http: TestClient) -> None:
    response = http.post("/churn", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "Invalid JSON" in response.text


@pytest.mark.slow
def test_an_api_key_is_required_when_configured(http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMUNITY_ML_API_KEY", "s3cret")
    assert http.post("/churn", json={"member_ids": ["M000001"]}).status_code == 401
    assert http.post("/churn", json={"member_ids": ["M000001"]}, headers={"x-api-key": "s3cret"}).status_code == 200
    assert http.get("/livez").status_code == 200  # health stays open for the orchestrator


@pytest.mark.slow
def test_predictions_are_logged_with_pseudonymous_ids(http: TestClient, home: StateHome) -> None:
    http.post("/churn", json={"member_ids": ["M000007"]})
    lines = [json.loads(line) for path in home.logs.glob("predictions-*.jsonl") for line in path.open()]
    mine = [entry for entry in lines if entry["endpoint"] == "churn"][-1]
    assert "M000007" not in json.dumps(mine)
    assert len(mine["member"]) == 24 and mine["versions"]["churn"] and mine["latency_ms"] > 0
    assert mine["output"]["tier"] in {"high_value", "potential", "ordinary", "churn_risk", "new"}
    # the feature values behind the answer: its top reasons, as in the snapshot of the logged as-of date
    assert set(mine["inputs"]) == set(mine["output"]["top_reasons"]) and len(mine["inputs"]) == 3
    assert mine["as_of"] and mine["dataset"] == "shop"
    from features.pipelines.snapshots import Snapshot

    row = Snapshot(Dataset(home, "shop"), pd.Timestamp(mine["as_of"]).date()).features().set_index("member_id")
    for name, value in mine["inputs"].items():
        expected = row.at["M000007", name]
        assert value == (None if pd.isna(expected) else pytest.approx(float(expected)))


@pytest.mark.slow
def test_a_failed_reload_keeps_serving_and_says_so(http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.service

    def broken(*args: object) -> None:
        raise RuntimeError("registry unreachable")

    assert http.post("/reload", json={}).status_code == 200
    monkeypatch.setattr(serving.service, "load_state", broken)
    failed = http.post("/reload", json={})
    assert failed.status_code == 503  # BentoML hides 5xx details; metadata says what happened
    assert http.post("/churn", json={"member_ids": ["M000001"]}).status_code == 200
    assert "registry unreachable" in http.post("/metadata", json={}).json()["last_reload_error"]
    health = http.post("/health", json={}).json()
    assert health["status"] == "degraded" and "registry unreachable" in health["last_reload_error"]
    monkeypatch.undo()
    assert http.post("/reload", json={}).status_code == 200
    assert http.post("/health", json={}).json()["status"] == "ok"


def test_serve_refuses_to_start_when_the_registry_is_unreachable(home: StateHome) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens on the discard port
    done = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--dataset", "shop", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "the MLflow registry at http://127.0.0.1:9 is unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_push_lists_leave_out_members_without_marketing_consent(home: StateHome, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    members = Dataset(home, "shop").read("members")
    refused = set(members.loc[~members["consent_marketing"].astype(bool), "member_id"])
    out = tmp_path / "recs.parquet"
    done = CliRunner().invoke(app, ["recommend", "--dataset", "shop", "--kind", "product-recs", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"{len(refused):,} members without marketing consent left out" in done.output
    listed = set(pd.read_parquet(out)["member_id"])
    assert listed and not listed & refused
    winback = tmp_path / "winback.csv"
    done = CliRunner().invoke(app, ["winback", "--dataset", "shop", "--out", str(winback)])
    assert done.exit_code == 0, done.output
    at_risk = pd.read_csv(winback)
    assert len(at_risk) > 0 and set(at_risk["tier"]) == {"churn_risk"}
    assert not set(at_risk["member_id"]) & refused
    assert at_risk["expected_value"].is_monotonic_decreasing


@pytest.mark.slow
def test_fuzzing_the_api_from_its_openapi_schema_gives_no_5xx(http: TestClient) -> None:
    """Schemathesis generates requests from /docs.json, valid ones and invalid ones, for every operation;
    none may get a 5xx. Left out: /reload (it reloads the models, seconds per call, and has its own tests),
    /metrics (BentoML's Prometheus endpoint needs the server process; the real-server test calls it) and /events
    (it would write into the shared dataset's journal; tests/features/test_online.py fuzzes its checks)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_dict(http.get("/docs.json").json())
    statuses: dict[tuple[str, int], int] = {}
    for operation in (result.ok() for result in schema.get_all_operations()):
        if operation.path in ("/reload", "/metrics", "/events"):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # 30 examples per operation and mode: every operation, with valid and invalid requests.
            @settings(
                max_examples=30,
                deadline=None,
                database=None,
                derandomize=True,  # the same requests every run: a threshold below cannot flake
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                request = case.as_transport_kwargs(base_url="http://testserver")
                answer = http.request(
                    request["method"],
                    request["url"],
                    params=request.get("params"),
                    headers=request.get("headers"),
                    json=request.get("json"),
                    content=request.get("data"),
                )
                key = (case.operation.label, answer.status_code)
                statuses[key] = statuses.get(key, 0) + 1
                assert answer.status_code < 500, (key, request, answer.text[:500])

            try:
                call()
            except Unsatisfiable:  # no invalid request exists for an operation without input (GET /livez)
                continue
    assert sum(statuses.values()) >= 450
    assert not [key for key in statuses if key[1] >= 500]
    assert statuses.get(("POST /churn", 200), 0) > 25 and statuses.get(("POST /churn", 400), 0) > 25


def test_the_pseudonym_key_lands_nowhere_but_its_own_file(http: TestClient, home: StateHome) -> None:
    http.post("/churn", json={"member_ids": ["M000002"]})
    key_file = home.root / "secrets" / "pseudonym.key"
    key = key_file.read_bytes().strip()
    assert len(key) >= 32 and key_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    holders = [p for p in home.root.rglob("*") if p.is_file() and p != key_file and key in p.read_bytes()]
    assert holders == []  # not in MLflow's database or artefacts, the prediction log, snapshots or reports
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".community-ml/secrets/pseudonym.key"], cwd=Path(__file__).parents[2]
    )
    assert ignored.returncode == 0  # the default state folder, key included, never reaches git


def test_a_forgotten_member_gets_no_personal_answer_after_reload(http: TestClient, home: StateHome) -> None:
    """Runs last in this module: it deletes a member of the shared community."""
    from features.dataset.privacy import forget_member

    member = "M000001"
    assert http.post("/churn", json={"member_ids": [member]}).json()["members"][0]["cold_start"] is False
    forget_member(Dataset(home, "shop"), member)
    assert http.post("/reload", json={}).status_code == 200
    assert http.post("/churn", json={"member_ids": [member]}).json()["members"][0]["cold_start"] is True
    for path in ("/recommend_products", "/recommend_content"):
        answer = http.post(path, json={"member_ids": [member], "k": 3}).json()["members"][0]
        assert answer["cold_start"] is True, path


@pytest.mark.slow
def test_a_challenger_answers_a_stable_share_of_members_and_every_answer_names_its_variant(
    http: TestClient, home: StateHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.models.batch import score_members
    from serving.models.champions import CHALLENGER_ENV, CHALLENGER_SHARE_ENV, load_champions
    from serving.models.kinds import CHURN, Task, kinds_of
    from training.job import TrainSettings, train

    # given: a second churn version (the RFM baseline) registered beside the champion, served to 30% of members
    shop = Dataset(home, "shop")
    quick = TrainSettings(training_cutoffs=1, test_cutoffs=1, family="rfm", promote=False, budget_seconds=0)
    challenger = train(shop, CHURN, quick)
    monkeypatch.setenv(CHALLENGER_ENV, f"churn:{challenger.version}")
    monkeypatch.setenv(CHALLENGER_SHARE_ENV, "0.3")
    try:
        assert http.post("/reload", json={}).status_code == 200
        members = [f"M{i:06d}" for i in range(300)]
        body = http.post("/churn", json={"member_ids": [*members, "NOBODY"]}).json()
        again = http.post("/churn", json={"member_ids": members[::-1]}).json()
    finally:
        monkeypatch.delenv(CHALLENGER_ENV)
        assert http.post("/reload", json={}).status_code == 200
    # then: the answer names the challenger beside the champions, and each member's variant
    assert body["challenger"] == {
        "kind": "churn",
        "name": "shop.churn",
        "version": challenger.version,
        "family": "rfm",
        "share": 0.3,
    }
    variants = {m["member_id"]: m["variant"] for m in body["members"]}
    assert variants["NOBODY"] in ("champion", "challenger")
    share = sum(variants[m] == "challenger" for m in members) / len(members)
    assert 0.22 < share < 0.38
    assert {m["member_id"]: m["variant"] for m in again["members"]} == {m: variants[m] for m in members}  # stable
    # the challenger's members get exactly what batch scoring with the challenger in the champion's place gives
    champions = load_champions(home, "shop", kinds_of(Task.member), optional=True)
    from serving.models.champions import ChallengerSetting, load_challenger

    replaced = champions.replacing(load_challenger(home, "shop", ChallengerSetting(CHURN, challenger.version, 0.3)))
    expected, _ = score_members(shop, pd.Timestamp(body["as_of"]).date(), champions=replaced)
    expected = expected.set_index("member_id")["churn_probability"]
    chosen = [m for m in body["members"] if m["variant"] == "challenger" and not m["cold_start"]]
    assert chosen and all(m["churn_probability"] == pytest.approx(expected[m["member_id"]]) for m in chosen)
    # and every log line names the variant and the version that answered
    lines = [json.loads(line) for path in home.logs.glob("predictions-*.jsonl") for line in path.open()]
    logged = [e for e in lines if e["endpoint"] == "churn" and "variant" in e["output"]][-301:]
    assert {e["output"]["variant"]: e["versions"]["churn"] for e in logged} == {
        "challenger": challenger.version,
        "champion": body["models"]["churn"]["version"],
    }


def test_serve_refuses_a_challenger_that_is_not_registered(home: StateHome) -> None:
    from typer.testing import CliRunner

    from cli import app

    done = CliRunner().invoke(app, ["serve", "--dataset", "shop", "--challenger", "churn:99", "--share", "0.2"])
    assert done.exit_code == 2
    assert "shop.churn has no version 99 (registered versions: 1" in done.stderr
    bad = CliRunner().invoke(app, ["serve", "--dataset", "shop", "--challenger", "churn", "--share", "0.2"])
    assert bad.exit_code == 2 and "expected KIND:VERSION" in bad.stderr
