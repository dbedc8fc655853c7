"""`community-ml backtest ...`: rolling-origin evaluation of the churn and value models against baselines."""

from __future__ import annotations

from datetime import date
from pathlib import Path

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


@backtest_app.command("train")
def train_command(
    kind: ModelKind = typer.Argument(..., help="churn or value"),
    dataset: str = DatasetOption,
    as_of: str = typer.Option("latest", "--as-of", help="score members as of this date (default: after the data)"),
    horizon_days: int = typer.Option(90, "--horizon-days"),
    trials: int = typer.Option(0, help="Optuna trials on validation cutoffs (0: default parameters)"),
    training_cutoffs: int = typer.Option(6, help="monthly training cutoffs"),
    test_cutoffs: int = typer.Option(3, help="held-out monthly cutoffs that judge the candidate"),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="move the champion alias if it passes"),
    seed: int = typer.Option(0),
    as_json: bool = JsonOption,
) -> None:
    """Train, judge on held-out cutoffs beside the baselines and the champion, register, and promote if better."""
    from features.snapshots import resolve_as_of
    from training.train import TrainSettings, train

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        settings = TrainSettings(
            as_of=resolve_as_of(target, as_of),
            horizon_days=horizon_days,
            trials=trials,
            training_cutoffs=training_cutoffs,
            test_cutoffs=test_cutoffs,
            promote=promote,
            seed=seed,
        )
        result = train(target, kind, settings)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    _print_comparison(
        result.kind,
        result.metrics,
        result.rivals,
        f"{kind.value} v{result.version} on {', '.join(map(str, result.test_cutoffs))} ({result.seconds:.0f} s)",
    )
    verdict = (
        "promoted to champion" if result.promoted else "not promoted: " + "; ".join(result.reasons or ["--no-promote"])
    )
    console().print(f"{kind.value} version {result.version}: {verdict}")


def _print_comparison(
    kind: ModelKind, metrics: dict[str, float], rivals: dict[str, dict[str, float]], title: str
) -> None:
    columns = list(metrics)
    table = Table(title=title)
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in {"candidate": metrics, **rivals}.items():
        table.add_row(name, *(f"{values[c]:.4f}" if c in values else "-" for c in columns))
    console().print(table)


@backtest_app.command("score")
def score_command(
    dataset: str = DatasetOption,
    out: Path = typer.Option(..., "--out", help="FILE.parquet or FILE.csv"),
    as_of: str = typer.Option("latest", "--as-of", help="score members as of this date (default: after the data)"),
    tiers_config: Path | None = typer.Option(None, "--tiers", help="tier shares (configs/tiers.yaml)"),
    as_json: bool = JsonOption,
) -> None:
    """One row per member from the champion models: churn_probability, expected_value, tier, top_reasons."""
    from features.config import load_config
    from features.snapshots import resolve_as_of
    from features.tiers import TierSettings
    from training.score import score

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        tiers = load_config(TierSettings, tiers_config, {})
        summary = score(target, resolve_as_of(target, as_of), out, tiers)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    shares = ", ".join(f"{t} {s:.0%}" for t, s in summary.tier_shares.items())
    console().print(
        f"scored {summary.members:,} members of {dataset} as of {summary.as_of} with churn "
        f"v{summary.churn_version} and value v{summary.value_version}; tiers: {shares}"
    )
    console().print(f"written to {summary.out}")


@backtest_app.command("promote")
def promote_command(
    kind: ModelKind = typer.Argument(..., help="churn or value"),
    version: str | None = typer.Option(None, help="registered version to promote (default: the newest)"),
) -> None:
    """Make a registered version champion, only if it beats the baselines and the champion on its test cutoffs."""
    from training.train import promote

    with user_errors():
        result = promote(StateHome.from_env(), kind, version)
    if result.promoted:
        console().print(f"{kind.value} version {result.version} is the champion")
        return
    console().print(f"{kind.value} version {result.version} not promoted: {'; '.join(result.reasons)}")
    raise typer.Exit(1)
