"""Benchmark: the whole member pipeline at the business plan's sizes (500,000 and 2,000,000 members).

For each size, in its own state home: `data generate` (unless the community is there already), `features build`
of the latest snapshot, `train churn`, `train value` and `train product-recs` (their cutoffs' snapshots built on
the way), batch `score` in this process and on Spark local mode, and the service's start-up (until `/readyz`
answers); each step timed as its own process, with the peak memory of its process tree. `--code DIR` runs the
steps with another checkout's code (a git worktree of an earlier commit: before and after, side by side, on the
same data). Appends one table per run to experiments/results/scale.md.

    .venv/bin/python experiments/scale_pipeline.py --members 500000 --home DIR [--code DIR] [--skip STEPS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from experiments.measured import Measured, run_measured, tree_rss_mb
from experiments.results_file import RESULTS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True, help="the state home (kept: the data take minutes)")
    parser.add_argument("--dataset", help="the community's name (default: m<members>)")
    parser.add_argument("--training-cutoffs", type=int, default=6)
    parser.add_argument("--test-cutoffs", type=int, default=3)
    parser.add_argument(
        "--skip",
        default="",
        help="steps to leave out, comma-separated, named without their parentheses (e.g. 'score,score on Spark')",
    )
    parser.add_argument("--code", type=Path, help="run the steps with this checkout's code (default: this one)")
    parser.add_argument("--label", default="", help="what the table's title says of this run (e.g. 'before')")
    args = parser.parse_args()
    dataset = args.dataset or f"m{args.members}"
    env = {**os.environ, "COMMUNITY_ML_HOME": str(args.home.resolve())}
    env.pop("MLFLOW_TRACKING_URI", None)
    cutoffs = ["--training-cutoffs", str(args.training_cutoffs), "--test-cutoffs", str(args.test_cutoffs)]
    code = (args.code or Path(".")).resolve()
    # The checkout's code: run from its folder, by this environment's interpreter (its path as given: resolving
    # the virtual environment's link would leave the environment).
    cli = [str(Path(sys.executable).absolute()), "-m", "cli"]
    scores = args.home / "scores"
    steps = [
        ("generate", ["data", "generate", "-d", dataset, "--members", str(args.members)]),
        ("features build (DuckDB)", ["features", "build", "-d", dataset]),
        ("train churn", ["train", "churn", "-d", dataset, *cutoffs]),
        ("train value", ["train", "value", "-d", dataset, *cutoffs]),
        ("train product-recs", ["train", "product-recs", "-d", dataset]),
        ("score (DuckDB, in process)", ["score", "-d", dataset, "--out", str(scores / "duckdb.parquet")]),
        ("score on Spark", ["score", "-d", dataset, "--engine", "spark", "--out", str(scores / "spark.parquet")]),
        ("serve start-up", ["serve", "--dataset", dataset, "--port", str(SERVE_PORT)]),
    ]
    path = RESULTS_DIR / "scale.md"
    if not path.exists():
        path.write_text("# The member pipeline at the plan's sizes\n\n" + __doc__.split("\n\n")[1] + "\n")
    with path.open("a") as out:  # a row as each step ends: a long run stopped half-way keeps what it measured
        out.write(
            f"\n## {args.members:,} members{' ' + args.label if args.label else ''} (train: {args.training_cutoffs} "
            f"training cutoffs, {args.test_cutoffs} test)\n\n"
            "| step | seconds | peak MB (process tree) |\n|---|---:|---:|\n"
        )
    for name, command in steps:
        if name.split(" (")[0] in [s.strip() for s in args.skip.split(",")]:
            continue
        print(f"{name} ...", flush=True)
        if name == "serve start-up":
            measured = measure_start_up([*cli, *command], env, code)
        else:
            measured = run_measured([*cli, *command], env, cwd=code)
        status = "" if measured.returncode == 0 else f" (exit {measured.returncode}: {measured.stderr[-300:]!r})"
        print(f"  {measured.seconds:.0f} s, peak {measured.peak_mb:,.0f} MB{status}", flush=True)
        (args.home / f"{name.split(' (')[0].replace(' ', '_')}.log").write_text(measured.stdout + measured.stderr)
        with path.open("a") as out:
            out.write(f"| {name} | {measured.seconds:,.0f} | {measured.peak_mb:,.0f} |{status}\n")


SERVE_PORT = 3917


def measure_start_up(command: list[str], env: dict[str, str], cwd: Path, limit: float = 1800.0) -> Measured:
    """The service from its start until `/readyz` answers 200 (every champion loaded, every worker up), with the
    peak memory of its process tree; then stopped."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched, peak, ready = psutil.Process(process.pid), 0.0, False
    try:
        while time.perf_counter() - started < limit and process.poll() is None:
            peak = max(peak, tree_rss_mb(watched))
            try:
                ready = httpx.get(f"http://127.0.0.1:{SERVE_PORT}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - started
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):  # a service that failed to start has no children left
            for child in watched.children(recursive=True):
                child.terminate()
        process.terminate()
        output, _ = process.communicate(timeout=60)
    return Measured(seconds, peak, 0 if ready else 1, output, "" if ready else "never ready")


if __name__ == "__main__":
    main()
