"""The reports index ops open: `reports/index.json` lists every monitoring pass and campaign report written with
its headline; `reports/index.html` is rebuilt from it each time, a plain page with no scripts. (Kept apart from the
Evidently reports so that a campaign report does not load Evidently.)"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from features.common.home import StateHome
from features.dataset.store import write_json_atomic
from monitoring.campaign_stats import shown_interval


def update_index(home: StateHome, entry: dict[str, Any]) -> Path:
    """Adds (or replaces: same dataset, date and models) an entry in index.json and rewrites index.html."""
    same = ("dataset", "as_of", "model_versions")
    return _update(home, "reports", entry, same)


def update_campaign_index(home: StateHome, entry: dict[str, Any]) -> Path:
    """Adds (or replaces: same dataset, campaign and horizon) a campaign report's line on the index."""
    return _update(home, "campaigns", entry, ("dataset", "campaign", "horizon_days"))


def _update(home: StateHome, section: str, entry: dict[str, Any], same: tuple[str, ...]) -> Path:
    index_json = home.reports / "index.json"
    index = json.loads(index_json.read_text()) if index_json.exists() else {}
    entries = [e for e in index.get(section, []) if any(e.get(k) != entry[k] for k in same)] + [entry]
    entries.sort(key=lambda e: (e["created_at"], e["dataset"]), reverse=True)
    index = {"reports": index.get("reports", []), "campaigns": index.get("campaigns", []), section: entries}
    write_json_atomic(index, index_json)
    page = home.reports / "index.html"
    tmp = page.with_name(".index.html.tmp")
    tmp.write_text(render_index(index["reports"], index["campaigns"]), encoding="utf-8")
    tmp.replace(page)
    return page


def render_index(entries: list[dict[str, Any]], campaigns: list[dict[str, Any]] | None = None) -> str:
    rows = "\n".join(_index_row(e) for e in entries) or '<tr><td colspan="7">no reports yet</td></tr>'
    campaign_rows = "\n".join(_campaign_row(c) for c in campaigns or []) or (
        '<tr><td colspan="6">no campaign reports yet (<code>community-ml campaign report</code>)</td></tr>'
    )
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
<h2>Campaigns</h2>
<p>What each campaign's arms achieved against its control holdout (difference with its 95% interval).</p>
<table id="campaigns">
<thead><tr><th>dataset</th><th>campaign</th><th>window</th><th>lift</th><th>split</th><th>reports</th></tr></thead>
<tbody>
{campaign_rows}
</tbody></table>
</body></html>
"""


def _campaign_row(entry: dict[str, Any]) -> str:
    e = html.escape
    lifts = "<br>".join(
        f"{e(arm)}: " + ", ".join(f"{e(o)} {shown_interval(o, d, lo, hi)}" for o, (d, lo, hi) in by.items())
        for arm, by in entry["lifts"].items()
    )
    split = '<span class="alert">sample ratio mismatch</span>' if entry["srm"] else '<span class="ok">as planned</span>'
    links = " ".join(f'<a href="{e(path)}">{e(kind)}</a>' for kind, path in entry["files"].items())
    return (
        f"<tr><td>{e(entry['dataset'])}</td><td>{e(entry['campaign'])}</td><td>{e(entry['start'])} + "
        f"{entry['horizon_days']} days<br><small>{entry['members']:,} members</small></td><td>{lifts}</td>"
        f"<td>{split}</td><td>{links}</td></tr>"
    )


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
