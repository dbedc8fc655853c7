"""One shape for every error the API answers: problem details (RFC 9457), as `application/problem+json`.

    {"type": "urn:community-ml:problem:invalid-request", "title": "The request is not valid", "status": 400,
     "detail": "member_ids: Field required", "errors": [{"field": "member_ids", "message": "Field required"}]}

`type` names the kind of problem (a URN: stable, nothing to fetch), `title` says it in words, `status` repeats the
HTTP status, `detail` says what went wrong with this request, and `errors` names each offending field (a dotted
path into the body: `orders[3].amount`). An answer may carry more members of its own (`/events`' 422 keeps
`accepted` and `rejected`). No library's class names or links: what a client reads is ours.

The hot path (serving/hot_path.py), the API key check and the reload answer build problems themselves; the
outermost middleware (`ProblemDetails`) turns every other error response into one (BentoML's own, Starlette's
404 and 405), refuses bodies over the size limit with a 413 before anything reads them, and documents the shape
in the OpenAPI description (/docs.json).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from bentoml.exceptions import InvalidArgument
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.common.settings import project_settings

CONTENT_TYPE = "application/problem+json"
_HEADER = CONTENT_TYPE.encode()
# The kinds of problem the API answers, by status: (the type's name, its title).
KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid-request", "The request is not valid"),
    401: ("unauthorized", "A valid x-api-key header is required"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("too-large", "The request body is too large"),
    422: ("rows-refused", "Some rows were refused"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "The service cannot answer this now"),
}
# The problems every operation documents (422: where an endpoint keeps the good rows of a body and names the bad).
DOCUMENTED = (400, 401, 404, 413, 500, 503)
_INTERNAL = "an unexpected error; the server log has what happened"


class FieldRefused(InvalidArgument):
    """A 400 about one field of the request, named in the answer's `errors`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class FieldError(BaseModel):
    field: str = Field(description="where in the request: a dotted path into the body, e.g. orders[3].amount")
    message: str


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details)."""

    model_config = ConfigDict(extra="allow")  # an endpoint's own members (e.g. /events' accepted and rejected)

    type: str = Field(description="the kind of problem: urn:community-ml:problem:NAME")
    title: str = Field(description="the kind of problem, in words")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what went wrong with this request")
    errors: list[FieldError] = Field(default_factory=list, description="each offending field, by name")


def problem(status: int, detail: str, errors: Iterable[tuple[str, str]] = (), **members: Any) -> dict[str, Any]:
    """The problem details of an error answer with this status."""
    name, title = KINDS.get(status, (f"http-{status}", _phrase(status)))
    return {
        "type": f"urn:community-ml:problem:{name}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"field": field, "message": message} for field, message in errors],
        **members,
    }


def invalid(exc: ValidationError) -> dict[str, Any]:
    """A request body the endpoint's input model refused: a 400 naming every field and what is wrong with it."""
    return _refused(400, exc.errors(include_url=False, include_input=False))


