"""The prediction API: one BentoML service for churn, value, tiers and recommendations.

Started by `community-ml serve` or `bentoml serve` from the repository root. It serves the dataset named by
`$COMMUNITY_ML_DATASET` (default `demo`) with the champions of the MLflow registry; `/reload` swaps in new
champions and a new snapshot atomically: a request holds the state it started with until it finishes.
"""

from __future__ import annotations

import gc
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

import bentoml
from pydantic import ConfigDict, Field, ValidationError

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.settings import project_settings
from features.dataset.event_log import Unavailable
from features.pipelines.lake import newer_publication
from serving.coalesce import Coalescer
from serving.hot_path import HotPath, after_answer, routes
from serving.models.base import ListRules
from serving.models.champions import registered_versions
from serving.models.kinds import CHURN, CONTENT_RECS, PRODUCT_RECS, VALUE, ModelKind, Task, kinds_of
from serving.prediction_log import PredictionLog
from serving.problems import FieldRefused, ProblemDetails, field_path, problem, send_problem
from serving.state import (
    CHALLENGER,
    ServingState,
    load_state,
    member_next_action,
    member_profiles,
    member_scores,
    post_events,
    post_items,
    recommendations,
    similar_items,
)

INLINE_MEMBERS = 10  # up to this many members per request, answers are computed on the event loop
MAX_EVENTS = 10_000  # per table and call
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
OPEN_PATHS = {"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/docs"}

# The endpoints the hot path answers (serving/hot_path.py; a test checks the list against the service's own).
HOT_ROUTES = (
    "/score",
    "/churn",
    "/value",
    "/profile",
    "/next_action",
    "/recommend_products",
    "/recommend_content",
    "/recommend",
)
# The service object this worker serves, once BentoML has made it: the hot path (serving/hot_path.py) calls its
# endpoints. One per worker process (a test's in-process app included).
_SERVED: list[CommunityML] = []

MemberIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1, max_length=1000)]
TopK = Annotated[int, Field(ge=1, le=100)]


def api(func: Any = None, /, **options: Any) -> Any:
    """`bentoml.api` whose request body refuses a top-level field the endpoint does not take: BentoML's own
    input model ignores one, so a misspelt field (`"order"` for `"orders"`) would answer 200 with its default
    and the client's data would be lost. Refused, it is a 400 naming the field (`loc`, "extra_forbidden")."""

    def strict(endpoint: Any) -> Any:
        loose = bentoml.IODescriptor.from_input(endpoint, skip_self=True, skip_names=("ctx",))
        forbid = {"model_config": ConfigDict(extra="forbid"), "__module__": endpoint.__module__}
        return bentoml.api(input_spec=type(loose.__name__, (loose,), forbid), **options)(endpoint)

    return strict if func is None else strict(func)


class NoRequestValues(logging.Filter):
    """BentoML logs a traceback for every request its input model rejects, and pydantic's message quotes the
    input: member ids would land in the server log. This keeps the line and drops the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ValidationError):
            record.msg = f"{record.getMessage()}: bad input ({record.exc_info[1].error_count()} problems)"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


class ApiKeyMiddleware:
    """Requires `x-api-key` on every API call when `$COMMUNITY_ML_API_KEY` is set (read per call: a changed key
    applies at once). Plain ASGI rather than
    Starlette's BaseHTTPMiddleware, which wraps every request and response in extra tasks and costs throughput."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        expected = project_settings().api_key
        if expected and scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"x-api-key", b"")
            if not hmac.compare_digest(given, expected.encode()):  # bytes: any header value compares, in constant time
                await send_problem(send, problem(401, "missing or wrong x-api-key header"))
                return
        await self.app(scope, receive, send)


