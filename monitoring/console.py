"""The ops console: Evidently's own workspace and UI on the state home (`$COMMUNITY_ML_HOME/ops/`).

A project per dataset; every `community-ml health` computation and every monitoring pass is a snapshot in it,
time-stamped with the data's date (as of), not the wall clock, so the dashboards read as the community's history.
A health snapshot holds the community's indicators (and the targets in force that day: a milestone target
steps when the next one falls due, and is absent before the first) as one-row columns, each read by a
`MeanValue` metric: Evidently's dashboards plot metrics, and the mean of one value is that value.
Cohort curves are snapshots of their own, one per calendar month (tagged `cohorts`), holding the share of each
month's joiners active in that month: a line per cohort, starting at the month it joined. A health run replaces
the months whose figures changed (late data) and adds new ones; `$COMMUNITY_ML_HOME/ops-cohorts/DATASET.json` keeps
what each month's snapshot holds. `community-ml ops` serves the UI (`evidently ui`) on this workspace.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.common.home import StateHome

if TYPE_CHECKING:  # Evidently loads only when the console is written or served
    from evidently.core.report import Snapshot as EvidentlySnapshot
    from evidently.ui.workspace import Project, Workspace

    from monitoring.health.indicators import HealthSettings
    from monitoring.health.report import HealthReport
    from monitoring.monitor import MonitorResult

HEALTH_TAG = "health"
MONITORING_TAG = "monitoring"
COHORTS_TAG = "cohorts"
COHORTS_PANEL = "Monthly retention by cohort"
CAMPAIGNS_TAG = "campaigns"
HIGH_VALUE_TO_CHURN_RISK = "high_value_to_churn_risk"
MEAN_VALUE = "evidently:metric_v2:MeanValue"
DRIFTED_COLUMNS = "evidently:metric_v2:DriftedColumnsCount"


def workspace_path(home: StateHome) -> Path:
    return home.root / "ops"


def open_workspace(home: StateHome) -> Workspace:
    from evidently.ui.workspace import Workspace

    path = workspace_path(home)
    path.mkdir(parents=True, exist_ok=True)
    return Workspace(str(path))


def project_for(workspace: Workspace, dataset: str, settings: HealthSettings) -> Project:
    """The dataset's project, made with its dashboard the first time (indicators against targets, drift); a
    panel the project lacks (an indicator added to configs/health.yaml since) is added."""
    found = [p for p in workspace.list_projects() if p.name == dataset]
    if found:
        _add_panels(found[0], settings)
        return found[0]
    project = workspace.create_project(dataset, description=f"community-ml: the health and drift of {dataset}")
    _add_panels(project, settings)
    return project


def _add_panels(project: Project, settings: HealthSettings) -> None:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel, text_panel

    dashboard = project.dashboard
    have = {panel.title for panel in dashboard.model().panels}

    def add(panel: Any, tab: str) -> None:
        if panel.title not in have:
            dashboard.add_panel(panel, tab=tab)

    tab = "Health"
    add(
        text_panel(
            title=f"Community health of {project.name}",
            description="The business plan's indicators (configs/health.yaml), each against the target in force "
            "(milestones step as they fall due), over time",
        ),
        tab,
    )
    add(
        line_plot_panel(
            title=COHORTS_PANEL,
            description="a line per month's joiners: the share of them active (an order or an engagement) in each "
            "month after, starting at the month they joined",
            values=[PanelMetric(legend="{{column}}", metric=MEAN_VALUE, tags=[COHORTS_TAG])],
        ),
        tab,
    )
    add(
        line_plot_panel(
            title="Campaign ROI per campaign",
            description="each campaign against its own holdout, 30 days after each push, at the costs declared for "
            "it (configs/health.yaml campaigns), as of each health run",
            values=[PanelMetric(legend="{{column}}", metric=MEAN_VALUE, tags=[CAMPAIGNS_TAG])],
            size="half",
        ),
        tab,
    )
    add(
        line_plot_panel(
            title="High-value members who became churn-risk in the month",
            description="the plan's tier migration, from `community-ml health --by tier` runs",
            values=[
                PanelMetric(legend="members", metric=MEAN_VALUE, metric_labels={"column": HIGH_VALUE_TO_CHURN_RISK})
            ],
            size="half",
        ),
        tab,
    )
    for indicator in settings.indicators:
        values = [PanelMetric(legend=indicator.name, metric=MEAN_VALUE, metric_labels={"column": indicator.name})]
        if indicator.target is not None:
            values.append(
                PanelMetric(legend="target", metric=MEAN_VALUE, metric_labels={"column": _target(indicator.name)})
            )
        source = "" if indicator.source is None else f"; target: {indicator.target_described()}, {indicator.source}"
        add(
            line_plot_panel(
                title=f"{indicator.dimension.value} / {indicator.area}: {indicator.name}",
                description=f"{indicator.meaning} ({indicator.unit}{'; a proxy' if indicator.proxy else ''}{source})",
                values=values,
                size="half",
            ),
            tab,
        )
    drift = "Drift and alerts"
    add(
        line_plot_panel(
            title="Share of drifted features",
            description="each monitoring pass: features drifted from the champion's training snapshot",
            values=[PanelMetric(legend="share", metric=DRIFTED_COLUMNS, metric_labels={"value_type": "share"})],
            size="half",
        ),
        drift,
    )
    add(
        counter_panel(
            title="Alerts in the latest monitoring pass",
            values=[PanelMetric(legend="alerts", metric=MEAN_VALUE, metric_labels={"column": "alerts"})],
            size="half",
        ),
        drift,
    )
    for column in ("churn_probability", "expected_value"):
        add(
            line_plot_panel(
                title=f"Mean {column} of the members scored",
                values=[PanelMetric(legend=column, metric=MEAN_VALUE, metric_labels={"column": column})],
                size="half",
            ),
            drift,
        )


def _target(name: str) -> str:
    return f"{name}__target"


def _at(day: Any) -> datetime:
    return datetime.combine(day, time())


def _one_row_snapshot(values: dict[str, float], when: datetime, tag: str, name: str) -> EvidentlySnapshot:
    from evidently import DataDefinition, Report
    from evidently import Dataset as EvidentlyDataset
    from evidently.metrics import MeanValue

    columns = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}
    frame = pd.DataFrame([columns])
    data = EvidentlyDataset.from_pandas(frame, data_definition=DataDefinition(numerical_columns=list(columns)))
    report = Report([MeanValue(column=c) for c in columns])
    return report.run(data, None, timestamp=when, tags=[tag], name=name)


def record_health(home: StateHome, report: HealthReport, settings: HealthSettings) -> None:
    """The community's indicators (and targets) as of the report's date, a snapshot in the dataset's project."""
    values: dict[str, float] = {}
    for v in report.community():
        if v.value is not None:
            values[v.indicator] = v.value
        if v.target is not None:
            values[_target(v.indicator)] = v.target
    if report.tier_moves is not None:
        values[HIGH_VALUE_TO_CHURN_RISK] = float(report.tier_moves.moved("high_value", "churn_risk"))
    if not values:
        return
    workspace = open_workspace(home)
    project = project_for(workspace, report.dataset, settings)
    when = _at(report.as_of)
    workspace.add_run(project.id, _one_row_snapshot(values, when, HEALTH_TAG, f"health as of {report.as_of}"))
    # "ROI NAME": a space no indicator name has, so no indicator's panel picks a campaign up
    if rois := {f"ROI {c.campaign}": c.roi for c in report.campaigns if c.roi is not None}:
        snapshot = _one_row_snapshot(rois, when, CAMPAIGNS_TAG, f"campaign ROI as of {report.as_of}")
        workspace.add_run(project.id, snapshot)
    if report.cohorts is not None:
        _record_cohorts(home, workspace, project, report)


