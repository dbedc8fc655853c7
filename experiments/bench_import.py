"""Benchmark: how fast data enters the project, and what the contract's checks cost.

Measures, in one run, the synthetic generator and the importers against a baseline that reads the same file
and writes Parquet with no validation at all (plain pandas). Prints a table and writes it to
experiments/results/import.md.

    .venv/bin/python experiments/bench_import.py [--retail-csv PATH] [--members N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from experiments.results_file import write_results
from features.common.home import StateHome
from features.dataset.importers import import_file, import_synthetic
from features.dataset.online_retail import import_online_retail
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def plain_pandas(path: Path, out: Path) -> int:
    """The baseline: read and write, no checks, no quarantine, no de-duplication."""
    frame = pd.read_csv(path)
    frame.to_parquet(out, index=False)
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail-csv", type=Path, default=Path("../shared/data/online_retail/online_retail.csv.gz"))
    parser.add_argument("--members", type=int, default=20_000)
    args = parser.parse_args()

    rows: list[tuple[str, str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = StateHome(Path(tmp))
        seconds, summary = timed(
            lambda: import_synthetic(Dataset(home, "synthetic"), SyntheticConfig(members=args.members))
        )
        events = sum(t.rows_read for t in summary.tables if t.table in ("orders", "engagements"))
        rows.append((f"generate synthetic ({args.members:,} members)", "community-ml", events, seconds))

        # The generated orders as a plain CSV: the generic importer against the no-checks baseline.
        csv_path = Path(tmp) / "orders.csv"
        Dataset(home, "synthetic").read("orders").to_csv(csv_path, index=False)
        seconds, summary = timed(lambda: import_file(Dataset(home, "csv"), "orders", csv_path))
        rows.append(("import orders CSV", "community-ml", summary.tables[0].rows_read, seconds))
        seconds, count = timed(lambda: plain_pandas(csv_path, Path(tmp) / "plain.parquet"))
        rows.append(("import orders CSV", "baseline: pandas read_csv + to_parquet", count, seconds))

        if args.retail_csv.exists():
            seconds, summary = timed(lambda: import_online_retail(Dataset(home, "retail"), args.retail_csv))
            rows.append(("import Online Retail", "community-ml", summary.tables[0].rows_read, seconds))
            seconds, count = timed(lambda: plain_pandas(args.retail_csv, Path(tmp) / "retail.parquet"))
            rows.append(("import Online Retail", "baseline: pandas read_csv + to_parquet", count, seconds))
        else:
            print(f"skipping Online Retail: {args.retail_csv} not found")

    header = "| task | implementation | rows | seconds | rows/s |\n|---|---|---:|---:|---:|\n"
    body = "".join(f"| {task} | {impl} | {n:,} | {s:.2f} | {n / s:,.0f} |\n" for task, impl, n, s in rows)
    table = header + body
    write_results(
        "import",
        "Import benchmark",
        "Produced by `make bench` (`experiments/bench_import.py`). The baseline reads and writes the same\n"
        "file with no validation, no quarantine and no de-duplication: the difference is what the data\n"
        "contract costs.",
        table,
    )


if __name__ == "__main__":
    main()
