"""Benchmark: what the member profile's fields predict, how stable its segments are, and how fast it answers.

Quality, each field beside the obvious peer (the member's plain past shares), on a validation window (where the
profile's settings were chosen: the favourites' half-life, the price sensitivity's prior) and a later test
window, 90 days after the cutoff:
- favourite category (synthetic community; Online Retail's products carry no category) and favourite topic:
  how often the profile's first favourite is the member's top category by spend (topic by engagements) of the
  next 90 days, and how often that top is among the profile's three;
- price sensitivity (synthetic community; Online Retail's orders carry no discount): against the share of the
  member's next-90-day spend at list price that was discounted: mean absolute error and Spearman rank
  correlation, for members who buy in both windows;
- active weekday and hour (both datasets): how often the profile's first is the member's most active of the next
  90 days;
- stability month to month: for each declared segment, the Jaccard overlap of its members on consecutive monthly
  snapshots (members present in both); for Online Retail (no persona) the learned types' adjusted Rand index
  between consecutive months, each month fitted on its own.
Speed:
- `POST /profile` for one random member, `wrk -t2 -c4 -d20s` after a 5 s warm-up, beside `/churn` on the same
  server (2 workers, the demo community of experiments/bench_serving.py): requests/s, p50, p99, p99.9;
- batch `community-ml profile` at 500,000 members (in `--big-home`: `data generate --members 500000` and its
  latest snapshot, made when missing), in its own process.
Writes experiments/results/profile.md.

    .venv/bin/python experiments/bench_profile.py [--retail-csv PATH] [--members 20000] [--big-home DIR]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

from experiments.results_file import write_results
from features.common.home import StateHome
from features.dataset.importers import import_synthetic
from features.dataset.online_retail import import_online_retail
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot
from features.profiles.history import WEEKDAYS, ProfileSettings, member_history
from features.profiles.learned import NO_PURCHASE
from serving.profiles import Profiler, profile_rules

PROJECT = Path(__file__).resolve().parents[1]
WINDOW = 90
PAST_SHARES = 1e9  # a half-life so long that every event weighs the same: the member's plain past shares
HALF_LIVES = (30.0, 90.0, 180.0, 365.0)
PRIORS = (0.0, 2.0, 5.0, 10.0, 20.0)
PRIOR_EVENTS = (None, 0.0, 10.0, 100.0)  # None: fitted to the data (the default)


def _t(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def next_window(dataset: Dataset, cutoff: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The orders (with category and list price) and engagements (with topic) of the 90 days from the cutoff."""
    start, end = pd.Timestamp(cutoff), pd.Timestamp(cutoff + timedelta(days=WINDOW))
    orders = dataset.read("orders")
    orders = orders[(orders["ts"] >= start) & (orders["ts"] < end) & orders["member_id"].notna()]
    orders = orders[~orders["is_return"].fillna(False).astype(bool) & (orders["amount"] > 0)]
    if dataset.has("products"):
        products = dataset.read("products").drop_duplicates("product_id", keep="last")[["product_id", "category"]]
        orders = orders.merge(products, on="product_id", how="left")
    engagements = dataset.read("engagements") if dataset.has("engagements") else pd.DataFrame()
    if len(engagements):
        engagements = engagements[(engagements["ts"] >= start) & (engagements["ts"] < end)]
        contents = dataset.read("contents").drop_duplicates("content_id", keep="last")[["content_id", "topic"]]
        engagements = engagements.merge(contents, on="content_id", how="left")
    return orders, engagements


def top_of(frame: pd.DataFrame, column: str, weight: str | None) -> pd.Series:
    """Each member's top value of `column` in the window (by the sum of `weight`, else by count)."""
    frame = frame.dropna(subset=[column])
    summed = (
        frame.groupby(["member_id", column])[weight].sum() if weight else frame.groupby(["member_id", column]).size()
    )
    summed = summed.reset_index(name="w").sort_values(["member_id", "w", column], ascending=[True, False, True])
    return summed.drop_duplicates("member_id").set_index("member_id")[column].astype(str)


