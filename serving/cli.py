"""`community-ml serve`, `bento build`, and batch inference with the champions: `score`, `winback`, `recommend`."""

from __future__ import annotations

import ipaddress
import os
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import typer

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.errors import DataError
from features.common.home import StateHome
from features.common.settings import Settings, project_settings
from features.dataset.store import Dataset
from features.pipelines import engines
from features.pipelines.engines import Engine, EngineOption
from serving.models.kinds import KINDS, UPLIFT, VALUE, ModelKind, Task, kinds_of

serve_app = typer.Typer()

# The item kinds of the table (product-recs, content-recs, ...): the choices of `recommend --kind`.
ItemKindName = StrEnum("ItemKindName", {k.name: k.name for k in kinds_of(Task.items)})  # type: ignore[misc]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preflight(home: StateHome, dataset: str) -> None:
    """Fails fast, with the reason, where the service could not start: no dataset, an unreachable registry,
    no champion of a kind the service needs. Without it BentoML would restart a failing worker over and over."""
    from features.pipelines.lake import fetch
    from serving.models import registry
    from serving.models.champions import cached_kinds, remote_server, server_answers, untrained

    fetch(home, dataset)  # with a lake, the home is a cache: the latest publication copied in
    Dataset(home, dataset).require()
    server = remote_server()
    if server is not None and not server_answers(server):
        if cached_kinds(home, dataset):  # the service starts on them and says so (/metadata: champions_cached_at)
            return
        raise DataError(
            f"the MLflow registry at {server} is unreachable (no answer to its health check) and this home has no "
            f"champions of {dataset!r} cached to start on"
        )
    # One quick try: MLflow otherwise retries an unreachable server for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    client = registry.connect(home)
    try:
        client.search_registered_models(max_results=1)
    except Exception as exc:  # any failure here means the same thing to the operator
        raise DataError(f"the MLflow registry at {home.mlflow_tracking_uri()} is unreachable: {exc}") from exc
    if all(registry.champion(client, dataset, k) is None for k in KINDS.values()):
        raise DataError(
            f"no champion model for dataset {dataset!r} in the registry at {home.mlflow_tracking_uri()}: "
            f"{untrained(dataset, list(KINDS.values()))}"
        )


@serve_app.command("serve")
def serve_command(
    dataset: str = typer.Option("demo", "--dataset", "-d", help="the dataset whose members are served"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(3000, help="port to listen on"),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        max=64,
        help="server processes (0: one per core); they share events through the journal, or Redis",
    ),
    challenger: str | None = typer.Option(
        None,
        "--challenger",
        help="KIND:VERSION: serve this registered version to a stable share of members beside the champion; "
        "answers and the prediction log name each member's variant",
    ),
    share: float = typer.Option(0.1, "--share", help="with --challenger: the share of members it answers"),
) -> None:
    """Serve churn, value, tiers and recommendations over HTTP (BentoML); OpenAPI at /docs.json."""
    from serving.models.champions import (
        ChallengerSetting,
        load_challenger,
        models_from_bento,
    )

    with user_errors():
        if not is_loopback(host) and not project_settings().api_key:
            raise DataError(
                f"--host {host} is reachable from other machines: set {Settings.variable('api_key')} so that every "
                "call needs an x-api-key header, or serve on 127.0.0.1"
            )
        if not models_from_bento():
            preflight(StateHome.from_env(), dataset)
        challenger_env = {}
        if challenger is not None:
            setting = ChallengerSetting.parse(challenger, share)
            load_challenger(StateHome.from_env(), dataset, setting)  # fails here, with the reason, not in a worker
            challenger_env = setting.env()
    variable = Settings.variable
    env = {
        **os.environ,
        variable("dataset"): dataset,
        "BENTOML_DO_NOT_TRACK": "true",
        variable("workers"): str(workers),
    }
    for name in (variable("challenger"), variable("challenger_share")):  # only the challenger asked for now
        env.pop(name, None)
    env |= challenger_env
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:CommunityML", "--host", host]
    command += ["--port", str(port)]
    # The server replaces this process rather than running as its child: a supervisor's SIGTERM (systemd,
    # Kubernetes, a test) then reaches the server itself, and no orphaned server outlives the command.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


bento_app = typer.Typer(no_args_is_help=True, help="Package the service with a dataset's champion models.")


