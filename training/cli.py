"""`community-ml train`, `promote` and `backtest`: the training job for every kind of the model table."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.store import Dataset
from features.pipelines import engines
from features.pipelines.engines import Engine, EngineOption
from serving.models.kinds import KINDS, Target, Task, kinds_of

if TYPE_CHECKING:
    import pandas as pd

# Members a member model learns from and is judged on at most (training/members/frames.py); unset: the setting's.
TrainingMembersOption = typer.Option(
    None,
    "--training-members",
    min=0,
    help="member kinds: members learned from and judged on at most, a fixed sample drawn once per dataset (0: all) "
    "[default: COMMUNITY_ML_TRAINING_MEMBERS, else 25,000]",
    show_default=False,
)


def _members(given: int | None) -> dict[str, int | None]:
    """--training-members as a job's setting: unset keeps the job's default (the setting's), 0 means every member."""
    return {} if given is None else {"training_members": given or None}


training_app = typer.Typer(help="Train, judge and promote models; evaluate them on cutoffs they never saw.")

# The CLI's choices come from the table of model kinds.
KindName = StrEnum("KindName", {k: k for k in KINDS})  # type: ignore[misc]
# Backtests run the kinds that learn from labels at cutoffs (not uplift, which learns from a campaign).
MemberKindName = StrEnum(  # type: ignore[misc]
    "MemberKindName", {k.name: k.name for k in kinds_of(Task.member) if k.learns_from_labels}
)


class Outcome(StrEnum):
    conversion = "conversion"
    visit = "visit"
    spend = "spend"
    retention = "retention"


class SplitName(StrEnum):
    time = "time"
    random_per_item = "random-per-item"


def parse_cutoffs(value: str) -> list[date]:
    try:
        return [date.fromisoformat(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise DataError(f"--cutoffs {value!r}: expected dates like 2011-06-01,2011-07-01") from exc


@training_app.command("train")
def train_command(
    kind: KindName = typer.Argument(..., help=", ".join(f"{k.name}: {k.summary}" for k in KINDS.values())),
    dataset: str = DatasetOption,
    as_of: str = typer.Option("latest", "--as-of", help="serve as of this date (default: after the data)"),
    horizon_days: int = typer.Option(90, "--horizon-days"),
    trials: int | None = typer.Option(
        None,
        min=0,
        help="Optuna trials per tuned family, on validation data only (0: no tuning; default: as the budget allows)",
    ),
    budget_seconds: float | None = typer.Option(
        None,
        "--budget-seconds",
        min=0,
        help="seconds of tuning in all, shared by the tuned families (default: 60 for item kinds; member kinds are "
        "tuned only when --trials or --budget-seconds asks; 0: no tuning)",
    ),
    training_cutoffs: int = typer.Option(6, help="monthly training cutoffs (member kinds)"),
    training_members: int | None = TrainingMembersOption,
    test_cutoffs: int = typer.Option(3, help="held-out monthly cutoffs that judge the candidate (member kinds)"),
    k: int = typer.Option(10, "--k", min=1, max=100, help="list length item kinds are judged at"),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="move the champion alias if it passes"),
    seed: int = typer.Option(0),
    family: str | None = typer.Option(
        None, help="train this family instead of the best one (e.g. als, lightgbm, rfm); the gate still decides"
    ),
    split: SplitName = typer.Option(
        SplitName.time,
        help="item kinds: judge on the H days before T (time), or on a random 25% of each item's interactions "
        "(random-per-item: ratings and other data whose timestamps mean little)",
    ),
    campaign: str | None = typer.Option(
        None, "--campaign", help="uplift: the randomized campaign (its exposures) to learn who responds from"
    ),
    outcome: Outcome = typer.Option(
        Outcome.conversion, help="uplift: the outcome in the --horizon-days after exposure whose lift is predicted"
    ),
    treatment_arm: str | None = typer.Option(
        None, "--treatment-arm", help="uplift: the pushed arm to model (default: the campaign's only one)"
    ),
    control_arm: str | None = typer.Option(
        None, "--control-arm", help="uplift: the holdout arm (default: the plan's, else 'control')"
    ),
    engine: Engine = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """Train, judge on held-out data beside the baselines and the champion, register, and promote if better.
    `train uplift --campaign NAME` learns from a randomized campaign instead of cutoffs."""
    from features.pipelines.snapshots import resolve_as_of
    from training.job import TrainSettings, train

    with user_errors():
        engines.use(engine)
        target = Dataset(StateHome.from_env(), dataset).require()
        settings = TrainSettings(
            as_of=resolve_as_of(target, as_of),
            horizon_days=horizon_days,
            trials=trials,
            budget_seconds=budget_seconds,
            training_cutoffs=training_cutoffs,
            **_members(training_members),
            test_cutoffs=test_cutoffs,
            k=k,
            promote=promote,
            seed=seed,
            family=family,
            split=split.value,
            campaign=campaign,
            outcome=outcome.value,
            treatment_arm=treatment_arm,
            control_arm=control_arm,
        )
        model_kind = KINDS[kind.value]
        if (model_kind.target is Target.uplift) != (campaign is not None):
            raise DataError(
                "--campaign NAME is what `train uplift` learns from"
                if campaign is None
                else f"--campaign is for `train uplift`; {kind.value} learns from labels at cutoffs"
            )
        result = train(target, model_kind, settings)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    judged_on = ", ".join(map(str, result.test_cutoffs))
    if campaign is not None:
        judged_on = f"held-out members of campaign {campaign} (from {judged_on}, {outcome.value})"
    elif result.split == SplitName.random_per_item.value:
        judged_on = f"a random 25% of each item's interactions before {judged_on}"
    title = f"{dataset}.{kind.value} v{result.version} ({result.family}) on {judged_on} ({result.seconds:.0f} s)"
    _print_comparison(result.metrics, result.rivals, title)
    console().print(f"tuning: {result.tuning}")
    console().print(result.choice)
    verdict = (
        "promoted to champion" if result.promoted else "not promoted: " + "; ".join(result.reasons or ["--no-promote"])
    )
    console().print(f"{dataset}.{kind.value} version {result.version}: {verdict}")


def _print_comparison(metrics: dict[str, float], rivals: dict[str, dict[str, float]], title: str) -> None:
    columns = list(metrics)
    table = Table(title=title)
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in {"candidate": metrics, **rivals}.items():  # rivals: families, references, the champion
        table.add_row(name, *(f"{values[c]:.4f}" if c in values else "-" for c in columns))
    console().print(table)


@training_app.command("promote")
def promote_command(
    kind: KindName = typer.Argument(..., help=", ".join(KINDS)),
    dataset: str = DatasetOption,
    version: str | None = typer.Option(None, help="registered version to promote (default: the newest)"),
) -> None:
    """Make a registered version the dataset's champion, only if it beats the baselines and the champion on its
    own held-out data."""
    from training.promoting import promote

    with user_errors():
        home = StateHome.from_env()
        Dataset(home, dataset).require()
        result = promote(home, dataset, KINDS[kind.value], version)
    name = f"{dataset}.{kind.value}"
    if result.promoted:
        console().print(f"{name} version {result.version} is the champion")
        return
    console().print(f"{name} version {result.version} not promoted: {'; '.join(result.reasons)}")
    raise typer.Exit(1)


@training_app.command("backtest")
def backtest_command(
    kind: MemberKindName = typer.Argument(..., help=", ".join(MemberKindName)),
    dataset: str = DatasetOption,
    cutoffs: str = typer.Option(..., help="test cutoffs, comma-separated (e.g. 2011-06-01,2011-07-01)"),
    horizon_days: int = typer.Option(90, "--horizon-days"),
    training_cutoffs: int = typer.Option(6, help="monthly training cutoffs before each test cutoff"),
    training_members: int | None = TrainingMembersOption,
    seed: int = typer.Option(0),
    engine: Engine = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """For each cutoff: train on what precedes it, score the next H days, every family side by side."""
    from training.members.evaluation import BacktestSettings, backtest

    with user_errors():
        engines.use(engine)
        settings = BacktestSettings(
            cutoffs=parse_cutoffs(cutoffs),
            horizon_days=horizon_days,
            training_cutoffs=training_cutoffs,
            **_members(training_members),
            seed=seed,
        )
        report = backtest(Dataset(StateHome.from_env(), dataset).require(), KINDS[kind.value], settings)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    means = report.mean_by_method().drop(columns=["train_rows", "test_members"])
    table = Table(
        title=f"{kind.value} backtest on {dataset}, horizon {horizon_days} days, mean of "
        f"{len(settings.cutoffs)} cutoffs ({report.seconds:.0f} s)"
    )
    table.add_column("family")
    for column in means.columns:
        table.add_column(column, justify="right")
    for method, row in means.iterrows():
        table.add_row(str(method), *("-" if row[c] != row[c] else f"{row[c]:.4f}" for c in means.columns))
    console().print(table)
    if KINDS[kind.value].target is Target.amount:
        for family in KINDS[kind.value].families:
            console().print(_decile_table(report.deciles(family), family))


def _decile_table(chart: pd.DataFrame, family: str) -> Table:
    """Predicted against actual spend per decile of predicted value (1: the highest)."""
    table = Table(title=f"{family}: deciles of predicted value, every cutoff's members")
    for column in ("decile", "members", "mean predicted", "mean actual", "share of spend"):
        table.add_column(column, justify="right")
    for decile, row in chart.iterrows():
        table.add_row(
            str(decile),
            f"{int(row['members']):,}",
            f"{row['mean_predicted']:.2f}",
            f"{row['mean_actual']:.2f}",
            f"{row['share_of_spend']:.1%}",
        )
    return table
