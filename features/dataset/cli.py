"""`community-ml data ...`: import, generate and describe datasets."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.contract import TABLE_NAMES, TABLES
from features.dataset.store import Dataset

data_app = typer.Typer(no_args_is_help=True, help="Import, generate and describe datasets.")

TableName = StrEnum("TableName", {name: name for name in TABLE_NAMES})  # type: ignore[misc]


def _print_summary(summary: object, as_json: bool) -> None:
    from features.dataset.importers import ImportSummary

    assert isinstance(summary, ImportSummary)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    out = console()
    table = Table(title=f"import into {summary.dataset} ({summary.seconds:.1f} s)")
    for column in ("table", "read", "added", "updated", "unchanged", "quarantined", "total"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in summary.tables:
        table.add_row(
            t.table,
            *(
                f"{v:,}"
                for v in (
                    t.rows_read,
                    t.rows_added,
                    t.rows_updated,
                    t.rows_unchanged,
                    t.rows_quarantined,
                    t.rows_total,
                )
            ),
        )
    out.print(table)
    for t in summary.tables:
        if t.reasons:
            out.print(f"[bold]{t.table}[/bold]: rows set aside in {t.quarantine_file}")
            for reason, count in t.reasons.items():
                out.print(f"  {count:>8,}  {reason}")
    for t in summary.tables:
        if t.rows_forgotten:
            out.print(f"[bold]{t.table}[/bold]: {t.rows_forgotten:,} rows of forgotten members not imported")
    if summary.ignored_columns:
        out.print(f"columns not in the contract, not imported: {', '.join(summary.ignored_columns)}")


@data_app.command("import")
def import_command(
    dataset: str = DatasetOption,
    table: TableName = typer.Option(..., "--table", "-t", help="the canonical table the file holds"),
    input_path: Path = typer.Option(..., "--input", "-i", help="CSV, CSV.GZ, TSV or Parquet file"),
    mapping: list[str] = typer.Option([], "--map", help="CANONICAL=SOURCE: take a canonical column from SOURCE"),
    constants: list[str] = typer.Option([], "--set", help="CANONICAL=VALUE: fill a canonical column with VALUE"),
    encoding: str = typer.Option("utf-8", help="text encoding of CSV/TSV files"),
    sep: str | None = typer.Option(
        None,
        "--sep",
        help="field separator: one character, or comma, tab, semicolon, pipe, whitespace [default: by extension]",
    ),
    time_format: str | None = typer.Option(
        None,
        "--time-format",
        help="read timestamps in this strftime format, e.g. %Y%m%d [default: ISO dates "
        "and datetimes, or epoch seconds]",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Import a file into one canonical table; broken rows are quarantined, re-imports change nothing."""
    from features.dataset.importers import import_file, parse_assignments
    from features.dataset.readers import separator

    with user_errors():
        spec = TABLES[table.value]
        summary = import_file(
            Dataset(StateHome.from_env(), dataset),
            spec.name,
            input_path,
            parse_assignments(mapping, "--map", spec),
            parse_assignments(constants, "--set", spec),
            encoding,
            separator(sep) if sep else None,
            time_format,
        )
    _print_summary(summary, as_json)


@data_app.command("import-online-retail")
def import_online_retail_command(
    dataset: str = DatasetOption,
    input_path: Path = typer.Option(..., "--input", "-i", help="the UCI Online Retail CSV (gzipped or not)"),
    encoding: str = typer.Option("utf-8", help="text encoding of the file"),
    as_json: bool = JsonOption,
) -> None:
    """Import the UCI Online Retail format: orders (cancellations as returns), members and products."""
    from features.dataset.online_retail import import_online_retail

    with user_errors():
        summary = import_online_retail(Dataset(StateHome.from_env(), dataset), input_path, encoding)
    _print_summary(summary, as_json)