@bento_app.command("build")
def bento_build_command(
    dataset: str = DatasetOption,
    lock: bool = typer.Option(True, "--lock/--no-lock", help="pin every dependency in the Bento (needs the index)"),
) -> None:
    """Build a Bento (bentofile.yaml) that carries the code, the locked dependencies and the dataset's champions."""
    from serving.bento import build_bento

    with user_errors():
        home = StateHome.from_env()
        Dataset(home, dataset).require()
        tag = build_bento(home, dataset, Path(__file__).resolve().parents[1], lock_packages=lock)
    typer.echo(f"built {tag}: serve it with `bentoml serve {tag}` (set COMMUNITY_ML_HOME)")


# What a win-back list is ranked by: a kind's output (expected value, or the lift a push is expected to make).
WinbackOrder = StrEnum("WinbackOrder", {k.name: k.name for k in (VALUE, UPLIFT)})  # type: ignore[misc]


AsOfOption = typer.Option("latest", "--as-of", help="score members as of this date (default: after the data)")
OutOption = typer.Option(..., "--out", help="FILE.parquet or FILE.csv")


@serve_app.command("score")
def score_command(
    dataset: str = DatasetOption,
    out: Path = OutOption,
    as_of: str = AsOfOption,
    tiers_config: Path | None = typer.Option(None, "--tiers", help="tier shares (configs/tiers.yaml)"),
    kinds: str | None = typer.Option(
        None,
        "--kinds",
        help="the member models to score with, e.g. churn,uplift (default: every one the dataset has a champion of)",
    ),
    engine: Engine = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """One row per member from the champions: every member model's output, the tier (with churn and value
    champions), top_reasons."""
    from features.common.config import load_config
    from features.pipelines.snapshots import resolve_as_of
    from serving.models.batch import score
    from serving.models.tiers import TierSettings

    with user_errors():
        engines.use(engine)
        target = Dataset(StateHome.from_env(), dataset).require()
        tiers = load_config(TierSettings, tiers_config, {})
        summary = score(target, resolve_as_of(target, as_of), out, tiers, member_kinds(kinds))
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    models = ", ".join(f"{k} v{m['version']} ({m['family']})" for k, m in summary.models.items())
    console().print(f"scored {summary.members:,} members of {dataset} as of {summary.as_of} with {models}")
    for name, command in summary.missing.items():
        console().print(f"no {name} champion, so no {KINDS[name].output}: train one with `{command}`")
    if summary.tier_shares:
        console().print("tiers: " + ", ".join(f"{t} {s:.0%}" for t, s in summary.tier_shares.items()))
    for output, why in summary.unavailable.items():
        console().print(f"no {output}: {why}")
    console().print(f"written to {summary.out}")


@serve_app.command("profile")
def profile_command(
    dataset: str = DatasetOption,
    out: Path = OutOption,
    as_of: str = AsOfOption,
    as_json: bool = JsonOption,
) -> None:
    """One row per member: the models' outputs, favourites, preferred channel, active hours, price sensitivity,
    segments (configs/segments.yaml) and tags (configs/tags.yaml). `POST /profile` answers the same per member."""
    from features.pipelines.snapshots import resolve_as_of
    from serving.models.batch import profile

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        summary = profile(target, resolve_as_of(target, as_of), out)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    models = ", ".join(f"{k} v{m['version']} ({m['family']})" for k, m in summary.models.items()) or "no models"
    console().print(f"profiled {summary.members:,} members of {dataset} as of {summary.as_of} ({models})")
    for title, counts in (("segments", summary.segments), ("learned types", summary.learned), ("tags", summary.tags)):
        if counts:
            console().print(f"{title}: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    for field, why in summary.unknown.items():
        console().print(f"cannot tell {field}: {why}")
    console().print(f"written to {summary.out}")


def member_kinds(names: str | None) -> list[ModelKind] | None:
    """`--kinds churn,uplift` as member kinds (None: every one there is); a clear error naming the choices."""
    if names is None:
        return None
    choices = [k.name for k in kinds_of(Task.member)]
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    wrong = [n for n in wanted if n not in choices]
    if wrong or not wanted:
        raise DataError(f"--kinds {names!r}: choose among {', '.join(choices)}, separated by commas")
    return [KINDS[n] for n in dict.fromkeys(wanted)]


@serve_app.command("winback")
def winback_command(
    dataset: str = DatasetOption,
    out: Path = OutOption,
    top: int | None = typer.Option(None, "--top", min=1, help="only the N members worth most"),
    by: WinbackOrder = typer.Option(
        VALUE.name,
        "--by",
        help="rank by expected value, or by the lift the uplift champion expects from the push (members it "
        "expects no lift from are left out)",
    ),
    audience: str | None = typer.Option(
        None, "--audience", help="only members of segment:NAME or tag:NAME (configs/segments.yaml, configs/tags.yaml)"
    ),
    engine: Engine = EngineOption,
    as_of: str = AsOfOption,
) -> None:
    """The win-back push list: churn-risk members with marketing consent, the most valuable (or most persuadable)
    first."""
    from features.pipelines.snapshots import resolve_as_of
    from serving.models.batch import winback

    with user_errors():
        engines.use(engine)
        target = Dataset(StateHome.from_env(), dataset).require()
        summary = winback(target, resolve_as_of(target, as_of), out, top, by.value, audience)
    console().print(
        f"{summary['members']:,} churn-risk members on the win-back list ({summary['without_consent']:,} without "
        f"marketing consent left out), written to {out}"
    )


@serve_app.command("recommend")
def recommend_command(
    dataset: str = DatasetOption,
    kind: ItemKindName = typer.Option(..., "--kind", help="the recommender: " + ", ".join(ItemKindName)),
    out: Path = OutOption,
    k: int = typer.Option(10, "--k", min=1, max=100, help="items per member (or per item, with --similar)"),
    similar: bool = typer.Option(False, "--similar", help="for every item, the k most similar items instead"),
    members: str | None = typer.Option(
        None,
        "--members",
        help="a file with a member_id column, or segment:NAME or tag:NAME (the profile's); default: all",
    ),
    exclude_seen: bool | None = typer.Option(
        None, "--exclude-seen/--include-seen", help="default: the kind's (products include, content excludes)"
    ),
    exclude: list[str] = typer.Option([], "--exclude", help="an item id never to recommend (repeatable)"),
    category: str | None = typer.Option(None, help="only items of this category / content type"),
    published_since: datetime | None = typer.Option(
        None,
        "--published-since",
        formats=["%Y-%m-%d"],
        help="only items published on or after this day (YYYY-MM-DD): what's new for each member",
    ),
    engine: Engine = EngineOption,
    consent_recorded_elsewhere: bool = typer.Option(
        False,
        "--consent-recorded-elsewhere",
        help="members with no consent recorded in the dataset (e.g. no members table) agreed elsewhere; "
        "a recorded refusal still leaves a member out",
    ),
) -> None:
    """member_id, rank, item_id, score (and cold_start) for every member with marketing consent (a push list),
    from the dataset's champion recommender."""
    from features.dataset.readers import read_raw
    from features.pipelines.snapshots import resolve_as_of
    from serving.models.batch import AUDIENCE_KINDS, RecommendRequest, audience_of, recommend, similar_items

    with user_errors():
        engines.use(engine)
        target = Dataset(StateHome.from_env(), dataset).require()
        model_kind = KINDS[kind.value]
        if similar:
            table, champion = similar_items(target, model_kind, out, k)
            source = f"{kind.value} {champion.family} v{champion.version}"
            console().print(f"{len(table):,} similar items from {source} written to {out}")
            return
        wanted = None
        if members is not None and members.partition(":")[0] in AUDIENCE_KINDS:
            wanted = audience_of(target, resolve_as_of(target, "latest"), members)
        elif members is not None:
            raw = read_raw(Path(members))
            if "member_id" not in raw.frame:
                raise DataError(f"{members}: needs a member_id column; it has {', '.join(raw.frame.columns)}")
            wanted = raw.frame["member_id"].dropna().astype(str).str.strip().tolist()
        request = RecommendRequest(
            k=k,
            include_seen=None if exclude_seen is None else not exclude_seen,
            exclude=tuple(exclude),
            category=category,
            published_since=None if published_since is None else published_since.date(),
            consent_recorded_elsewhere=consent_recorded_elsewhere,
        )
        table, champion, left_out = recommend(target, model_kind, out, request, wanted)
    if left_out:
        console().print(f"{left_out:,} members without marketing consent left out of the list")
    source = f"{kind.value} {champion.family} v{champion.version}"
    console().print(f"{len(table):,} recommendations from {source} written to {out}")
