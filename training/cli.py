"""`community-ml backtest ...`: rolling-origin evaluation of the churn and value models against baselines."""

from __future__ import annotations

from datetime import date

import typer
from rich.table import Table

from features.cli import DatasetOption, JsonOption, console, user_errors
from features.errors import DataError
from features.home import StateHome
from features.scoring import ModelKind
from features.store import Dataset

backtest_app = typer.Typer(help="Evaluate models on cutoffs they never saw, beside the baselines.")


def parse_cutoffs(value: str) -> list[date]:
    try:
        return [date.fromisoformat(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise DataError(f"--cutoffs {value!r}: expected dates like 2011-06-01,2011-07-01") from exc


@backtest_app.command("backtest")
def backtest_command(
    kind: ModelKind = typer.Argument(..., help="churn or value"),
    dataset: str = DatasetOption,
    cutoffs: str = typer.Option(..., help="test cutoffs, comma-separated (e.g. 2011-06-01,2011-07-01)"),
    horizon_days: int = typer.Option(90, "--horizon-days"),
    training_cutoffs: int = typer.Option(6, help="monthly training cutoffs before each test cutoff"),
    seed: int = typer.Option(0),
    as_json: bool = JsonOption,
) -> None:
    """For each cutoff: train on what precedes it, score the next H days, compare with the baselines."""
    from training.backtest import BacktestSettings, backtest

    with user_errors():
        settings = BacktestSettings(
            cutoffs=parse_cutoffs(cutoffs), horizon_days=horizon_days, training_cutoffs=training_cutoffs, seed=seed
        )
        report = backtest(Dataset(StateHome.from_env(), dataset).require(), kind, settings)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    means = report.mean_by_method().drop(columns=["train_rows", "test_members"])
    table = Table(
        title=f"{kind.value} backtest on {dataset}, horizon {horizon_days} days, mean of "
        f"{len(settings.cutoffs)} cutoffs ({report.seconds:.0f} s)"
    )
    table.add_column("method")
    for column in means.columns:
        table.add_column(column, justify="right")
    for method, row in means.iterrows():
        table.add_row(str(method), *("-" if row[c] != row[c] else f"{row[c]:.4f}" for c in means.columns))
    console().print(table)