def _refused(status: int, errors: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Validation errors (pydantic's, or BentoML's copy of them) as a problem naming each field. A body that is not
    JSON at all has no field to name: its detail says so."""
    found = [(field_path(e.get("loc", ())), str(e.get("msg", ""))) for e in errors]
    return problem(status, "; ".join(f"{f}: {m}" if f else m for f, m in found), [(f, m) for f, m in found if f])


def field_path(loc: Iterable[Any]) -> str:
    """A pydantic location as a path into the body: ("orders", 3, "amount") -> orders[3].amount."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def server_error(status: int = 500) -> dict[str, Any]:
    """A 5xx answer: what happened stays in the server log."""
    return problem(status, _INTERNAL if status == 500 else _phrase(status).lower())


def encoded(body: Mapping[str, Any]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    data = orjson.dumps(body)
    return data, [(b"content-type", _HEADER), (b"content-length", str(len(data)).encode())]


async def send_problem(send: Callable[[dict[str, Any]], Awaitable[None]], body: Mapping[str, Any]) -> None:
    data, headers = encoded(body)
    await send({"type": "http.response.start", "status": body["status"], "headers": headers})
    await send({"type": "http.response.body", "body": data})


def is_problem(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and v.split(b";")[0].strip() == _HEADER for k, v in headers)


def from_response(status: int, body: bytes, method: str = "", path: str = "") -> dict[str, Any]:
    """Any other error answer as problem details: BentoML's shapes (its validation errors, `[{"error": ...}]`,
    `{"error": ...}`), an answer already in this shape, or plain text (Starlette's 404 and 405, said of the
    request's route)."""
    try:
        given: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        given = None
    if isinstance(given, dict) and {"type", "title", "status", "detail"} <= set(given):
        return {**given, "status": status}
    if status >= 500:
        return server_error(status)
    if isinstance(given, list) and given and isinstance(given[0], dict):
        given = given[0]
    if isinstance(given, dict) and isinstance(given.get("detail"), list):  # BentoML's validation errors
        return _refused(status, [e for e in given["detail"] if isinstance(e, dict)])
    if isinstance(given, dict) and "error" in given:
        return problem(status, str(given["error"]))
    if status == 404 and given is None:
        return problem(status, f"no route {path}: the API's routes are listed in /docs.json")
    if status == 405 and given is None:
        return problem(status, f"{method} is not allowed on {path}: its endpoints take POST with a JSON body")
    text = body.decode(errors="replace").strip()
    return problem(status, text or _phrase(status))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemDetails:
    """The outermost ASGI middleware: every error answer in one shape, bodies over the size limit refused, and
    the shape documented in /docs.json. A successful answer passes through untouched."""

    def __init__(self, app: Any, partial: Iterable[str] = ()) -> None:
        self.app = app
        self.partial = frozenset(partial)  # the routes that keep a body's good rows and answer 422 for the others

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = project_settings().max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_problem(send, _too_large(limit))
            return
        docs = scope["path"] == "/docs.json"
        held: dict[str, Any] = {}  # the start of an answer being rewritten, and its body so far
        received = 0
        refused = False

        async def counted() -> dict[str, Any]:
            """The request body, stopped at the limit when the client sent no length (a chunked body)."""
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def rewritten(message: dict[str, Any]) -> None:
            if refused:  # the body was cut at the limit: whatever the app made of it, the answer is a 413
                if message["type"] == "http.response.start":
                    held["passed"] = True
                    await send_problem(send, _too_large(limit))
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                if (status < 400 and not (docs and status == 200)) or is_problem(message["headers"]):
                    held["passed"] = True
                    await send(message)
                else:
                    held["start"], held["body"] = message, b""
                return
            if message["type"] != "http.response.body" or "start" not in held:
                await send(message)
                return
            held["body"] += message.get("body", b"")
            if message.get("more_body", False):
                return
            start, body = held.pop("start"), held.pop("body")
            held["passed"] = True
            if docs and start["status"] == 200:
                data = orjson.dumps(documented(orjson.loads(body), self.partial))
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            else:
                data, headers = encoded(from_response(start["status"], body, scope["method"], scope["path"]))
            kept = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-type", b"content-length")]
            await send({**start, "headers": [*kept, *headers]})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, counted if length is None else receive, rewritten)
        if refused and "passed" not in held:
            await send_problem(send, _too_large(limit))


def _too_large(limit: int) -> dict[str, Any]:
    return problem(413, f"the body is over {limit:,} bytes (COMMUNITY_ML_MAX_BODY_BYTES): send it in parts")


def documented(spec: dict[str, Any], partial: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The OpenAPI description with the problem shape: its schemas, and every operation's error answers (422 too
    where a route is `partial`)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    shape = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(shape.pop("$defs", {}))
    schemas["Problem"] = shape
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status in [s for s in responses if str(s)[0] in "45"]:
                del responses[status]
            for status in (*DOCUMENTED, *((422,) if path in partial else ())):
                responses[str(status)] = {
                    "description": KINDS[status][1],
                    "content": {CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
    for unused in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(unused, None)
    return spec
