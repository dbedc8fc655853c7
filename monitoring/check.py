"""The thresholds of configs/monitoring.yaml against one monitoring pass: what crossed, in words. With the calibrated
rule (the default) the alerts are monitoring/alerts.py's; matured performance alerts under either rule."""

from __future__ import annotations

from monitoring.monitor import MonitorResult
from monitoring.thresholds import MonitorSettings


def breaches(result: MonitorResult, settings: MonitorSettings) -> list[str]:
    """Every threshold crossed, each naming what moved; empty when all is well."""
    if settings.alerts.rule == "calibrated":
        return [a.message() for a in result.alerts] + _performance_breaches(result, settings)
    found = []
    drift = result.data_drift
    if drift.columns and drift.share > settings.data_drift.max_drift_share:
        found.append(
            f"data drift: {len(drift.drifted)} of {len(drift.columns)} features drifted ({drift.share:.0%} > "
            f"{settings.data_drift.max_drift_share:.0%}): {', '.join(drift.drifted)}"
        )
    for column in result.prediction_drift.drifted:
        if column in settings.prediction_drift.alert_on:
            test = next(c for c in result.prediction_drift.columns if c.column == column)
            found.append(f"prediction drift: {column} ({test.method} {test.score:.3f}, threshold {test.threshold})")
    for tier, change in result.tier_changes.items():
        if abs(change) > settings.prediction_drift.max_tier_share_change:
            found.append(
                f"tier shares: {tier} moved by {change:+.1%} "
                f"(more than {settings.prediction_drift.max_tier_share_change:.0%})"
            )
    if "item_popularity" in settings.prediction_drift.alert_on:
        for kind, recs in result.recs_drift.items():
            if recs.drifted:
                found.append(f"prediction drift: popularity of recommended items of {kind}")
    found += _performance_breaches(result, settings)
    return found


def _performance_breaches(result: MonitorResult, settings: MonitorSettings) -> list[str]:
    limits = settings.performance
    found = []
    for point in result.performance:
        m, when = point.metrics, f"predictions as of {point.as_of}"
        if "churn_roc_auc" in m and m["churn_roc_auc"] < limits.min_churn_roc_auc:
            found.append(f"performance: churn ROC-AUC {m['churn_roc_auc']:.3f} < {limits.min_churn_roc_auc} ({when})")
        error = m.get("value_total_error_pct")
        if error is not None and abs(error) > limits.max_value_total_error_pct:
            found.append(
                f"performance: total spend off by {error:+.1f}% (limit {limits.max_value_total_error_pct}%, {when})"
            )
        if "precision_at_k" in m and m["precision_at_k"] < limits.min_precision_at_k:
            found.append(
                f"performance: {point.model} precision@{m['k']} {m['precision_at_k']:.3f} < "
                f"{limits.min_precision_at_k} ({when})"
            )
    return found
