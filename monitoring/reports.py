"""Reports on disk: Evidently HTML for people, JSON for machines, and the index page ops open.

Files live in `$COMMUNITY_ML_HOME/reports/DATASET/`, named by dataset, date and champion versions, e.g.
`demo_2026-04-01_churn-v3_value-v2_data-drift.html`. `reports/index.json` lists every report written with its
headline; `reports/index.html` is rebuilt from it each time, a plain page with no scripts.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from evidently.core.report import Snapshot as EvidentlySnapshot

from features.home import StateHome
from features.store import write_json_atomic
from monitoring.monitor import MonitorResult, headline
from monitoring.performance import performance_summary


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


def update_index(home: StateHome, entry: dict[str, Any]) -> Path:
    """Adds (or replaces: same dataset, date and models) an entry in index.json and rewrites index.html."""
    index_json = home.reports / "index.json"
    entries = json.loads(index_json.read_text())["reports"] if index_json.exists() else []
    same = ("dataset", "as_of", "model_versions")
    entries = [e for e in entries if any(e.get(k) != entry[k] for k in same)] + [entry]
    entries.sort(key=lambda e: (e["created_at"], e["dataset"]), reverse=True)
    write_json_atomic({"reports": entries}, index_json)
    page = home.reports / "index.html"
    tmp = page.with_name(".index.html.tmp")
    tmp.write_text(render_index(entries), encoding="utf-8")
    tmp.replace(page)
    return page


def render_index(entries: list[dict[str, Any]]) -> str:
    rows = "\n".join(_index_row(e) for e in entries) or '<tr><td colspan="7">no reports yet</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>community-ml monitoring</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .45rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
.ok {{ color: #1a7f37; font-weight: 600; }} .alert {{ color: #b42318; font-weight: 600; }}
small {{ color: #666; }}
</style></head>
<body>
<h1>community-ml monitoring</h1>
<p>Every monitoring pass, newest first: drift of the features and predictions from the champion's training
snapshot, and real performance once outcomes are known. Thresholds: <code>configs/monitoring.yaml</code>.</p>
<table id="reports">
<thead><tr><th>dataset</th><th>as of</th><th>models</th><th>data drift</th><th>predictions</th>
<th>performance</th><th>status</th><th>reports</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def _index_row(entry: dict[str, Any]) -> str:
    h = entry["headline"]
    e = html.escape
    models = ", ".join(f"{k} {m['family']} v{m['version']}" for k, m in entry.get("models", {}).items())
    models = models or ", ".join(f"{k} v{v}" for k, v in entry["model_versions"].items())  # an older entry
    drift = f"{h['drifted_features']} of {h['features']} features drifted ({h['drift_share']:.0%})"
    predictions = e(", ".join(h["drifted_predictions"]) or "no drift")
    moved = h["largest_tier_share_change"]
    if not isinstance(moved, dict):  # an index written before the tier was named
        moved = {"tier": "", "change": float(moved)}
    predictions += f"<br><small>largest tier share change: {e(moved['tier'])} {moved['change']:+.1%}</small>"
    performance = "<br>".join(
        f"{e(model)}: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if k != "k")
        for model, metrics in h["performance"].items()
    )
    status = (
        '<span class="alert">alert</span><br><small>' + "<br>".join(e(b) for b in entry["breaches"]) + "</small>"
        if entry["breaches"]
        else '<span class="ok">ok</span>'
    )
    links = "<br>".join(
        (f'<a href="{e(f["html"])}">{e(name)}</a>' if "html" in f else e(name))
        + f' (<a href="{e(f["json"])}">json</a>)'
        for name, f in entry["files"].items()
    )
    return (
        f"<tr><td>{e(entry['dataset'])}</td><td>{e(entry['as_of'])}<br><small>reference "
        f"{e(entry['reference_as_of'])}</small></td><td>{e(models)}</td><td>{e(drift)}</td><td>{predictions}</td>"
        f"<td>{performance or '<small>outcomes not known yet</small>'}</td><td>{status}</td><td>{links}</td></tr>"
    )
