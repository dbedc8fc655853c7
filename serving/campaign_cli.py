"""`community-ml campaign plan`: a campaign's audience, split at random into pushed arms and a control holdout, its
exposures recorded and its push list written. (`campaign report`, which measures what it achieved, is
monitoring's: monitoring/campaign_cli.py.)"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from features.common.cli_kit import DatasetOption, JsonOption, console, user_errors
from features.common.home import StateHome
from features.dataset.store import Dataset
from features.pipelines.engines import Engine, EngineOption

campaign_app = typer.Typer(
    no_args_is_help=True, help="Plan a campaign with a random control holdout; report its measured lift."
)
CampaignOption = typer.Option(..., "--campaign", "-c", help="the campaign's name (its campaign_id in exposures)")


@campaign_app.command("plan")
def plan_command(
    dataset: str = DatasetOption,
    campaign: str = CampaignOption,
    audience: str = typer.Option(
        ...,
        "--audience",
        help="churn-risk, tier:NAME (high_value, potential, ordinary, churn_risk), uplift (members the uplift "
        "champion expects a push to move), segment:NAME or tag:NAME (configs/segments.yaml, configs/tags.yaml) or "
        "file:FILE (a member_id column)",
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