def hit_rates(history: pd.DataFrame, field: str, truth: pd.Series) -> tuple[float, float, int]:
    """(top-1 hit rate, top-3 recall, members) of a ranked favourite against the window's top, among members
    with both."""
    first = history[f"{field}_1"].dropna().astype(str)
    members = first.index.intersection(truth.index)
    top3 = history.loc[members, [f"{field}_{i}" for i in (1, 2, 3)]].astype(str)
    expected = truth[members].to_numpy()
    hit1 = float((first[members].to_numpy() == expected).mean())
    hit3 = float((top3.to_numpy() == expected[:, None]).any(axis=1).mean())
    return hit1, hit3, len(members)


def favourites_table(dataset: Dataset, name: str, cutoffs: dict[str, date], fields: list[tuple[str, str]]) -> str:
    """Favourites by half-life, on the validation and test windows."""
    rows = []
    for label, cutoff in cutoffs.items():
        orders, engagements = next_window(dataset, cutoff)
        members = Snapshot(dataset, cutoff).features()["member_id"].astype(str)
        truths = {
            "favourite_categories": top_of(orders, "category", "amount") if "category" in orders else None,
            "favourite_topics": top_of(engagements, "topic", None) if len(engagements) else None,
            "active_weekday": _activity_truth(orders, engagements, "weekday"),
            "active_hour": _activity_truth(orders, engagements, "hour"),
        }
        for half_life in (PAST_SHARES, *HALF_LIVES):
            history = member_history(dataset, _t(cutoff), members, ProfileSettings(half_life_days=half_life))
            history = history.set_index("member_id")
            history["active_weekday_1"] = [None if d != d else WEEKDAYS[int(d)] for d in history["active_weekday_1"]]
            method = "past shares (peer)" if half_life == PAST_SHARES else f"half-life {half_life:.0f} days"
            for field, title in fields:
                truth = truths[field]
                if truth is None:
                    continue
                if field.startswith("active"):
                    if half_life == PAST_SHARES:  # activity counts every event alike: no half-life
                        rows += _activity_rows(dataset, name, label, title, field, cutoff, members, truth)
                    continue
                hit1, hit3, n = hit_rates(history, field, truth)
                rows.append((name, label, title, method, hit1, hit3, n))
    lines = [
        "| data | window | field | method | top-1 = next 90 days' top | next top in the three | members |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {d} | {w} | {f} | {m} | {a:.3f} | {'' if b != b else f'{b:.3f}'} | {n:,} |" for d, w, f, m, a, b, n in rows
    ]
    return "\n".join(lines) + "\n"


def _activity_rows(
    dataset: Dataset, name: str, label: str, title: str, field: str, cutoff: date, members: pd.Series, truth: pd.Series
) -> list[tuple]:
    """The member's most active hour or weekday, by the community's rhythm's weight, beside the community's most
    active one given to everyone (the peer)."""
    rows = []
    for prior in PRIOR_EVENTS:
        history = member_history(dataset, _t(cutoff), members, ProfileSettings(prior_events=prior))
        history = history.set_index("member_id")
        history["active_weekday_1"] = [None if d != d else WEEKDAYS[int(d)] for d in history["active_weekday_1"]]
        hit, n = _first_hit(history, f"{field}_1", truth)
        method = "fitted prior (profile)" if prior is None else f"community prior {prior:g} events"
        rows.append((name, label, title, f"the member's own, {method}", hit, float("nan"), n))
        if prior == 0:
            everyone = history[f"{field}_1"].copy()
            everyone[:] = history[f"{field}_1"].mode().iloc[0]
            hit, n = _first_hit(everyone.to_frame(f"{field}_1"), f"{field}_1", truth)
            rows.append((name, label, title, "the community's most active (peer)", hit, float("nan"), n))
    return rows


def _activity_truth(orders: pd.DataFrame, engagements: pd.DataFrame, part: str) -> pd.Series:
    visits = orders.drop_duplicates(["member_id", "order_id", "ts"])[["member_id", "ts"]]
    times = pd.concat([visits, engagements[["member_id", "ts"]]] if len(engagements) else [visits])
    values = times["ts"].dt.hour if part == "hour" else times["ts"].dt.dayofweek.map(lambda d: WEEKDAYS[d])
    counted = pd.DataFrame({"member_id": times["member_id"].astype(str), "v": values.astype(str)})
    return top_of(counted, "v", None)


def _first_hit(history: pd.DataFrame, column: str, truth: pd.Series) -> tuple[float, int]:
    first = history[column].dropna()
    first = first.map(lambda v: str(int(v)) if isinstance(v, float) else str(v))
    members = first.index.intersection(truth.index)
    return float((first[members].to_numpy() == truth[members].to_numpy()).mean()), len(members)


