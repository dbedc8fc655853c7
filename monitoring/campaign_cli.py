"""`community-ml campaign plan|report`: run a campaign with a control holdout, then measure what it achieved."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.store import Dataset
from features.pipelines.engines import Engine, EngineOption

campaign_app = typer.Typer(
    no_args_is_help=True, help="Plan a campaign with a random control holdout; report its measured lift."
)
CampaignOption = typer.Option(..., "--campaign", "-c", help="the campaign's name (its campaign_id in exposures)")


def _parse_shares(value: str | None) -> dict[str, float] | None:
    if not value:
        return None
    shares: dict[str, float] = {}
    for part in value.split(","):
        arm, sep, share = part.rpartition("=")
        try:
            shares[arm.strip()] = float(share)
        except ValueError:
            sep = ""
        if not sep or not arm.strip() or shares.get(arm.strip(), -1) < 0:
            raise DataError(f"--expected-shares {value!r}: expected ARM=SHARE,..., e.g. control=0.2,coupon=0.8")
    return shares


@campaign_app.command("plan")
def plan_command(
    dataset: str = DatasetOption,
    campaign: str = CampaignOption,
    audience: str = typer.Option(
        ...,
        "--audience",
        help="churn-risk, tier:NAME (high_value, potential, ordinary, churn_risk), uplift (members the uplift "
        "champion expects a push to move) or file:FILE (a member_id column)",
    ),
    holdout: float = typer.Option(0.2, "--holdout", min=0.01, max=0.99, help="share held out as control"),
    arms: str = typer.Option("treatment", "--arms", help="the pushed arms, comma-separated (e.g. A,B)"),
    out: Path = typer.Option(..., "--out", help="the push list: FILE.parquet or FILE.csv (no control members)"),
    at: datetime | None = typer.Option(
        None, "--at", formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"], help="when members are exposed [default: now]"
    ),
    consent_recorded_elsewhere: bool = typer.Option(
        False, "--consent-recorded-elsewhere", help="members with no consent recorded here agreed elsewhere"
    ),
    engine: Engine = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """Split the consenting audience at random (stably) into arms and a control holdout, record the exposures
    and write the push list."""
    from features.dataset.campaigns import CampaignPlan
    from features.pipelines import engines
    from serving.campaigns import plan_campaign

    with user_errors():
        engines.use(engine)
        plan = CampaignPlan(
            campaign=campaign, arms=[a.strip() for a in arms.split(",")], holdout=holdout, audience=audience
        )
        summary = plan_campaign(
            Dataset(StateHome.from_env(), dataset), plan, out, at, consent_recorded_elsewhere=consent_recorded_elsewhere
        )
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    split = ", ".join(f"{arm} {n:,}" for arm, n in summary.arms.items())
    console().print(
        f"campaign {campaign}: {summary.members:,} members of {audience} ({summary.without_consent:,} without "
        f"marketing consent left out): {split}"
    )
    console().print(f"{summary.pushed:,} members to push written to {summary.out}; exposures recorded in {dataset}")


@campaign_app.command("report")
def report_command(
    dataset: str = DatasetOption,
    campaign: str = CampaignOption,
    horizon_days: int = typer.Option(30, "--horizon-days", min=1, max=365, help="days after exposure that count"),
    control_arm: str | None = typer.Option(
        None, "--control-arm", help="the holdout arm [default: the plan's, else control]"
    ),
    pre_days: int = typer.Option(365, "--pre-days", min=7, max=1095, help="pre-period of CUPED's spend covariate"),
    expected_shares: str | None = typer.Option(
        None,
        "--expected-shares",
        help="the planned split for the SRM check, ARM=SHARE,... [default: the plan's, else equal arms]",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Per arm against control: conversion, visit, spend and retention with 95% intervals (and CUPED), and the
    sample-ratio check; HTML and JSON under reports/, listed on the index."""
    from monitoring.campaign_report import CampaignReportSettings, campaign_report, write_campaign_report
    from monitoring.experiments import shown, shown_interval

    with user_errors():
        settings = CampaignReportSettings(
            campaign=campaign,
            horizon_days=horizon_days,
            control_arm=control_arm,
            pre_days=pre_days,
            expected_shares=_parse_shares(expected_shares),
        )
        target = Dataset(StateHome.from_env(), dataset)
        report = write_campaign_report(target, campaign_report(target, settings))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    out = console()
    table = Table(title=f"campaign {campaign} on {dataset}: {report.matured:,} members, {horizon_days} days")
    for column in ("arm", "outcome", "arm mean", "control mean", "difference [95% interval]", "CUPED [95%]"):
        table.add_column(column, justify="left" if column in ("arm", "outcome") else "right")
    for arm, by in report.comparisons.items():
        for outcome, c in by.items():
            table.add_row(
                arm,
                outcome,
                shown(outcome, c.raw.treated_mean),
                shown(outcome, c.raw.control_mean),
                shown_interval(outcome, c.raw.difference, c.raw.low, c.raw.high),
                shown_interval(outcome, c.cuped.estimate.difference, c.cuped.estimate.low, c.cuped.estimate.high),
            )
    out.print(table)
    srm = report.sample_ratio
    verdict = "[red]SAMPLE RATIO MISMATCH[/red]" if srm.mismatch else "split as planned"
    out.print(f"{verdict}: chi-square {srm.chi_square:.2f}, p = {srm.p_value:.3g} ({report.split_source})")
    if not report.complete_windows:
        out.print(
            f"[red]no member's {horizon_days}-day window is complete in the data[/red]: measured on what there is"
        )
    if report.pending:
        out.print(f"{report.pending:,} members not measured yet: their {horizon_days}-day window is past the data")
    out.print(f"report: {report.files['html']}")
