"""`community-ml features ...`: build point-in-time feature snapshots and show the feature catalog."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.home import StateHome
from features.dataset.store import Dataset
from features.pipelines import engines
from features.pipelines.engines import Engine, EngineOption

features_app = typer.Typer(no_args_is_help=True, help="Build point-in-time feature snapshots.")


@features_app.command("build")
def build_command(
    dataset: str = DatasetOption,
    as_of: str = typer.Option("latest", "--as-of", help="cutoff date T (YYYY-MM-DD), or 'latest' for serving"),
    horizon_days: int = typer.Option(90, "--horizon-days", help="label horizon H in days"),
    churn_needs_no_engagement: bool = typer.Option(
        False, help="count a member as churned only with no order and no engagement in the horizon"
    ),
    force: bool = typer.Option(False, "--force", help="rebuild even when nothing changed"),
    engine: Engine = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """Features as of T from events before T; labels from the H days after T where the data reaches them. Events
    the service accepted since the last build are ingested into the tables first."""
    from features.dataset.event_log import ingest
    from features.pipelines.snapshots import SnapshotSettings, build_snapshot, resolve_as_of

    with user_errors():
        engines.use(engine)
        target = Dataset(StateHome.from_env(), dataset).require()
        ingested = ingest(target)
        if ingested.segments:
            typer.echo(f"ingested {sum(ingested.events.values()):,} events from the service's journal", err=True)
        settings = SnapshotSettings(
            as_of=resolve_as_of(target, as_of),
            horizon_days=horizon_days,
            churn_needs_no_engagement=churn_needs_no_engagement,
        )
        result = build_snapshot(target, settings, force=force)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    out = console()
    verb = "reused" if result.reused else f"built in {result.seconds:.1f} s"
    out.print(
        f"snapshot of {result.dataset} as of {result.as_of}: {result.members:,} members x "
        f"{result.features} features ({verb})"
    )
    if result.labels_written:
        out.print(
            f"labels for {horizon_days} days: {result.labelled_members:,} members, churn rate {result.churn_rate:.1%}"
        )
    else:
        out.print(f"no labels: the data does not reach {horizon_days} days past {result.as_of}")
    out.print(f"written to {result.path}")


@features_app.command("catalog")
def catalog_command(as_json: bool = JsonOption) -> None:
    """Every declared feature, model input and label: its meaning, window, type, what a dataset needs for it
    to exist, and how the online store keeps it current as events arrive (add, least, greatest, derive: at once;
    build: at the next build). Anchored features grow with the calendar (ages); models read their relative
    counterparts."""
    from features.pipelines.schema import FEATURES, LABELS, MODEL_INPUTS

    def row(name: str, source: str, window: str, dtype: str, needs: str, online: str, meaning: str) -> dict[str, str]:
        return {
            "name": name,
            "source": source,
            "window": window,
            "dtype": dtype,
            "needs": needs,
            "online": online,
            "meaning": meaning,
        }

    rows = (
        [
            row(f.name, f.source, f.window, f.dtype, f.needs + " (anchored)" * f.anchored, f.online_rule, f.meaning)
            for f in FEATURES
        ]
        + [row(x.name, "model input", x.window, x.dtype, "orders", "per request", x.meaning) for x in MODEL_INPUTS]
        + [row(x.name, "orders", x.window, x.dtype, "label", "-", x.meaning) for x in LABELS]
    )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="features (as of T, from events before T) and labels (the H days from T)")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    console().print(table)


@features_app.command("publish")
def publish_command(
    dataset: str = DatasetOption,
    as_of: str = typer.Option("latest", "--as-of", help="the snapshot to publish: YYYY-MM-DD or latest"),
    as_json: bool = JsonOption,
) -> None:
    """Puts the dataset's tables and its snapshot in the lake ($COMMUNITY_ML_LAKE), building the snapshot where
    missing: what replicas on other machines copy and serve (they look at their start and reload)."""
    from features.pipelines.lake import publish
    from features.pipelines.snapshots import SnapshotSettings, build_snapshot, resolve_as_of

    with user_errors():
        data = Dataset(StateHome.from_env(), dataset).require()
        day = resolve_as_of(data, as_of)
        build_snapshot(data, SnapshotSettings(as_of=day))  # reused when up to date
        said = publish(data, day)
    if as_json:
        typer.echo(json.dumps(said, indent=2))
        return
    typer.echo(f"published {dataset} (snapshot as of {said['as_of']}, {len(said['table_times_ns'])} files) to the lake")