def price_table(dataset: Dataset, cutoffs: dict[str, date]) -> str:
    """Price sensitivity against the next 90 days' discounted share of spend, by prior, beside the past share."""
    lines = [
        "| window | method | mean absolute error | Spearman | members |",
        "|---|---|---:|---:|---:|",
    ]
    for label, cutoff in cutoffs.items():
        orders, _ = next_window(dataset, cutoff)
        listed = orders["amount"] + orders["discount"].fillna(0)
        discounted = listed.where(orders["discount"].fillna(0) > 0, 0.0)
        frame = pd.DataFrame({"member_id": orders["member_id"].astype(str), "listed": listed, "discounted": discounted})
        per = frame.groupby("member_id").sum()
        truth = per["discounted"] / per["listed"]
        members = Snapshot(dataset, cutoff).features()["member_id"].astype(str)
        for prior in PRIORS:
            history = member_history(dataset, _t(cutoff), members, ProfileSettings(prior_orders=prior))
            history = history.set_index("member_id")
            both = history.index[history["priced_orders"] > 0].intersection(truth.index)
            y = truth[both]
            candidates = {f"price_sensitivity, prior {prior:g} orders": history.loc[both, "price_sensitivity"]}
            if prior == 0:
                candidates = {"past discounted share (peer)": history.loc[both, "discounted_share"], **candidates}
            for method, x in candidates.items():
                mae = float((x - y).abs().mean())
                rho = float(spearmanr(x, y).statistic)
                lines.append(f"| {label} | {method} | {mae:.4f} | {rho:.3f} | {len(both):,} |")
    return "\n".join(lines) + "\n"


def stability_table(dataset: Dataset, months: list[date]) -> str:
    """Each declared segment's Jaccard overlap month to month, and learned types' adjusted Rand index."""
    rules = profile_rules()
    members_by: dict[date, dict[str, set[str]]] = {}
    learned_by: dict[date, pd.Series] = {}
    for month in months:
        build_snapshot(dataset, SnapshotSettings(as_of=month))
        snapshot = Snapshot(dataset, month)
        features = snapshot.features()
        columns = [c for c in features.columns if c != "member_id"]
        profiler = Profiler.open(dataset, snapshot, rules, columns, [])
        profiles = profiler.batch(features, None)
        members_by[month] = {
            r.name: {p["member_id"] for p in profiles if r.name in p["segments"]} for r in rules.segments
        }
        if profiler.book.learned is not None:
            learned_by[month] = pd.Series({p["member_id"]: p["learned_segment"] for p in profiles})
    lines = ["| segment | " + " | ".join(f"{a:%b} -> {b:%b}" for a, b in itertools.pairwise(months)) + " |"]
    lines.append("|---|" + "---:|" * (len(months) - 1))
    for rule in rules.segments:
        cells = []
        for a, b in itertools.pairwise(months):
            x, y = members_by[a][rule.name], members_by[b][rule.name]
            cells.append("-" if not (x | y) else f"{len(x & y) / len(x | y):.2f} ({len(y):,})")
        lines.append(f"| {rule.name} | " + " | ".join(cells) + " |")
    if learned_by:
        cells = []
        for a, b in itertools.pairwise(months):
            both = learned_by[a].index.intersection(learned_by[b].index)
            bought = both[(learned_by[a][both] != NO_PURCHASE) & (learned_by[b][both] != NO_PURCHASE)]
            cells.append(f"ARI {adjusted_rand_score(learned_by[a][bought], learned_by[b][bought]):.2f}")
        lines.append("| learned types (k-means) | " + " | ".join(cells) + " |")
        book = Profiler.open(dataset, Snapshot(dataset, months[-1]), rules, [], []).book
        if book.learned is not None:
            lines.append(
                f"\nLearned types as of {months[-1]}: "
                + "; ".join(book.learned.names)
                + " (silhouette by k: "
                + ", ".join(f"{k}: {s:.3f}" for k, s in book.learned.silhouettes.items())
                + ")"
            )
    return "\n".join(lines) + "\n"


def speed_table(serving_home: Path, seconds: int) -> str:
    """/profile beside /churn on one server."""
    from experiments.bench_serving import endpoint_table

    return endpoint_table(serving_home, {"/churn": None, "/profile": None}, seconds)


