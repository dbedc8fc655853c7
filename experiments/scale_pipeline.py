"""Benchmark: the whole member pipeline at the business plan's sizes (500,000 and 2,000,000 members).

For each size, in its own state home: `data generate` (unless the community is there already), `features build`
of the latest snapshot, `train churn` and `train value` (their cutoffs' snapshots built on the way), and batch
`score` in this process and on Spark local mode; each step timed as its own process, with the peak memory of its
process tree. Appends one table per size to experiments/results/scale.md.

    .venv/bin/python experiments/scale_pipeline.py --members 500000 --home DIR [--training-cutoffs 3 --test-cutoffs 1]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from experiments.measured import run_measured
from experiments.results_file import RESULTS_DIR

CLI = str(Path(".venv/bin/community-ml").resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True, help="the state home (kept: the data take minutes)")
    parser.add_argument("--dataset", help="the community's name (default: m<members>)")
    parser.add_argument("--training-cutoffs", type=int, default=3)
    parser.add_argument("--test-cutoffs", type=int, default=1)
    parser.add_argument("--skip", default="", help="steps to leave out, comma-separated (e.g. 'score on Spark')")
    args = parser.parse_args()
    dataset = args.dataset or f"m{args.members}"
    env = {**os.environ, "COMMUNITY_ML_HOME": str(args.home.resolve())}
    env.pop("MLFLOW_TRACKING_URI", None)
    cutoffs = ["--training-cutoffs", str(args.training_cutoffs), "--test-cutoffs", str(args.test_cutoffs)]
    scores = args.home / "scores"
    steps = [
        ("generate", ["data", "generate", "-d", dataset, "--members", str(args.members)]),
        ("features build (DuckDB)", ["features", "build", "-d", dataset]),
        ("train churn", ["train", "churn", "-d", dataset, *cutoffs]),
        ("train value", ["train", "value", "-d", dataset, *cutoffs]),
        ("score (DuckDB, in process)", ["score", "-d", dataset, "--out", str(scores / "duckdb.parquet")]),
        ("score on Spark", ["score", "-d", dataset, "--engine", "spark", "--out", str(scores / "spark.parquet")]),
    ]
    path = RESULTS_DIR / "scale.md"
    if not path.exists():
        path.write_text("# The member pipeline at the plan's sizes\n\n" + __doc__.split("\n\n")[1] + "\n")
    with path.open("a") as out:  # a row as each step ends: a long run stopped half-way keeps what it measured
        out.write(
            f"\n## {args.members:,} members (train: {args.training_cutoffs} training cutoffs, {args.test_cutoffs} "
            "test)\n\n| step | seconds | peak MB (process tree) |\n|---|---:|---:|\n"
        )
    for name, command in steps:
        if name in args.skip.split(","):
            continue
        print(f"{name} ...", flush=True)
        measured = run_measured([CLI, *command], env)
        status = "" if measured.returncode == 0 else f" (exit {measured.returncode}: {measured.stderr[-300:]!r})"
        print(f"  {measured.seconds:.0f} s, peak {measured.peak_mb:,.0f} MB{status}", flush=True)
        (args.home / f"{name.split(' (')[0].replace(' ', '_')}.log").write_text(measured.stdout + measured.stderr)
        with path.open("a") as out:
            out.write(f"| {name} | {measured.seconds:,.0f} | {measured.peak_mb:,.0f} |{status}\n")


if __name__ == "__main__":
    main()
