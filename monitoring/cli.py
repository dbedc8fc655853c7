"""`community-ml monitor ...`: drift and performance reports for ops, and a check with an exit code for schedulers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.home import StateHome
from features.dataset.store import Dataset
from features.pipelines import engines
from features.pipelines.engines import Engine, EngineOption

if TYPE_CHECKING:  # the CLI starts fast: Evidently and the models load only when a command runs
    from monitoring.monitor import MonitorResult
    from monitoring.thresholds import MonitorSettings

monitor_app = typer.Typer(no_args_is_help=True, help="Watch data drift, prediction drift and real performance.")

AsOfOption = typer.Option("latest", "--as-of", help="the current snapshot's date (YYYY-MM-DD) or 'latest'")
ConfigOption = typer.Option(None, "--config", "-c", help="thresholds (default: configs/monitoring.yaml)")


def _monitor(dataset: str, as_of: str, config: Path | None) -> tuple[StateHome, MonitorSettings, MonitorResult]:
    from features.pipelines.snapshots import resolve_as_of
    from monitoring.monitor import run_monitor
    from monitoring.thresholds import load_settings

    settings = load_settings(config)
    home = StateHome.from_env()
    target = Dataset(home, dataset).require()
    return home, settings, run_monitor(home, target, resolve_as_of(target, as_of), settings)


@monitor_app.command("report")
def report_command(
    dataset: str = DatasetOption,
    as_of: str = AsOfOption,
    config: Path | None = ConfigOption,
    engine: Engine = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """Write the drift and performance reports (HTML and JSON) and update the index page."""
    from monitoring.check import breaches
    from monitoring.monitor import headline
    from monitoring.reports import write_reports

    with user_errors():
        engines.use(engine)
        home, settings, result = _monitor(dataset, as_of, config)
        found = breaches(result, settings)
        index = write_reports(home, result, found)
        _record(home, result, found)
    if as_json:
        typer.echo(json.dumps({**headline(result), "breaches": found, "index": str(index)}, indent=2))
        return
    _print(result, found)
    console().print(f"reports written; the index page is {index}")


@monitor_app.command("check")
def check_command(
    dataset: str = DatasetOption,
    as_of: str = AsOfOption,
    config: Path | None = ConfigOption,
    engine: Engine = EngineOption,
    retrain: bool = typer.Option(
        False,
        "--retrain",
        help="when a threshold is crossed, retrain the member models (churn, value: the ones that read the "
        "features), with the promotion gate as usual",
    ),
) -> None:
    """Exit 1 and name every threshold crossed (configs/monitoring.yaml); exit 0 when all is within bounds."""
    from monitoring.check import breaches

    with user_errors():
        engines.use(engine)
        home, settings, result = _monitor(dataset, as_of, config)
        found = breaches(result, settings)
        _record(home, result, found)
    _print(result, found)
    if not found:
        console().print("[green]ok[/green]: every monitored figure is within its threshold")
        return
    if retrain:
        from serving.models.kinds import Task, kinds_of
        from training.job import retrain as retrain_models

        with user_errors():
            relearned = [k for k in kinds_of(Task.member) if k.learns_from_labels]  # uplift needs a new campaign
            for result in retrain_models(Dataset(StateHome.from_env(), dataset), relearned):
                verdict = "promoted" if result.promoted else "not promoted: " + "; ".join(result.reasons)
                console().print(f"retrained {dataset}.{result.kind}: version {result.version}, {verdict}")
    raise typer.Exit(1)


def _record(home: StateHome, result: MonitorResult, found: list[str]) -> None:
    """The pass as a snapshot in the ops console (`community-ml ops`)."""
    from monitoring.console import record_monitoring

    record_monitoring(home, result, found)


def _print(result: MonitorResult, found: list[str]) -> None:
    out = console()
    drift = result.data_drift
    out.print(
        f"{result.dataset} as of {result.as_of} against the reference {result.reference.dataset.name} as of "
        f"{result.reference.as_of} ("
        + ", ".join(f"{k} {m['family']} v{m['version']}" for k, m in result.reference.models.items())
        + ")"
    )
    out.print(f"data drift: {len(drift.drifted)} of {len(drift.columns)} features ({drift.share:.0%})")
    out.print(
        f"prediction drift ({result.prediction_source}): {', '.join(result.prediction_drift.drifted) or 'none'}; "
        "tier share changes " + ", ".join(f"{t} {c:+.1%}" for t, c in result.tier_changes.items())
    )
    for point in result.performance:
        figures = ", ".join(
            f"{k} {v:.3g}"
            + (f" [{point.intervals[k][0]:.3g}, {point.intervals[k][1]:.3g}]" if k in point.intervals else "")
            for k, v in point.metrics.items()
        )
        out.print(f"performance of {point.model} as of {point.as_of} ({point.members:,} members): {figures}")
    for line in found:
        out.print(f"[red]alert[/red] {line}", highlight=False)