def batch_table(big_home: Path, size: int) -> str:
    """`community-ml profile` on a community of `size` members (generated, and its snapshot built, when missing:
    about 7 minutes at 500,000)."""
    name = f"m{size}"
    env = {**os.environ, "COMMUNITY_ML_HOME": str(big_home), "BENTOML_DO_NOT_TRACK": "true"}
    dataset = Dataset(StateHome(big_home), name)
    if not dataset.exists():
        cli = [sys.executable, "-m", "cli"]
        subprocess.run([*cli, "data", "generate", "--dataset", name, "--members", str(size)], env=env, check=True)
        subprocess.run([*cli, "features", "build", "--dataset", name, "--as-of", "latest"], env=env, check=True)
    members = Snapshot(dataset, _latest(big_home, name)).features()["member_id"].nunique()
    for stale in (big_home / "features").glob(f"{name}/v*/as_of=*/profile-*"):  # the book is part of the work
        subprocess.run(["rm", "-rf", str(stale)], check=True)
    out = big_home / "profiles.parquet"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli", "profile", "--dataset", name, "--out", str(out)], env=env, check=True)
    seconds = time.perf_counter() - started
    return (
        "| members | seconds, `community-ml profile` (its own process: the book built, every profile written) |\n"
        f"|---:|---:|\n| {members:,} | {seconds:,.0f} |\n"
    )


def _latest(home: Path, name: str) -> date:
    found = sorted((home / "features" / name).glob("v*/as_of=*"))
    return date.fromisoformat(found[-1].name.split("=")[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail-csv", type=Path, default=Path("../shared/data/online_retail/online_retail.csv.gz"))
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--serving-home", type=Path, default=PROJECT / ".community-ml-bench" / "serving")
    parser.add_argument("--big-home", type=Path, default=PROJECT / ".community-ml-bench" / "m500k")
    parser.add_argument("--big-members", type=int, default=500_000, help="the batch profile's community size")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--skip", default="", help="parts to leave out: quality, speed, batch (comma-separated)")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    parts = []
    if "quality" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            home = StateHome(Path(tmp))
            synthetic = Dataset(home, "synthetic")
            import_synthetic(synthetic, SyntheticConfig(members=args.members))
            cutoffs = {"validation": date(2025, 10, 1), "test": date(2026, 1, 1)}
            for cutoff in cutoffs.values():
                build_snapshot(synthetic, SnapshotSettings(as_of=cutoff))
            fields = [
                ("favourite_categories", "favourite category"),
                ("favourite_topics", "favourite topic"),
                ("active_weekday", "active weekday"),
                ("active_hour", "active hour"),
            ]
            parts.append(f"## Synthetic community ({args.members:,} members)\n")
            parts.append(favourites_table(synthetic, "synthetic", cutoffs, fields))
            parts.append("### Price sensitivity against the next 90 days' discounted share of spend\n")
            parts.append(price_table(synthetic, cutoffs))
            parts.append("### Segment stability: Jaccard overlap of each segment's members (members next month)\n")
            parts.append(stability_table(synthetic, [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]))
            if args.retail_csv.exists():
                retail = Dataset(home, "online_retail")
                import_online_retail(retail, args.retail_csv)
                cutoffs = {"validation": date(2011, 6, 1), "test": date(2011, 9, 1)}
                for cutoff in cutoffs.values():
                    build_snapshot(retail, SnapshotSettings(as_of=cutoff))
                parts.append("## Online Retail\n")
                parts.append(favourites_table(retail, "Online Retail", cutoffs, fields[2:]))
                parts.append("### Stability month to month\n")
                parts.append(stability_table(retail, [date(2011, 9, 1), date(2011, 10, 1), date(2011, 11, 1)]))
            else:
                parts.append(f"Online Retail not measured: {args.retail_csv} is absent.\n")
    if "speed" not in skip:
        parts.append("## `/profile` under load (wrk -t2 -c4, 2 workers)\n")
        parts.append(speed_table(args.serving_home, args.seconds))
    if "batch" not in skip:
        parts.append("## Batch profile at scale\n")
        parts.append(batch_table(args.big_home, args.big_members))
    write_results("profile", "The member profile: what its fields predict, and its speed", __doc__, "\n".join(parts))


if __name__ == "__main__":
    main()
