"""`community-ml campaign report`: what a campaign's pushes achieved, arm by arm against the control holdout.

Per arm: members, conversion (an order in (ts, ts + H]), visit (any engagement), spend per member and retention
(an order in the window's second half); each arm's difference from control with a 95% interval, and the same
difference adjusted by pre-period spend (CUPED), which narrows the interval without biasing it; and the
sample-ratio-mismatch check of the split against the plan. Only members whose whole window is in the data count.
Written as JSON for machines and a plain HTML page for people, listed on the reports index.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.common.errors import DataError
from features.dataset.campaigns import campaign_start, control_arm, exposures, file_stem, saved_plan
from features.dataset.store import Dataset, write_json_atomic
from features.pipelines.outcomes import OUTCOMES, measured_members, member_outcomes
from monitoring.campaign_stats import (
    Adjusted,
    Difference,
    SampleRatio,
    cuped,
    difference,
    sample_ratio,
    shown,
    shown_interval,
)
from monitoring.index import update_campaign_index


class CampaignReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign: str
    horizon_days: int = Field(30, ge=1, le=365, description="days after each exposure that outcomes count")
    control_arm: str | None = Field(None, description="default: the plan's control arm, else 'control'")
    pre_days: int = Field(365, ge=7, le=1095, description="days before exposure whose spend is CUPED's covariate")
    expected_shares: dict[str, float] | None = Field(
        None, description="the planned split for the SRM check (default: the plan's, else equal arms)"
    )


class ArmOutcomes(BaseModel):
    members: int
    conversion: float
    visit: float
    spend: float  # per member
    retention: float
    pre_spend: float  # per member, before exposure: should not differ between arms


class Comparison(BaseModel):
    raw: Difference
    cuped: Adjusted


class CampaignReport(BaseModel):
    dataset: str
    campaign: str
    horizon_days: int
    pre_days: int
    control_arm: str
    start: str
    exposures: int
    matured: int  # members measured: those whose window the data covers
    pending: int
    complete_windows: bool  # False: no window is complete yet, every member is measured on the data there is
    arms: dict[str, ArmOutcomes]
    comparisons: dict[str, dict[str, Comparison]]  # arm -> outcome -> vs control
    sample_ratio: SampleRatio
    split_source: str  # where the expected split came from
    created_at: str
    files: dict[str, str] = {}


def campaign_report(dataset: Dataset, settings: CampaignReportSettings) -> CampaignReport:
    exposed = exposures(dataset.require(), settings.campaign)
    plan = saved_plan(dataset, settings.campaign)
    control = control_arm(plan, settings.campaign, exposed, settings.control_arm)
    arms = sorted(exposed["arm"].astype(str).unique())
    if len(arms) < 2:
        raise DataError(f"campaign {settings.campaign!r} has only the arm {control!r}: nothing to compare")
    outcomes = member_outcomes(dataset, exposed, settings.horizon_days, settings.pre_days)
    measured, complete = measured_members(dataset, outcomes, settings.campaign, settings.horizon_days)
    shares, source = _expected_shares(settings, plan, arms)
    by_arm = {arm: group for arm, group in measured.groupby("arm")}
    baseline = by_arm.get(control, measured.iloc[:0])
    comparisons = {
        arm: {outcome: _compare(group, baseline, outcome) for outcome in OUTCOMES}
        for arm, group in by_arm.items()
        if arm != control and len(group) > 1 and len(baseline) > 1  # a variance needs two members
    }
    counts = {str(a): int(n) for a, n in exposed["arm"].astype(str).value_counts().items()}
    return CampaignReport(
        dataset=dataset.name,
        campaign=settings.campaign,
        horizon_days=settings.horizon_days,
        pre_days=settings.pre_days,
        control_arm=control,
        start=str(campaign_start(exposed)),
        exposures=len(exposed),
        matured=len(measured),
        pending=len(outcomes) - len(measured),
        complete_windows=complete,
        arms={arm: _arm(group) for arm, group in by_arm.items()},
        comparisons=comparisons,
        sample_ratio=sample_ratio(counts, shares),
        split_source=source,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _expected_shares(settings: CampaignReportSettings, plan: Any, arms: list[str]) -> tuple[dict[str, float], str]:
    if settings.expected_shares:
        unknown = sorted(set(settings.expected_shares) - set(arms))
        if unknown:
            raise DataError(f"--expected-shares names arms the campaign lacks: {', '.join(unknown)}")
        return {a: settings.expected_shares.get(a, 0.0) for a in arms}, "--expected-shares"
    if plan is not None:
        return plan.shares(), f"the plan ({plan.holdout:g} held out)"
    return dict.fromkeys(arms, 1.0 / len(arms)), "assumed equal (no plan recorded; --expected-shares to set it)"


def _arm(group: pd.DataFrame) -> ArmOutcomes:
    return ArmOutcomes(
        members=len(group),
        **{o: float(group[o].mean()) for o in OUTCOMES},
        pre_spend=float(group["pre_spend"].mean()),
    )


def _compare(treated: pd.DataFrame, control: pd.DataFrame, outcome: str) -> Comparison:
    t, c = treated[outcome].to_numpy(float), control[outcome].to_numpy(float)
    adjusted = cuped(t, c, treated["pre_spend"].to_numpy(float), control["pre_spend"].to_numpy(float))
    return Comparison(raw=difference(t, c), cuped=adjusted)


def write_campaign_report(dataset: Dataset, report: CampaignReport) -> CampaignReport:
    """The report's JSON and HTML under reports/DATASET/, and its line on the reports index."""
    folder = dataset.home.reports / dataset.name
    stem = folder / f"{dataset.name}_campaign_{file_stem(report.campaign)}_h{report.horizon_days}"
    files = {"json": str(stem.with_suffix(".json")), "html": str(stem.with_suffix(".html"))}
    report = report.model_copy(update={"files": files})
    write_json_atomic(report.model_dump(mode="json"), Path(files["json"]))
    page = Path(files["html"])
    tmp = page.with_name(f".{page.name}.tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(page)
    update_campaign_index(dataset.home, _index_entry(report, dataset.home.reports))
    return report


def _index_entry(report: CampaignReport, root: Path) -> dict[str, Any]:
    lifts = {
        arm: {o: [c.raw.difference, c.raw.low, c.raw.high] for o, c in by.items() if o in ("conversion", "spend")}
        for arm, by in report.comparisons.items()
    }
    return {
        "dataset": report.dataset,
        "campaign": report.campaign,
        "horizon_days": report.horizon_days,
        "start": report.start,
        "members": report.matured,
        "lifts": lifts,
        "srm": report.sample_ratio.mismatch,
        "created_at": report.created_at,
        "files": {k: str(Path(v).relative_to(root)) for k, v in report.files.items()},
    }


_INCOMPLETE = (
    '<p class="alert">No member\'s window is complete in the data: every member is measured on the events there '
    "are, which may undercount the outcomes of both arms.</p>"
)


def render(report: CampaignReport) -> str:
    e = html.escape
    arm_rows = "\n".join(
        f"<tr><td>{e(arm)}{' (control)' if arm == report.control_arm else ''}</td><td>{a.members:,}</td>"
        + "".join(f"<td>{shown(o, getattr(a, o))}</td>" for o in (*OUTCOMES, "pre_spend"))
        + "</tr>"
        for arm, a in report.arms.items()
    )
    comparison_rows = "\n".join(
        f"<tr><td>{e(arm)}</td><td>{e(o)}</td>"
        f"<td>{shown_interval(o, c.raw.difference, c.raw.low, c.raw.high)}</td>"
        f"<td>{'-' if c.raw.relative is None else f'{c.raw.relative:+.1%}'}</td><td>{c.raw.p_value:.3g}</td>"
        f"<td>{shown_interval(o, c.cuped.estimate.difference, c.cuped.estimate.low, c.cuped.estimate.high)}</td>"
        f"<td>{c.cuped.variance_reduction:.1%}</td></tr>"
        for arm, by in report.comparisons.items()
        for o, c in by.items()
    )
    srm = report.sample_ratio
    srm_line = (
        f'<p class="{"alert" if srm.mismatch else "ok"}">Sample ratio: '
        f"{'MISMATCH' if srm.mismatch else 'as planned'} (chi-square {srm.chi_square:.2f}, p = {srm.p_value:.3g}; "
        f"flagged below 0.001). Observed {e(str(srm.observed))}, expected shares "
        f"{e(str({k: round(v, 3) for k, v in srm.expected_shares.items()}))} from {e(report.split_source)}.</p>"
    )
    outcome_heads = "".join(f"<th>{e(o)}</th>" for o in (*OUTCOMES, "pre-period spend"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>campaign {e(report.campaign)} on {e(report.dataset)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .4rem .6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f4f4f4; }} .ok {{ color: #1a7f37; }} .alert {{ color: #b42318; font-weight: 600; }}
</style></head><body>
<h1>Campaign {e(report.campaign)} <small>({e(report.dataset)})</small></h1>
<p>First exposure {e(report.start)}; outcomes over the {report.horizon_days} days after each member's exposure.
{report.matured:,} members measured; {report.pending:,} more whose window the data does not reach yet.</p>
{"" if report.complete_windows else _INCOMPLETE}
{srm_line}
<h2>Arms</h2>
<table><thead><tr><th>arm</th><th>members</th>{outcome_heads}</tr></thead><tbody>
{arm_rows}
</tbody></table>
<h2>Against {e(report.control_arm)}</h2>
<p>Difference of means with its 95% interval; CUPED adjusts each outcome by the {report.pre_days}-day pre-period
spend (same expectation, narrower interval).</p>
<table><thead><tr><th>arm</th><th>outcome</th><th>difference [95% interval]</th><th>relative</th>
<th>p</th><th>CUPED [95% interval]</th><th>variance removed</th></tr></thead><tbody>
{comparison_rows}
</tbody></table>
<p><small>Written {e(report.created_at)} by community-ml campaign report.</small></p>
</body></html>
"""
