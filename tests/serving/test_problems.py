"""Every error of every endpoint in one documented shape: problem details (RFC 9457), with no library internals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from features.common.home import StateHome
from serving.problems import CONTENT_TYPE, DOCUMENTED, KINDS

# What a client must never read in an error: another library's class names, messages and links.
INTERNALS = ("pydantic", "validation error for", "bentoml", "Traceback", "An unexpected error has occurred")


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE
    body = answer.json()
    assert {"type", "title", "status", "detail", "errors"} <= set(body), body
    assert body["status"] == status and body["type"] == f"urn:community-ml:problem:{KINDS[status][0]}"
    assert body["title"] == KINDS[status][1] and body["detail"]
    assert all(set(e) == {"field", "message"} and e["field"] and e["message"] for e in body["errors"]), body
    assert not any(word.lower() in answer.text.lower() for word in INTERNALS), answer.text
    return body


# For every endpoint, a body of the wrong types: each named field is refused by name.
WRONG_TYPES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "/events": ({"orders": "yesterday", "engagements": [1]}, {"orders", "engagements[0]"}),
    "/items": ({"products": "today", "contents": [1]}, {"products", "contents[0]"}),
    "/score": ({"member_ids": "M000001"}, {"member_ids"}),
    "/churn": ({"member_ids": [1]}, {"member_ids[0]"}),
    "/value": ({"member_ids": []}, {"member_ids"}),
    "/profile": ({"member_ids": [""]}, {"member_ids[0]"}),
    "/next_action": ({"member_id": 7, "at": "noon"}, {"member_id", "at"}),
    "/recommend_products": ({"member_ids": ["M000001"], "k": 0}, {"k"}),
    "/recommend_content": (
        {"member_ids": ["M000001"], "include_seen": "maybe", "published_since": "soon"},
        {"include_seen", "published_since"},
    ),
    "/recommend": ({"kind": "films", "member_ids": ["M000001"]}, {"kind"}),
    "/similar_products": ({"product_id": ""}, {"product_id"}),
    "/metadata": ({"verbose": True}, {"verbose"}),
    "/health": ({"deep": 1}, {"deep"}),
    "/reload": ({"now": True}, {"now"}),
}


@pytest.mark.slow
def test_every_endpoint_answers_bad_input_with_a_problem_naming_the_fields(http: TestClient) -> None:
    paths = http.get("/docs.json").json()["paths"]
    posted = {p for p, operations in paths.items() if "post" in operations}
    assert posted == set(WRONG_TYPES)  # none untested
    for path, (body, fields) in WRONG_TYPES.items():
        problem = assert_problem(http.post(path, json=body), 400)
        assert {e["field"] for e in problem["errors"]} == fields, (path, problem)
    assert_problem(http.post("/churn", content=b"{not json", headers={"content-type": "application/json"}), 400)
    for path in ("/nowhere", "/docs.json/x"):
        assert path in assert_problem(http.post(path, json={}), 404)["detail"]
    assert "GET is not allowed on /churn" in assert_problem(http.get("/churn"), 405)["detail"]
    unknown = assert_problem(http.post("/similar_products", json={"product_id": "NO-SUCH"}), 404)
    assert "NO-SUCH" in unknown["detail"]


@pytest.mark.slow
def test_a_refused_key_a_body_too_large_and_rows_refused_are_problems_too(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setenv("COMMUNITY_ML_API_KEY", "s3cret")
        assert_problem(http.post("/churn", json={"member_ids": ["M000001"]}), 401)
        assert_problem(http.post("/events", json={"orders": []}, headers={"x-api-key": "wrong"}), 401)
    with monkeypatch.context() as patch:
        patch.setenv("COMMUNITY_ML_MAX_BODY_BYTES", "2048")
        big = {"member_ids": [f"M{i:06d}" for i in range(400)]}
        too_large = assert_problem(http.post("/churn", json=big), 413)
        assert "2,048 bytes" in too_large["detail"]
        chunks = (part for part in [b'{"member_ids": [', b'"M000001", ' * 300, b'"M000002"]}'])
        assert_problem(http.post("/score", content=chunks, headers={"content-type": "application/json"}), 413)
        assert http.post("/churn", json={"member_ids": ["M000001"]}).status_code == 200  # small bodies pass
    # (the kept row is a new member's: the package's members are compared with batch scoring elsewhere)
    good = {"member_id": "M-NEW-TO-PROBLEMS", "ts": "2026-04-02T10:00:00", "amount": 5}
    refused = assert_problem(http.post("/events", json={"orders": [good, {**good, "amount": "five"}]}), 422)
    assert refused["accepted"] == 1 and [e["field"] for e in refused["errors"]] == ["orders[1].amount"]


@pytest.mark.slow
def test_failures_of_the_service_are_problems_that_keep_their_cause_in_the_server_log(
    http: TestClient, home: StateHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.service

    def broken(*args: object) -> None:
        raise RuntimeError(f"disk full under {home.root}")

    with monkeypatch.context() as patch:
        patch.setattr(serving.service, "load_state", broken)
        unavailable = assert_problem(http.post("/reload", json={}), 503)
        assert "reload failed, still serving" in unavailable["detail"] and str(home.root) not in unavailable["detail"]
        patch.setattr(serving.service, "member_scores", broken)  # the hot path's endpoint fails
        assert_problem(http.post("/churn", json={"member_ids": ["M000001"]}), 500)
        patch.setattr(serving.service.CommunityML.inner, "_metadata", broken)  # and one BentoML answers itself
        internal = assert_problem(http.post("/metadata", json={}), 500)
        assert "disk full" not in internal["detail"]
    assert http.post("/reload", json={}).status_code == 200


def test_the_openapi_description_documents_the_problem_shape_on_every_operation(http: TestClient) -> None:
    spec = http.get("/docs.json").json()
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])
    assert not {"InvalidArgument", "NotFound", "InternalServerError"} & set(spec["components"]["schemas"])
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
            expected = {str(s) for s in DOCUMENTED} | ({"422"} if path == "/events" else set())
            assert set(errors) == expected, path
            for response in errors.values():
                assert response["content"] == {CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
