"""The hot path of the HTTP API: JSON calls to the service's async endpoints, answered by a thin ASGI layer in
front of BentoML's per-request machinery.

BentoML 1.4 spends about 1.5 ms of CPU on every request besides the endpoint's own work (an OpenTelemetry span,
Prometheus histograms, its input and output models, a context per request): an endpoint that returns a constant
answers about 650 requests/s on one worker of this 2-core machine, where uvicorn alone answers 16,000
(experiments/results/serving.md). So for the endpoints callers wait on, this layer reads the body, validates it with
the endpoint's own input model (the strict model BentoML would use: the same 400s, naming the same fields), calls
the endpoint's own function, and writes its answer as JSON (orjson). What is written about an answer (the
prediction log) is written once it is sent. Everything else goes on to BentoML: endpoints that are not
coroutines (they run in its thread pool), those that set the response themselves (`/events`), the system routes,
other content types. BentoML's /metrics does not count the calls answered here; each of them is in the prediction
log with its latency.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

from serving.problems import CONTENT_TYPE, FieldRefused, invalid, problem, server_error

# What runs after the answer of the current call is sent; None outside this layer (then it runs at once).
_AFTER: ContextVar[list[Callable[[], None]] | None] = ContextVar("after_answer", default=None)
# The logger BentoML reports failed requests on: the service's filter keeps request values out of it.
_LOG = logging.getLogger("bentoml._internal.server.http_app")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_PROBLEM_HEADERS = [(b"content-type", CONTENT_TYPE.encode())]


def after_answer(work: Callable[[], None]) -> None:
    """Runs `work` once the current call's answer is sent (on this layer), else now."""
    pending = _AFTER.get()
    if pending is None:
        work()
    else:
        pending.append(work)


@dataclass(frozen=True)
class Route:
    name: str
    input_model: Any  # the endpoint's pydantic input model
    function: Callable[..., Any]  # the endpoint's own coroutine function, unbound


def routes(service_class: Any) -> dict[str, Route]:
    """The endpoints this layer answers, by path: coroutines without a context parameter."""
    found = {}
    for name, method in service_class.apis.items():
        if method.ctx_param is None and not method.batchable and inspect.iscoroutinefunction(method.func):
            found[method.route] = Route(name, method.input_spec, method.func)
    return found


class HotPath:
    """ASGI middleware answering JSON POSTs to `routes` with `instance()`'s endpoints (the service object the
    worker serves), and passing everything else on."""

    def __init__(self, app: Any, routes: dict[str, Route], instance: Callable[[], Any]) -> None:
        self.app, self.routes, self.instance = app, routes, instance

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        service = self.instance() if route is not None else None
        if route is None or service is None or not _is_json(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:  # the client went away
            return
        pending: list[Callable[[], None]] = []
        token = _AFTER.set(pending)
        try:
            status, answer = await _answer(route, service, body, scope)
        finally:
            _AFTER.reset(token)
        data = orjson.dumps(answer, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)
        headers = [*(_JSON_HEADERS if status < 400 else _PROBLEM_HEADERS), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        for work in pending:
            work()


async def _answer(route: Route, service: Any, body: bytes, scope: dict[str, Any]) -> tuple[int, Any]:
    """(status, answer) with the statuses BentoML's own wrapper gives (api_endpoint_wrapper), errors as problem
    details (serving/problems.py)."""
    try:
        given = route.input_model.model_validate_json(body or b"{}")
        return 200, await route.function(service, **{k: getattr(given, k) for k in type(given).model_fields})
    except ValidationError as exc:
        _failed(scope)
        return 400, invalid(exc)
    except BentoMLException as exc:
        _failed(scope)
        status = exc.error_code.value
        if status >= 500:
            return status, server_error(status)
        named = [(exc.field, exc.reason)] if isinstance(exc, FieldRefused) else []
        return status, problem(status, str(exc), named)
    except Exception:
        _failed(scope)
        return 500, server_error()


def _failed(scope: dict[str, Any]) -> None:
    _LOG.error("Exception on %s [%s]", scope["path"], scope["method"], exc_info=True)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """No content type (BentoML reads JSON then too) or a JSON one."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return True


async def _body(receive: Any) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _plain(value: Any) -> Any:
    """What orjson does not write itself: numpy scalars, dates and anything with a str."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
