"""Reports on disk: Evidently HTML for people, JSON for machines, and the index page ops open.

Files live in `$COMMUNITY_ML_HOME/reports/DATASET/`, named by dataset, date and champion versions, e.g.
`demo_2026-04-01_churn-v3_value-v2_data-drift.html`, and listed on the index page (monitoring/index.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.common.home import StateHome
from features.dataset.store import write_json_atomic
from monitoring.index import update_index
from monitoring.monitor import MonitorResult, headline
from monitoring.performance import performance_summary

if TYPE_CHECKING:
    from evidently.core.report import Snapshot as EvidentlySnapshot


def write_reports(home: StateHome, result: MonitorResult, breaches: list[str]) -> Path:
    """Every report of one monitoring pass, then the index; returns the index page's path."""
    folder = home.reports / result.dataset
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{result.dataset}_{result.as_of}_{result.model_label}"
    files: dict[str, dict[str, str]] = {}
    reports: dict[str, tuple[EvidentlySnapshot | None, dict[str, Any]]] = {
        "data-drift": (result.data_drift.report, result.data_drift.summary()),
        "prediction-drift": (
            result.prediction_drift.report,
            {
                **result.prediction_drift.summary(),
                "source": result.prediction_source,
                "tier_share_changes": result.tier_changes,
            },
        ),
        **{f"{kind}-drift": (d.report, d.summary()) for kind, d in result.recs_drift.items()},
        "performance": (result.performance_report, {"over_time": performance_summary(result.performance)}),
    }
    for name, (report, summary) in reports.items():
        if report is None and not any(summary.values()):
            continue
        files[name] = _write_one(folder / f"{stem}_{name}", report, summary, result)
    entry = {
        "dataset": result.dataset,
        "as_of": str(result.as_of),
        "reference_as_of": str(result.reference.as_of),
        "reference_dataset": result.reference.dataset.name,
        "model_versions": result.reference.versions,
        "models": result.reference.models,
        "created_at": result.created_at,
        "headline": headline(result),
        "breaches": breaches,
        "files": {name: {k: str(Path(v).relative_to(home.reports)) for k, v in f.items()} for name, f in files.items()},
    }
    return update_index(home, entry)


def _write_one(
    stem: Path, report: EvidentlySnapshot | None, summary: dict[str, Any], result: MonitorResult
) -> dict[str, str]:
    payload = {
        "dataset": result.dataset,
        "as_of": str(result.as_of),
        "reference_as_of": str(result.reference.as_of),
        "model_versions": result.reference.versions,
        "models": result.reference.models,
        "created_at": result.created_at,
        "summary": summary,
        "evidently": None if report is None else report.dict(),
    }
    written = {"json": str(stem.with_suffix(".json"))}
    write_json_atomic(json.loads(json.dumps(payload, default=str)), stem.with_suffix(".json"))
    if report is not None:
        tmp = stem.with_name(f".{stem.name}.tmp.html")
        report.save_html(str(tmp))
        tmp.replace(stem.with_suffix(".html"))
        written["html"] = str(stem.with_suffix(".html"))
    return written
