"""`community-ml campaign report`: what a campaign achieved, arm by arm against its control holdout (the group of
commands and `campaign plan` are serving's: serving/campaign_cli.py)."""

from __future__ import annotations

import typer
from rich.table import Table

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.store import Dataset
from serving.campaign_cli import CampaignOption


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
    from monitoring.campaign_stats import shown, shown_interval

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