def _record_cohorts(home: StateHome, workspace: Workspace, project: Project, report: HealthReport) -> None:
    """A snapshot per calendar month holding each cohort's share active in it. A month recorded before with the
    same shares is kept (a past month's figures stay put unless late data moves them); a changed one replaced."""
    assert report.cohorts is not None
    index = home.root / "ops-cohorts" / f"{report.dataset}.json"
    recorded: dict[str, dict[str, Any]] = json.loads(index.read_text()) if index.exists() else {}
    months: dict[str, dict[str, Any]] = {}
    for month, rows in report.cohorts.frame.groupby("month", sort=True):
        shares = {f"joined {c}": round(float(s), 12) for c, s in zip(rows["cohort"], rows["share"], strict=True)}
        kept = recorded.pop(str(month), None)
        if kept is not None and kept["shares"] == shares:
            months[str(month)] = kept
            continue
        if kept is not None:
            workspace.delete_run(project.id, kept["id"])
        when = datetime.strptime(f"{month}-01", "%Y-%m-%d")
        ref = workspace.add_run(project.id, _one_row_snapshot(shares, when, COHORTS_TAG, f"cohorts {month}"))
        months[str(month)] = {"id": str(ref.id), "shares": shares}
    for stale in recorded.values():  # months no longer in the curves (an earlier --as-of)
        workspace.delete_run(project.id, stale["id"])
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps(months))


def record_monitoring(home: StateHome, result: MonitorResult, alerts: list[str]) -> None:
    """A monitoring pass: its data-drift report as Evidently made it, and the alert count and mean predictions."""
    from monitoring.health.indicators import load_health_settings

    workspace = open_workspace(home)
    project = project_for(workspace, result.dataset, load_health_settings())
    if result.data_drift.report is not None:  # made with the data's date as its timestamp (monitor.py)
        workspace.add_run(project.id, result.data_drift.report, name=f"data drift as of {result.as_of}")
    figures: dict[str, float] = {"alerts": float(len(alerts)), "drift_share": result.data_drift.share}
    figures.update(result.prediction_means)
    workspace.add_run(
        project.id, _one_row_snapshot(figures, _at(result.as_of), MONITORING_TAG, f"alerts as of {result.as_of}")
    )


def serve_console(home: StateHome, host: str, port: int) -> None:
    """Evidently's UI service on the workspace, in this process, until stopped."""
    from evidently.ui.service.app import get_config, run

    path = workspace_path(home)
    if not path.exists():
        from features.common.errors import DataError

        raise DataError(
            f"{path}: no ops workspace yet: run `community-ml health --dataset D` or `community-ml monitor report` "
            "first (each adds a snapshot)"
        )
    print(f"ops console on http://{host}:{port} (workspace {path})", flush=True)
    run(get_config(host=host, port=port, workspace=str(path)))