@bentoml.service(
    name="community-ml",
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},
    # No span for the calls the hot path answers (nothing exports them unless tracing is configured, and starting
    # one costs more than the answer).
    tracing={"excluded_urls": list(HOT_ROUTES)},
    # Workers share events through the journal (in-process stores) or Redis ($COMMUNITY_ML_REDIS_URL).
    # (`community-ml serve --workers N` sets it; 0 or unset: one per core, a worker answers on one core at a time)
    workers=project_settings().workers or os.cpu_count() or 1,
)
class CommunityML:
    def __init__(self) -> None:
        logging.getLogger(BENTOML_REQUEST_LOGGER).addFilter(NoRequestValues())
        self.home = StateHome.from_env()
        self.dataset = project_settings().dataset
        self.state: ServingState = load_state(self.home, self.dataset)
        _settle()
        self.log = PredictionLog(self.home, self.dataset)
        self._reloading = threading.Lock()
        self.last_reload_error: str | None = None
        self._score_calls: Coalescer[None, ServingState] = Coalescer(self._scored, INLINE_MEMBERS)
        self._recommend_calls: Coalescer[tuple[ModelKind, ListRules], ServingState] = Coalescer(
            self._recommended, INLINE_MEMBERS
        )
        _SERVED[:] = [self]
        period = project_settings().champion_poll_seconds
        if period > 0:  # a champion promoted, or a snapshot published, on the training host reaches this worker
            threading.Thread(target=self._watch_champions, args=(period,), name="champion-watch", daemon=True).start()

    def _watch_champions(self, period: float) -> None:
        """Reloads when the registry's champions differ from those served (a promotion anywhere) or the lake holds
        a later publication than this home's copy; a registry or lake that does not answer is asked again next
        time, the service answering with what it has."""
        while True:
            time.sleep(period)
            try:
                if self.champions_changed():
                    logging.getLogger(__name__).warning("a champion was promoted: reloading")
                    self._reload()
                elif newer_publication(self.home, self.dataset):
                    logging.getLogger(__name__).warning("a newer snapshot was published to the lake: reloading")
                    self._reload()
            except Exception:
                logging.getLogger(__name__).exception("could not ask the registry for champions; asking again later")

    def champions_changed(self) -> bool:
        """Whether the registry names other champions than those served (not the challenger: it is chosen)."""
        registered = registered_versions(self.home, self.dataset)
        return registered is not None and registered != self.state.champions.versions()

    def _told(self, exc: BaseException) -> str:
        """An error's message as a caller may read it: the server's files are its own business, so the state
        home's path is replaced by its name."""
        text = str(exc)
        for root in {str(self.home.root), str(self.home.root.resolve())}:
            text = text.replace(root, "$COMMUNITY_ML_HOME")
        return text

    def _scored(self, _: None, member_ids: list[str]) -> tuple[ServingState, list[tuple[dict, dict]]]:
        """Every member's answer and the feature values behind it, from one state."""
        state = self.state  # one state for the whole call
        records, inputs = member_scores(state, member_ids)
        return state, list(zip(records, inputs, strict=True))

    async def _scores_async(
        self, endpoint: str, member_ids: list[str], kind: ModelKind | None = None
    ) -> dict[str, Any]:
        """`kind`: the model the endpoint is named after (/churn, /value), which must have a champion; /score
        answers with whichever member champions there are."""
        started = time.perf_counter()
        try:
            if kind is not None:
                self.state.champions[kind]  # none: its error says how to train one
        except DataError as exc:
            raise bentoml.exceptions.NotFound(self._told(exc)) from exc
        try:
            state, scored = await self._score_calls(None, member_ids)
        except LookupError as exc:  # no member champion at all
            raise bentoml.exceptions.NotFound(self._told(exc)) from exc
        members = [c.kind for c in state.champions.of(Task.member)]
        versions = state.champions.versions(Task.member)
        after_answer(
            lambda: self._log(
                state, endpoint, [{**record, "inputs": values} for record, values in scored], versions, started
            )
        )
        answer = {"as_of": str(state.as_of), "models": state.models(*members), "members": [r for r, _ in scored]}
        if unavailable := state.unavailable:
            answer["unavailable"] = unavailable
        return _with_challenger(answer, state, Task.member)

    def _log(
        self,
        state: ServingState,
        endpoint: str,
        records: list[dict[str, Any]],
        versions: dict[str, str],
        started: float,
        params: dict[str, Any] | None = None,
    ) -> None:
        """Log lines name the versions that answered: a challenger's members, the challenger's version. Called once
        the answer is sent (`after_answer`): the latency logged is the caller's, serialisation included."""
        challenger = state.challenger
        if challenger is None:
            self.log.write(endpoint, records, versions, started, params, state.as_of)
            return
        chosen = [r for r in records if r.get("variant") == CHALLENGER]
        kind = challenger.champion.kind.name
        for group, named in (
            ([r for r in records if r.get("variant") != CHALLENGER], versions),
            (chosen, {**versions, kind: challenger.champion.version} if kind in versions else versions),
        ):
            if group:
                self.log.write(endpoint, group, named, started, params, state.as_of)

    @api
    def events(
        self,
        ctx: bentoml.Context,
        orders: Annotated[list[dict[str, Any]], Field(max_length=MAX_EVENTS)] = [],  # noqa: B006
        engagements: Annotated[list[dict[str, Any]], Field(max_length=MAX_EVENTS)] = [],  # noqa: B006
        impressions: Annotated[list[dict[str, Any]], Field(max_length=MAX_EVENTS)] = [],  # noqa: B006
        contacts: Annotated[list[dict[str, Any]], Field(max_length=MAX_EVENTS)] = [],  # noqa: B006
    ) -> dict[str, Any]:
        """Orders, engagements, impressions (items shown to a member: member_id, ts, item_id, source) and contacts
        (marketing sent to a member: member_id, ts, channel, action, list_id, item_id) as they happen, in the
        canonical form of `data import`. Good events are kept in the journal (durable before this
        answers) and count in their members' next answers (impressions: in new items' click-through); each bad one
        is named with its table, position, field and reason, with status 422. `community-ml data ingest` adds
        them to the dataset's tables."""
        batch = {"orders": orders, "engagements": engagements, "impressions": impressions, "contacts": contacts}
        if not any(batch.values()):
            raise bentoml.exceptions.InvalidArgument(
                "the body has no events: post a list of `orders`, `engagements`, `impressions` and/or `contacts`"
            )
        return self._journaled(ctx, post_events, batch, "events")

    @api
    def items(
        self,
        ctx: bentoml.Context,
        products: Annotated[list[dict[str, Any]], Field(max_length=MAX_EVENTS)] = [],  # noqa: B006
        contents: Annotated[list[dict[str, Any]], Field(max_length=MAX_EVENTS)] = [],  # noqa: B006
    ) -> dict[str, Any]:
        """Products and contents as they are published or change, in the canonical form of `data import --table
        products|contents` (an item posted again replaces it: its status, date or attributes). Good items are kept
        in the journal (durable before this answers) and are recommended from the next answer on (never before
        their published_at; never when active is false), by every worker; each bad one is named with its table,
        position, field and reason, with status 422. `community-ml data ingest` adds them to the catalogue."""
        if not products and not contents:
            raise bentoml.exceptions.InvalidArgument(
                "the body has no items: post a list of `products` and/or `contents`"
            )
        return self._journaled(ctx, post_items, {"products": products, "contents": contents}, "items")

    def _journaled(
        self,
        ctx: bentoml.Context,
        post: Callable[[ServingState, dict[str, list[dict[str, Any]]]], dict[str, Any]],
        batch: dict[str, list[dict[str, Any]]],
        what: str,
    ) -> dict[str, Any]:
        """A posted batch checked and kept: the answer, or 422 naming each refused row (the good ones kept)."""
        try:
            result = post(self.state, {table: rows for table, rows in batch.items() if rows})
        except Unavailable as exc:  # nothing was acknowledged: the caller posts again later
            raise bentoml.exceptions.ServiceUnavailable(self._told(exc)) from exc
        except DataError as exc:
            raise bentoml.exceptions.InvalidArgument(self._told(exc)) from exc
        if not (rejected := result["rejected"]):
            return result
        ctx.response.status_code = 422
        named = [(field_path((r["table"], r["index"], r["field"])), str(r["reason"])) for r in rejected]
        detail = f"{len(rejected)} {what} refused, {result['accepted']} kept: each refused one is named in errors"
        return problem(422, detail, named, **result)

    @api
    async def score(self, member_ids: MemberIds) -> dict[str, Any]:
        """Every member model's answer (churn probability, expected value, ...), the tier and the top reasons
        per member; unknown members are cold start."""
        return await self._scores_async("score", member_ids)

    @api
    async def churn(self, member_ids: MemberIds) -> dict[str, Any]:
        """Calibrated churn probability, tier and top reasons per member (unknown members: cold start)."""
        return await self._scores_async(CHURN.name, member_ids, CHURN)

    @api
    async def value(self, member_ids: MemberIds) -> dict[str, Any]:
        """Expected spend over the horizon per member, with tier."""
        return await self._scores_async(VALUE.name, member_ids, VALUE)

    @api
    async def profile(self, member_ids: MemberIds) -> dict[str, Any]:
        """Who each member is: the models' outputs (churn probability with reasons, value, uplift, tier),
        favourite categories, topics and content types, preferred channel, active hours and weekdays, price
        sensitivity, segments (configs/segments.yaml), tags (configs/tags.yaml), consent; from the snapshot plus
        the member's events since. Unknown members get a cold-start profile; `unknown` says what the dataset
        cannot tell and why."""
        state = self.state
        try:
            profiles = member_profiles(state, member_ids)
        except LookupError as exc:
            raise bentoml.exceptions.NotFound(self._told(exc)) from exc
        except DataError as exc:  # a bad rule in the profile's files: the service's configuration, not the call
            raise bentoml.exceptions.ServiceUnavailable(self._told(exc)) from exc
        members = [c.kind for c in state.champions.of(Task.member)]
        return {"as_of": str(state.as_of), "models": state.models(*members), "members": profiles}

    @api
    async def next_action(
        self, member_id: Annotated[str, Field(min_length=1, max_length=128)], at: datetime | None = None
    ) -> dict[str, Any]:
        """The member's next action (offer, product-push, content-push or nothing) at `at` (default: now), by the
        contact policy (configs/outreach.yaml) against the live contact log: what `community-ml outreach plan`
        would choose for them, a contact posted to /events counting at once; `nothing` says why."""
        try:
            return member_next_action(self.state, member_id, at or datetime.now(UTC).replace(tzinfo=None))
        except DataError as exc:  # a bad contact policy: the service's configuration, not the call
            raise bentoml.exceptions.ServiceUnavailable(self._told(exc)) from exc

    def _recommended(
        self, asked: tuple[ModelKind, ListRules], member_ids: list[str]
    ) -> tuple[ServingState, list[dict[str, Any]]]:
        """Every member's list by one kind's champion under one set of rules."""
        kind, rules = asked
        state = self.state
        try:
            return state, recommendations(state, kind, member_ids, rules)
        except LookupError as exc:
            raise bentoml.exceptions.NotFound(self._told(exc)) from exc

    async def _recommend_async(
        self,
        kind: ModelKind,
        member_ids: list[str],
        k: int,
        exclude: list[str],
        category: str | None,
        include_seen: bool | None,
        published_since: date | None = None,
    ) -> dict[str, Any]:
        """Like the scores, the requests that arrive together with the same kind and rules answered at once."""
        started = time.perf_counter()
        rules = ListRules(
            k=k, include_seen=include_seen, exclude=tuple(exclude), category=category, published_since=published_since
        )
        state, records = await self._recommend_calls((kind, rules), member_ids)
        versions = {kind.name: state.champions[kind].version}
        params = {
            "k": k,
            "category": category,
            "published_since": None if published_since is None else str(published_since),
        }
        after_answer(lambda: self._log(state, kind.name, records, versions, started, params))
        answer = {"as_of": str(state.as_of), "models": state.models(kind), "members": records}
        return _with_challenger(answer, state, Task.items, kind)

    @api
    async def recommend_products(
        self,
        member_ids: MemberIds,
        k: TopK = 10,
        exclude: Annotated[list[str], Field(max_length=1000)] = [],  # noqa: B006 - pydantic copies defaults
        category: str | None = None,
        include_seen: bool | None = None,
        published_since: date | None = None,
    ) -> dict[str, Any]:
        """Top-k products per member; already-bought products allowed unless include_seen is false. Products
        launched since training come in where they fit the member (configs/recommenders.yaml); with
        published_since (a day), only products published on or after it: what's new for the member."""
        return await self._recommend_async(
            PRODUCT_RECS, member_ids, k, exclude, category, include_seen, published_since
        )

    @api
    async def recommend_content(
        self,
        member_ids: MemberIds,
        k: TopK = 10,
        exclude: Annotated[list[str], Field(max_length=1000)] = [],  # noqa: B006
        content_type: str | None = None,
        include_seen: bool | None = None,
        published_since: date | None = None,
    ) -> dict[str, Any]:
        """Top-k content items per member; already-seen content excluded unless include_seen is true. Posts
        published since training come in where they fit the member; with published_since (a day), only posts
        published on or after it."""
        return await self._recommend_async(
            CONTENT_RECS, member_ids, k, exclude, content_type, include_seen, published_since
        )

    @api
    async def recommend(
        self,
        kind: Annotated[str, Field(min_length=1, max_length=64)],
        member_ids: MemberIds,
        k: TopK = 10,
        exclude: Annotated[list[str], Field(max_length=1000)] = [],  # noqa: B006
        category: str | None = None,
        include_seen: bool | None = None,
        published_since: date | None = None,
    ) -> dict[str, Any]:
        """Top-k items per member from the champion of any item kind (product-recs, content-recs, ...); with
        published_since, only items published on or after that day."""
        item_kinds = {k.name: k for k in kinds_of(Task.items)}
        if kind not in item_kinds:
            raise FieldRefused("kind", f"{kind!r} is not one of {', '.join(item_kinds)}")
        return await self._recommend_async(
            item_kinds[kind], member_ids, k, exclude, category, include_seen, published_since
        )

    @api
    def similar_products(
        self, product_id: Annotated[str, Field(min_length=1, max_length=128)], k: TopK = 10
    ) -> dict[str, Any]:
        """The products most like this one (from the product recommender's item factors)."""
        state = self.state
        try:
            items = similar_items(state, PRODUCT_RECS, product_id, k)
        except LookupError as exc:
            raise bentoml.exceptions.NotFound(self._told(exc)) from exc
        return {"product_id": product_id, "models": state.models(PRODUCT_RECS), "items": items}

    @api(route="/metadata")
    def metadata(self) -> dict[str, Any]:
        """Model names and versions, the as-of date of the features, and the last reload's outcome."""
        return self._metadata()

    def _metadata(self) -> dict[str, Any]:
        state = self.state
        return {
            "dataset": state.dataset,
            "as_of": str(state.as_of),
            "models": state.models(),
            # Set where the registry did not answer at load: the champions are this replica's cached copies.
            "champions_cached_at": state.champions.cached_at,
            "challenger": None if state.challenger is None else state.challenger.describe(),
            **state.online.describe(),
            "loaded_at": state.loaded_at,
            "last_reload_error": self.last_reload_error,
            "worker_pid": os.getpid(),
        }

    @api(route="/health")
    def health(self) -> dict[str, Any]:
        """ok, or degraded when the last reload failed: the service still answers, with the models it has."""
        return {
            "status": "degraded" if self.last_reload_error else "ok",
            "last_reload_error": self.last_reload_error,
            "models": self.state.models(),
            "loaded_at": self.state.loaded_at,
        }

    @api(route="/reload")
    def reload(self, ctx: bentoml.Context) -> dict[str, Any]:
        """Loads the current champions and snapshot, then swaps them in at once; on failure keeps serving (503, and
        /metadata says why)."""
        failed = self._reload()
        if failed is not None:
            ctx.response.status_code = 503
            return problem(503, f"reload failed, still serving: {failed}")
        return self._metadata()

    def _reload(self) -> str | None:
        """Loads the current champions and snapshot and swaps them in at once; on failure keeps the state and
        says why."""
        with self._reloading:
            try:
                fresh = load_state(self.home, self.dataset)
            except Exception as exc:
                told = self._told(exc)
                self.last_reload_error = f"{type(exc).__name__}: {told}"
                logging.getLogger(__name__).exception("reload failed, still serving")
                return told
            self.state, self.last_reload_error = fresh, None
            _settle()
        return None


def _with_challenger(
    answer: dict[str, Any], state: ServingState, task: Task, kind: ModelKind | None = None
) -> dict[str, Any]:
    """An answer that a challenger may have given names it beside the champions (each member names its variant)."""
    challenger = state.challenger
    if challenger is None or not challenger.serves(task, kind):
        return answer
    return {**answer, "challenger": challenger.describe()}


def _settle() -> None:
    """Sets what is alive now (the loaded models, snapshot and population context: millions of objects) aside
    from the garbage collector. Otherwise each full collection walks them all while requests wait: pauses of a
    tenth of a second, the tail of the latency. A reload lets the old state go first."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _served() -> CommunityML | None:
    return _SERVED[0] if _SERVED else None


# Outermost first: every error answer in one shape, then the API key is checked before the hot path answers.
CommunityML.add_asgi_middleware(ProblemDetails, partial=("/events",))
CommunityML.add_asgi_middleware(ApiKeyMiddleware)
CommunityML.add_asgi_middleware(HotPath, routes=routes(CommunityML), instance=_served)
