"""Benchmark: do the alerts fire when something happened, and only then?

For each seed, a synthetic community (2,000 members, 20 months) gets churn and value champions trained as of
TRAINED_AS_OF (30-day horizon; the reference snapshot is their newest training cutoff). Then:
- calm: nothing changes; checked 30, 45, 60 and 90 days after training;
- planted: a copy of the community with one change from CHANGE_AT (15 days after training), checked 30 days on:
  prices    every order line's amount x 1.25 (a price rise)
  persona   members joining after the change recorded with SHIFTED_PERSONA_SHARES (labels only: their behaviour
            is not simulated again)
  outage    the `store` channel's orders vanish (a channel outage)
  churn     30% of the members active in the month before stop everything (a churn wave)
  feed-null  orders' product_id arrives empty (a broken feed)
  feed-units orders' amount arrives in cents (x 100: a broken feed)
Each check is judged by the rule before (`monitor check`'s defaults until now: Evidently's drift tests on every
feature, alert above 10% drifted; prediction drift of churn probability or expected value; a tier share moving over
10 points) and after (monitoring/alerts.py: every statistic against the largest change of the same gap in the
dataset's own history, features weighted by the champions' gain). The rule's settings (margin 2, floors, feature
share 0.25) were set on development seeds 101-103, never on the seeds measured here.

    .venv/bin/python experiments/bench_alerts.py [--seeds 20] [--members 2000] [--jobs 2]

Writes experiments/results/alerts.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.results_file import write_results
from features.common.home import StateHome
from features.dataset.importers import import_synthetic
from features.dataset.store import Dataset
from features.dataset.synthetic import PERSONA_NAMES, SHIFTED_PERSONA_SHARES, SyntheticConfig
from monitoring.alerts import Profile, assess, calibrate, calibration_pairs, feature_weights, profile
from monitoring.drift import compare, tier_share_changes
from monitoring.reference import champion_reference
from monitoring.thresholds import MonitorSettings
from serving.models.kinds import CHURN, VALUE, Task
from training.job import TrainSettings, train

ROOT = Path(".community-ml-bench/alerts").resolve()
TRAINED_AS_OF = date(2026, 3, 15)
HORIZON = 30
CHANGE_AT = TRAINED_AS_OF + timedelta(days=15)
CALM_CHECKS = (30, 45, 60, 90)  # 45: the planted communities' check date
PLANTED_CHECK = CHANGE_AT + timedelta(days=30)
KINDS = ("prices", "persona", "outage", "churn", "feed-null", "feed-units")
EVENT_TABLES = ("orders", "engagements", "feedback", "surveys")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=21)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--margin", type=float, default=2.0)
    parser.add_argument("--feature-share", type=float, default=0.25)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="seeds measured at once")
    parser.add_argument("--from-csv", type=Path, help="write the table from a run's checks.csv, measuring nothing")
    parser.add_argument("--earlier", type=Path, help="an earlier run's checks.csv, tabled below for comparison")
    args = parser.parse_args()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    if args.from_csv:
        frame = pd.read_csv(args.from_csv)
    else:
        frame = _measure(args)
        frame.to_csv(ROOT / "checks.csv", index=False)
    table = _table(frame)
    if args.earlier:
        earlier = pd.read_csv(args.earlier)
        seeds = f"seeds {earlier['seed'].min()}-{earlier['seed'].max()}"
        table += f"\n## An earlier run ({seeds}): {EARLIER}\n\n{_table(earlier)}"
    write_results(
        "alerts", "Alerts: false alarms on calm communities, detections of planted changes", _explain(frame), table
    )


def _measure(args: argparse.Namespace) -> pd.DataFrame:
    started = time.perf_counter()
    rows = []
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:  # each seed in its own state home
        futures = {pool.submit(measure_seed, s, args.members, args.margin, args.feature_share): s for s in seeds}
        for future in as_completed(futures):
            rows += future.result()
            print(f"seed {futures[future]} done ({time.perf_counter() - started:.0f} s)", flush=True)
    return pd.DataFrame(rows).sort_values(["seed", "kind", "checked"])


def measure_seed(seed: int, members: int, margin: float, feature_share: float) -> list[dict[str, object]]:
    home = StateHome(ROOT / f"seed{seed}")
    shutil.rmtree(home.root, ignore_errors=True)
    calm = Dataset(home, "calm")
    import_synthetic(calm, SyntheticConfig(members=members, months=20, seed=seed))
    quick = TrainSettings(
        as_of=TRAINED_AS_OF, horizon_days=HORIZON, training_cutoffs=2, test_cutoffs=1, budget_seconds=0
    )
    for kind in (CHURN, VALUE):
        result = train(calm, kind, quick.model_copy(update={"family": kind.family}))
        if not result.promoted:  # the benchmark judges monitoring, not the gate: the learned model serves
            from serving.models import registry

            registry.set_champion(registry.connect(home), calm.name, kind, result.version)
    reference = champion_reference(calm)
    champions = reference.champions
    weights = feature_weights(champions)
    cache: dict[date, Profile] = {}

    def calm_profile(day: date) -> Profile:
        if day not in cache:
            cache[day] = profile(calm, day, champions, HORIZON)
        return cache[day]

    ref_profile = calm_profile(reference.as_of)
    ref_features = ref_profile.features
    ref_predictions = ref_profile.predictions
    rows = []

    def judge(kind: str, dataset: Dataset, checked: date) -> None:
        pairs = calibration_pairs(reference.as_of, checked, 6)
        calibration = calibrate([(calm_profile(a), calm_profile(b)) for a, b in pairs], margin)
        current = profile(dataset, checked, champions, HORIZON) if dataset is not calm else calm_profile(checked)
        after = assess(ref_profile, current, calibration, weights, feature_share)
        before = _old_rule(ref_features, ref_predictions, current, champions)
        rows.append(
            {
                "seed": seed,
                "kind": kind,
                "checked": str(checked),
                "before": bool(before),
                "before_why": "; ".join(before),
                "after": bool(after),
                "after_why": "; ".join(a.message() for a in after),
            }
        )

    for days in CALM_CHECKS:
        judge("calm", calm, TRAINED_AS_OF + timedelta(days=days))
    for kind in KINDS:
        judge(kind, planted(home, calm, kind, seed), PLANTED_CHECK)
    return rows


def _old_rule(ref_features: pd.DataFrame, ref_predictions: pd.DataFrame, current: Profile, champions) -> list[str]:
    """`monitor check` as it was: drift share over 10%, prediction drift, a tier share moving over 10 points."""
    settings = MonitorSettings()
    columns = [c for c in ref_features.columns if c != "member_id"]
    drift = compare(ref_features, current.features, columns, settings.data_drift)
    found = []
    if drift.columns and drift.share > settings.data_drift.max_drift_share:
        found.append(f"data drift {len(drift.drifted)} of {len(drift.columns)}")
    outputs = [str(c.kind.output) for c in champions.of(Task.member)]
    predictions = compare(ref_predictions, current.predictions, [*outputs, "tier"], settings.data_drift, preset=False)
    found += [f"prediction drift {c}" for c in predictions.drifted if c in settings.prediction_drift.alert_on]
    for tier, change in tier_share_changes(ref_predictions["tier"], current.predictions["tier"]).items():
        if abs(change) > settings.prediction_drift.max_tier_share_change:
            found.append(f"tier {tier} {change:+.1%}")
    return found


def planted(home: StateHome, calm: Dataset, kind: str, seed: int) -> Dataset:
    """A copy of the calm community with one change from CHANGE_AT on."""
    target = Dataset(home, kind)
    shutil.rmtree(target.path, ignore_errors=True)
    shutil.copytree(calm.path, target.path, ignore=shutil.ignore_patterns("quarantine*"))
    rng = np.random.default_rng([seed, 99])
    change = pd.Timestamp(CHANGE_AT)
    orders = target.read("orders")
    after = orders["ts"] >= change
    if kind == "prices":
        orders.loc[after, "amount"] = (orders.loc[after, "amount"] * 1.25).round(2)
    elif kind == "feed-units":
        orders.loc[after, "amount"] = orders.loc[after, "amount"] * 100
    elif kind == "feed-null":
        orders["product_id"] = orders["product_id"].where(~after)
    elif kind == "outage":
        orders = orders[~(after & (orders["channel"] == "store"))]
    elif kind == "persona":
        members = target.read("members")
        late = members["joined_at"] >= change
        members.loc[late, "persona"] = rng.choice(PERSONA_NAMES, int(late.sum()), p=SHIFTED_PERSONA_SHARES)
        target.write("members", members)
    elif kind == "churn":
        month = orders[(orders["ts"] < change) & (orders["ts"] >= change - pd.Timedelta(days=30))]
        active = month["member_id"].dropna().unique()
        gone = set(rng.choice(active, int(0.3 * len(active)), replace=False))
        for table in EVENT_TABLES:
            if target.has(table):
                rows = orders if table == "orders" else target.read(table)
                kept = rows[~((rows["ts"] >= change) & rows["member_id"].isin(gone))]
                if table == "orders":
                    orders = kept
                else:
                    target.write(table, kept)
    target.write("orders", orders.reset_index(drop=True))
    shutil.rmtree(home.features / target.name, ignore_errors=True)  # snapshots of the copy are its own
    return target


def _table(frame: pd.DataFrame) -> str:
    lines = [
        "| community | checks | alerts before [95% interval] | alerts after [95% interval] |",
        "|---|---:|---:|---:|",
    ]
    for kind in ("calm", *KINDS):
        part = frame[frame["kind"] == kind]
        label = "calm (false alarms)" if kind == "calm" else f"{kind} (detections)"
        lines.append(f"| {label} | {len(part)} | {_rate(part['before'])} | {_rate(part['after'])} |")
    why: dict[str, int] = defaultdict(int)
    for text in frame.loc[frame["kind"] == "calm", "after_why"].fillna(""):
        for part in filter(None, str(text).split("; ")):
            why[part.split(" changed")[0]] += 1
    lines.append("")
    lines.append("False alarms after, by statistic: " + (", ".join(f"{k} {v}" for k, v in why.items()) or "none"))
    return "\n".join(lines) + "\n"


def _rate(alerted: pd.Series) -> str:
    """The share alerted with its Wilson 95% interval (a handful of checks per kind: the interval says how much
    the figure can be trusted)."""
    n, k, z = len(alerted), int(alerted.sum()), 1.96
    if n == 0:
        return "-"
    centre = (k + z * z / 2) / (n + z * z)
    half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return f"{k / n:.0%} ({k}) [{max(centre - half, 0):.0%}, {min(centre + half, 1):.0%}]"


# What changed between the earlier run tabled below the results and the current rule.
EARLIER = (
    "the same rule except that a column's null share was read over all its rows; its false alarms (4 of 80 checks) "
    "were all figures just past thresholds set by their floors, and one of them was engagements' content_id and "
    "group_id nulls moving with the mix of actions (an engagement names content or a group by its action), which "
    "the rule now reads among the rows that should fill them. The table above comes from other seeds, measured "
    "after that change"
)


def _explain(frame: pd.DataFrame) -> str:
    seeds = f"{frame['seed'].min()}-{frame['seed'].max()}"
    return (
        (__doc__ or "").split("\n\n    .venv")[0]
        + f"\n\nCommand: `.venv/bin/python experiments/bench_alerts.py --seeds 20 --first-seed {frame['seed'].min()}`"
        f" (seeds {seeds}, 2 at a time). Every check's verdict and reasons: "
        "[alerts_checks.csv](alerts_checks.csv) (`.community-ml-bench/alerts/checks.csv` after a run)."
    )


if __name__ == "__main__":
    main()
