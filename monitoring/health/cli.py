"""`community-ml health`: the community's indicators against the plan's targets, for ops and for schedulers."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from features.common.cli_kit import JsonOption, console, user_errors
from features.common.home import StateHome
from features.dataset.store import Dataset
from monitoring.health.report import SegmentBy

if TYPE_CHECKING:
    import pandas as pd

    from monitoring.health.cohorts import TierMoves
    from monitoring.health.report import HealthReport

health_app = typer.Typer()


@health_app.command("health")
def health_command(
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="dataset name (a folder under $COMMUNITY_ML_HOME/datasets)"
    ),
    as_of: str = typer.Option("latest", "--as-of", help="the end of the windows (YYYY-MM-DD) or 'latest'"),
    by: SegmentBy | None = typer.Option(
        None,
        "--by",
        help="also per group, group type, persona, city, age band, tier (with the moves between tiers over the "
        "month), segment or tag (a member in several counts in each); or per order channel (the order "
        "indicators) or content type (the content indicators)",
    ),
    cohorts: bool = typer.Option(False, "--cohorts", help="also print monthly retention by the month members joined"),
    targets: bool = typer.Option(
        False, "--targets", help="print every indicator's target and its source as the README's table, and stop"
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="indicators (default: configs/health.yaml)"),
    as_json: bool = JsonOption,
    record: bool = typer.Option(
        True, "--record/--no-record", help="add the figures to the ops console (`community-ml ops`) as a snapshot"
    ),
) -> None:
    """Each indicator's value, the target in force that day (milestones step from the community's start) and
    where it comes from, the change on the window before and the status; segments ranked by how far they fall
    short; each campaign's ROI. Exits 1 when a watched indicator crosses its floor (configs/health.yaml `watch`)."""
    from features.pipelines.snapshots import resolve_as_of
    from monitoring.health.indicators import load_health_settings, targets_markdown
    from monitoring.health.report import compute_health

    with user_errors():
        settings = load_health_settings(config)
        if targets:
            typer.echo(targets_markdown(settings))
            return
        home = StateHome.from_env()
        if dataset is None:
            from features.common.errors import DataError

            known = sorted(p.parent.name for p in home.datasets.glob("*/dataset.json"))
            raise DataError(f"--dataset: which dataset's health? (known datasets: {', '.join(known) or 'none yet'})")
        target = Dataset(home, dataset).require()
        day = resolve_as_of(target, as_of)
        segments, moves = None, None
        if by is SegmentBy.tier:
            segments, moves = _tiers_and_moves(target, day)
        elif by in (SegmentBy.segment, SegmentBy.tag):
            from serving.models.batch import memberships

            segments = memberships(target, day, by.value)
        report = compute_health(target, day, settings, by, segments, moves)
        if record:
            from monitoring.console import record_health

            record_health(home, report, settings)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        _print(report, cohorts)
    if report.watch_breaches:
        raise typer.Exit(1)


def _tiers_and_moves(dataset: Dataset, as_of: date) -> tuple[pd.DataFrame, TierMoves]:
    """(member_id, segment) from the dataset's churn and value champions, as batch scoring tiers them, and the
    members' moves from their tiers a month (30 days) before."""
    import pandas as pd

    from features.common.errors import DataError
    from monitoring.health.cohorts import tier_moves
    from serving.models.batch import score_members
    from serving.models.champions import load_champions
    from serving.models.kinds import CHURN, VALUE
    from serving.models.tiers import tiers_unavailable

    champions = load_champions(dataset.home, dataset.name, optional=True)
    if why := tiers_unavailable(champions):
        raise DataError(f"{dataset.name}: no tiers to split by: {why}")

    def tiers(day: date) -> pd.DataFrame:
        scored, _ = score_members(dataset, day, champions=champions, kinds=[CHURN, VALUE])
        return pd.DataFrame({"member_id": scored["member_id"].astype(str), "segment": scored["tier"].astype(str)})

    month_before = as_of - timedelta(days=30)
    now = tiers(as_of)
    return now, tier_moves(tiers(month_before), now, month_before, as_of)


def _print(report: HealthReport, cohorts: bool) -> None:
    from monitoring.health.report import shown

    out = console()
    title = f"{report.dataset}: community health as of {report.as_of} (started {report.start}: {report.start_source})"
    table = Table(title=title, title_justify="left")
    for column in ("indicator", "dimension", "figure", "target", "source", "change", "status"):
        table.add_column(column, justify="right" if column in ("figure", "target", "change") else "left")
    reasons: dict[str, str] = {}
    for v in report.community():
        change = "" if v.change is None else f"{v.change:+.3g}"
        target = "" if v.target is None else ("≤ " if v.better == "lower" else "≥ ") + shown(v.target)
        style = "green" if v.status == "met" else "red" if v.status == "short of target" else "dim"
        name = v.indicator + (" (proxy)" if v.proxy else "")
        source = "" if v.source is None else v.source.split(":")[0]
        if v.source and source == "ours":
            reasons[v.indicator] = v.source.partition(": ")[2]
        row = (name, f"{v.dimension}/{v.area}", shown(v.value), target, source, change, f"[{style}]{v.status}[/]")
        table.add_row(*row)
    out.print(table)
    for indicator, why in reasons.items():
        out.print(f"[dim]ours: {indicator}: {why}[/dim]", highlight=False)
    if report.tier_moves is not None:
        _print_moves(report.tier_moves)
    if report.campaigns:
        _print_campaigns(report)
    if cohorts and report.cohorts is not None:
        _print_cohorts(report)
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


def _print_moves(moves: TierMoves) -> None:
    out = console()
    table = Table(title=f"members' tiers on {moves.before} (rows) and {moves.after} (columns)", title_justify="left")
    table.add_column("from")
    for column in moves.counts.columns:
        table.add_column(str(column), justify="right")
    for tier, row in moves.counts.iterrows():
        table.add_row(str(tier), *(f"{int(n):,}" for n in row))
    out.print(table)
    out.print(f"high-value members who became churn-risk: {moves.moved('high_value', 'churn_risk'):,}")


def _print_campaigns(report: HealthReport) -> None:
    from monitoring.health.report import shown

    table = Table(title="campaign ROI, each against its own holdout (30 days after each push)", title_justify="left")
    for column in ("campaign", "pushed", "held out", "spend/pushed", "spend/held out", "cost", "ROI", "95% interval"):
        table.add_column(column, justify="left" if column == "campaign" else "right")
    for c in report.campaigns:
        interval = "" if c.roi_low is None or c.roi_high is None else f"{c.roi_low:.2f} to {c.roi_high:.2f}"
        roi = c.status if c.roi is None else f"{c.roi:.2f}"
        table.add_row(
            c.campaign,
            f"{c.pushed:,}",
            f"{c.held_out:,}",
            shown(c.spend_pushed),
            shown(c.spend_held_out),
            f"{shown(c.cost)} ({c.cost_source})",
            roi,
            interval,
        )
    console().print(table)


def _print_cohorts(report: HealthReport) -> None:
    assert report.cohorts is not None
    wide = report.cohorts.table()
    table = Table(title="share of each month's joiners active in each month after", title_justify="left")
    table.add_column("joined")
    table.add_column("members", justify="right")
    months = [c for c in wide.columns if c != "members"]
    for m in months:
        table.add_column(f"+{m}", justify="right")
    for cohort, row in wide.iterrows():
        cells = ["" if row[m] != row[m] else f"{row[m]:.0%}" for m in months]
        table.add_row(str(cohort), f"{int(row['members']):,}", *cells)
    console().print(table)


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
