"""Benchmark: feature snapshot build time, DuckDB/Ibis against a plain pandas groupby baseline.

For the synthetic community scaled to about 1M, 10M and 30M events (1M generated; larger sizes are copies of
it under new member ids) and for Online Retail, times `build_snapshot` end to end (features, labels and
interaction matrices, from the Parquet tables) and the pandas baseline (`pandas_features.py`, reading the same
Parquet files), checks that both give the same feature values, and writes experiments/results/features.md.

    .venv/bin/python experiments/bench_features.py [--sizes 1,10,30] [--pandas-max 10] [--retail-csv PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import pandas_features
from experiments.results_file import write_results
from features.common.home import StateHome
from features.dataset.contract import TABLE_NAMES
from features.dataset.importers import import_synthetic
from features.dataset.online_retail import import_online_retail
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot

SYNTHETIC_AS_OF = date(2025, 12, 1)
RETAIL_AS_OF = date(2011, 9, 10)
MEMBERS_PER_MILLION = 12_900  # the default community has ~77 events per member


def scaled_copy(base: Dataset, target: Dataset, copies: int) -> int:
    """`copies` copies of the base dataset's members and their events, each under new ids."""
    for table in TABLE_NAMES:
        if not base.has(table):
            continue
        frame = base.read(table)
        if table in ("orders", "engagements", "members"):
            parts = []
            for k in range(copies):
                part = frame.copy()
                part["member_id"] = part["member_id"] + f"-{k}"
                if "order_id" in part:
                    part["order_id"] = part["order_id"] + f"-{k}"
                parts.append(part)
            frame = pd.concat(parts, ignore_index=True)
        target.write(table, frame)
    target.record({"kind": "benchmark copy", "copies": copies})
    return target.row_count("orders") + target.row_count("engagements")


def time_duckdb(dataset: Dataset, as_of: date) -> tuple[float, float]:
    """(seconds for the features alone, seconds end to end with labels and interaction matrices)."""
    started = time.perf_counter()
    result = build_snapshot(dataset, SnapshotSettings(as_of=as_of), force=True)
    return result.stage_seconds["features"], time.perf_counter() - started


def time_pandas(dataset: Dataset, as_of: date) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    tables = {t: dataset.read(t) for t in dataset.tables()}
    out = pandas_features.snapshot(tables, pd.Timestamp(as_of))
    return time.perf_counter() - started, out


def max_difference(dataset: Dataset, as_of: date, baseline: pd.DataFrame) -> tuple[int, float]:
    """(columns compared, largest relative difference) between the two implementations."""
    ours = Snapshot(dataset, as_of).features().set_index("member_id")
    assert list(ours.index) == list(baseline.index), "the two implementations disagree on the members"
    worst, compared = 0.0, 0
    for column in baseline.columns:
        if column not in ours or not pd.api.types.is_numeric_dtype(ours[column]):
            continue
        a, b = ours[column].astype(float).to_numpy(), baseline[column].astype(float).to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{column}: missing values differ"
        both = ~np.isnan(a)
        rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1.0)
        worst = max(worst, float(rel.max(initial=0.0)))
        compared += 1
    return compared, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,30", help="synthetic sizes in millions of events")
    parser.add_argument("--pandas-max", type=float, default=10, help="largest size (M events) for pandas")
    parser.add_argument("--retail-csv", type=Path, default=Path("../shared/data/online_retail/online_retail.csv.gz"))
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",") if s]

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = StateHome(Path(tmp))
        base = Dataset(home, "synthetic-1m")
        import_synthetic(base, SyntheticConfig(members=MEMBERS_PER_MILLION))
        cases: list[tuple[str, Dataset, date]] = []
        for size in sizes:
            copies = max(1, round(size))
            dataset = base if copies == 1 else Dataset(home, f"synthetic-{copies}m")
            if copies > 1:
                scaled_copy(base, dataset, copies)
            cases.append((f"synthetic ~{copies}M", dataset, SYNTHETIC_AS_OF))
        if args.retail_csv.exists():
            retail = Dataset(home, "retail")
            import_online_retail(retail, args.retail_csv)
            cases.append(("Online Retail", retail, RETAIL_AS_OF))

        for name, dataset, as_of in cases:
            events = dataset.row_count("orders") + dataset.row_count("engagements")
            features_s, total_s = time_duckdb(dataset, as_of)
            members = len(Snapshot(dataset, as_of).features())
            row = {
                "dataset": name,
                "events": events,
                "members": members,
                "duckdb_s": features_s,
                "total_s": total_s,
            }
            if events <= args.pandas_max * 1e6 * 1.1:
                seconds, baseline = time_pandas(dataset, as_of)
                compared, worst = max_difference(dataset, as_of, baseline)
                row |= {"pandas_s": seconds, "compared": compared, "worst": worst}
            rows.append(row)
            print(row, flush=True)

    lines = [
        "| dataset | events | members | DuckDB/Ibis features s | events/s | whole build s | pandas features s "
        "| speed-up | columns checked | max rel. diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pandas_cells = (
            f"{r['pandas_s']:.1f} | {r['pandas_s'] / r['duckdb_s']:.1f}x | {r['compared']} | {r['worst']:.1e}"
            if "pandas_s" in r
            else "not run | - | - | -"
        )
        lines.append(
            f"| {r['dataset']} | {r['events']:,} | {r['members']:,} | {r['duckdb_s']:.1f} | "
            f"{r['events'] / r['duckdb_s']:,.0f} | {r['total_s']:.1f} | {pandas_cells} |"
        )
    table = "\n".join(lines) + "\n"
    write_results(
        "features",
        "Feature build benchmark",
        "Produced by `make bench` (`experiments/bench_features.py`). Every time starts from the dataset's Parquet\n"
        "tables. DuckDB/Ibis features = the feature snapshot alone, computed and written; whole build =\n"
        "`build_snapshot` end to end (features, 90-day labels, both interaction matrices); pandas features =\n"
        "the same features as plain groupbys (`experiments/pandas_features.py`); speed-up = pandas features /\n"
        "DuckDB features.\n"
        "'max rel. diff' compares every numeric feature of the two implementations, member by member.\n"
        f"Synthetic as of {SYNTHETIC_AS_OF}, Online Retail as of {RETAIL_AS_OF}. Sizes above ~1M events are\n"
        "copies of the 1M community under new member ids.\n\n",
        table,
    )


if __name__ == "__main__":
    main()