@data_app.command("generate")
def generate_command(
    dataset: str = DatasetOption,
    config_path: Path | None = typer.Option(None, "--config", "-c", help="YAML settings (configs/synthetic.yaml)"),
    members: int | None = typer.Option(None, help="number of members [default: 20000]"),
    seed: int | None = typer.Option(None, help="random seed: the same seed gives the same data [default: 7]"),
    months: int | None = typer.Option(None, help="months of history [default: 15]"),
    start: datetime | None = typer.Option(None, formats=["%Y-%m-%d"], help="first day [default: 2025-01-01]"),
    shift_at: datetime | None = typer.Option(
        None,
        formats=["%Y-%m-%d"],
        help="from this day on, shift the population (more promotion-driven members, a new persona mix, a price "
        "change): drift to watch with `community-ml monitor`",
    ),
    shift_price_factor: float | None = typer.Option(
        None, help="with --shift-at: the price multiplier from that day on [default: 1.6]"
    ),
    declining_group_at: datetime | None = typer.Option(
        None,
        formats=["%Y-%m-%d"],
        help="from this day group G0002 declines (its members go quiet, complain more): what `community-ml "
        "health --by group` should find",
    ),
    force: bool = typer.Option(False, "--force", help="replace an existing dataset of that name"),
    as_json: bool = JsonOption,
) -> None:
    """Generate the built-in synthetic community (members, groups, contents, orders, engagements, feedback,
    surveys)."""
    from features.common.config import load_config
    from features.dataset.importers import import_synthetic
    from features.dataset.synthetic import SyntheticConfig

    with user_errors():
        overrides = {
            "members": members,
            "seed": seed,
            "months": months,
            "start": start.date() if start else None,
            "shift_at": shift_at.date() if shift_at else None,
            "shift_price_factor": shift_price_factor,
            "declining_group_at": declining_group_at.date() if declining_group_at else None,
        }
        config = load_config(SyntheticConfig, config_path, overrides)
        target = Dataset(StateHome.from_env(), dataset)
        if target.exists() and not force:
            if target.generated_with() == config.model_dump(mode="json"):
                typer.echo(f"dataset {dataset} is already generated with these settings; use --force to redo it")
                return
            raise DataError(
                f"dataset {dataset!r} already exists with other content; use --force to replace it, "
                "or choose another --dataset"
            )
        summary = import_synthetic(target, config)
    _print_summary(summary, as_json)


@data_app.command("ingest")
def ingest_command(dataset: str = DatasetOption, as_json: bool = JsonOption) -> None:
    """Adds the events the service accepted (`POST /events`, kept in the journal) to the dataset's tables, exactly
    once; `features build` does it first by itself."""
    from features.dataset.event_log import ingest

    with user_errors():
        summary = ingest(Dataset(StateHome.from_env(), dataset).require())
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    added = ", ".join(f"{summary.added[t]:,} of {summary.events[t]:,} {t}" for t in summary.events)
    segments = f"{summary.segments} batch(es) of the event log"  # journal segments, or stream batches
    typer.echo(f"ingested {segments} into {summary.dataset}: {added} new ({summary.seconds} s)")


@data_app.command("describe")
def describe_command(dataset: str = DatasetOption, as_json: bool = JsonOption) -> None:
    """Row counts per table, time span, members, guests, returns and the quarantine summary."""
    from features.dataset.describe import describe

    with user_errors():
        info = describe(Dataset(StateHome.from_env(), dataset))
    if as_json:
        typer.echo(info.model_dump_json(indent=2))
        return
    out = console()
    table = Table(title=f"dataset {info.dataset}", caption=info.path)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("quarantined", justify="right")
    for name, rows in info.rows.items():
        table.add_row(name, f"{rows:,}", f"{sum(info.quarantined.get(name, {}).values()):,}")
    out.print(table)
    out.print(f"events from {info.first_event} to {info.last_event}")
    out.print(
        f"members: {info.members:,} ({info.members_with_orders:,} with orders); "
        f"guest order lines: {info.guest_order_lines:,}; return lines: {info.return_lines:,}; "
        f"imports: {info.imports}"
    )
    for name, reasons in info.quarantined.items():
        for reason, count in reasons.items():
            out.print(f"  quarantine {name}: {count:>8,}  {reason}")
