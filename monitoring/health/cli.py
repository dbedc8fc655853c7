"""`community-ml health`: the community's indicators against the plan's targets, for ops and for schedulers."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.home import StateHome
from features.dataset.store import Dataset
from monitoring.health.report import SegmentBy

if TYPE_CHECKING:
    import pandas as pd

    from monitoring.health.report import HealthReport

health_app = typer.Typer()


@health_app.command("health")
def health_command(
    dataset: str = DatasetOption,
    as_of: str = typer.Option("latest", "--as-of", help="the end of the windows (YYYY-MM-DD) or 'latest'"),
    by: SegmentBy | None = typer.Option(
        None,
        "--by",
        help="also per group, persona, city, age band, tier, segment or tag (a member in several counts in each)",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="indicators (default: configs/health.yaml)"),
    as_json: bool = JsonOption,
    record: bool = typer.Option(
        True, "--record/--no-record", help="add the figures to the ops console (`community-ml ops`) as a snapshot"
    ),
) -> None:
    """Each indicator's value, target, change on the window before and status; segments ranked by how far they
    fall short. Exits 1 when a watched indicator crosses its floor (configs/health.yaml `watch`)."""
    from features.pipelines.snapshots import resolve_as_of
    from monitoring.health.indicators import load_health_settings
    from monitoring.health.report import compute_health

    with user_errors():
        settings = load_health_settings(config)
        home = StateHome.from_env()
        target = Dataset(home, dataset).require()
        day = resolve_as_of(target, as_of)
        segments = None
        if by is SegmentBy.tier:
            segments = _tiers(target, day)
        elif by in (SegmentBy.segment, SegmentBy.tag):
            from serving.models.batch import memberships

            segments = memberships(target, day, by.value)
        report = compute_health(target, day, settings, by, segments)
        if record:
            from monitoring.console import record_health

            record_health(home, report, settings)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        _print(report)
    if report.watch_breaches:
        raise typer.Exit(1)


def _tiers(dataset: Dataset, as_of: date) -> pd.DataFrame:
    """(member_id, segment) from the dataset's churn and value champions, as batch scoring tiers them."""
    import pandas as pd

    from features.common.errors import DataError
    from serving.models.batch import score_members
    from serving.models.champions import load_champions
    from serving.models.kinds import CHURN, VALUE
    from serving.models.tiers import tiers_unavailable

    champions = load_champions(dataset.home, dataset.name, optional=True)
    if why := tiers_unavailable(champions):
        raise DataError(f"{dataset.name}: no tiers to split by: {why}")
    scored, _ = score_members(dataset, as_of, champions=champions, kinds=[CHURN, VALUE])
    return pd.DataFrame({"member_id": scored["member_id"].astype(str), "segment": scored["tier"].astype(str)})


def _print(report: HealthReport) -> None:
    from monitoring.health.report import shown

    out = console()
    table = Table(title=f"{report.dataset}: community health as of {report.as_of}", title_justify="left")
    for column in ("indicator", "dimension", "figure", "target", "change", "status"):
        table.add_column(column, justify="left" if column in ("indicator", "dimension", "status") else "right")
    for v in report.community():
        change = "" if v.change is None else f"{v.change:+.3g}"
        target = "" if v.target is None else ("≤ " if v.better == "lower" else "≥ ") + shown(v.target)
        style = "green" if v.status == "met" else "red" if v.status == "short of target" else "dim"
        name = v.indicator + (" (proxy)" if v.proxy else "")
        table.add_row(name, f"{v.dimension}/{v.area}", shown(v.value), target, change, f"[{style}]{v.status}[/]")
    out.print(table)
    if report.by:
        ranked = Table(title=f"by {report.by}, furthest short of the targets first", title_justify="left")
        for column in ("rank", report.by, "members", "shortfall", "worst indicator"):
            ranked.add_column(column)
        for i, r in enumerate(report.ranking, 1):
            ranked.add_row(str(i), r.segment, f"{r.members:,}", f"{r.shortfall:.2f}", r.worst)
        out.print(ranked)
        if report.too_small:
            out.print(f"not ranked (too few members): {', '.join(report.too_small)}")
    for line in report.watch_breaches:
        out.print(f"[red]watch[/red] {line}", highlight=False)


@health_app.command("ops")
def ops_command(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8001, "--port", help="port to listen on (the API serves on 3000)"),
) -> None:
    """Serve the ops console: Evidently's UI on this state home's workspace, a project per dataset with its
    health and drift dashboards (written by `community-ml health` and `community-ml monitor report|check`)."""
    from monitoring.console import serve_console

    with user_errors():
        serve_console(StateHome.from_env(), host, port)
