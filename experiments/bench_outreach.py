"""Benchmark: outreach's speed (issue 43; its gain against the obvious policies: experiments/bench_plan.py).

- `POST /next_action` for one random member, beside `/churn`, `wrk -t2 -c4` after a 5 s warm-up, on one server of
  the demo community (two workers; experiments/bench_serving.py builds its home when missing);
- `community-ml outreach plan` on the same community, in its own process.
Writes experiments/results/outreach.md.

    .venv/bin/python experiments/bench_outreach.py [--serving-home DIR] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench_serving import DATASET, endpoint_table, ready_home
from experiments.results_file import write_results

PROJECT = Path(__file__).resolve().parents[1]


def plan_table(serving_home: Path | None) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        home, members = ready_home(serving_home, DATASET, tmp)
        env = {**os.environ, "COMMUNITY_ML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        command = [sys.executable, "-m", "cli", "outreach", "plan", "--dataset", DATASET, "--out", f"{tmp}/plan.csv"]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=PROJECT, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
    said = [line for line in done.stdout.splitlines() if "planned" in line or line.startswith("left out")]
    header = "| members | seconds | what it said |\n|---:|---:|---|\n"
    return header + f"| {len(members):,} | {seconds:.1f} | {'; '.join(said)} |\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-home", type=Path, default=PROJECT / ".community-ml-bench" / "serving")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    body = '{"member_id": "MEMBER"}'
    parts = [
        "## `/next_action` under load (wrk -t2 -c4, 2 workers)\n",
        endpoint_table(args.serving_home, {"/churn": None, "/next_action": body}, args.seconds),
        "## The day's plan\n",
        plan_table(args.serving_home),
    ]
    write_results("outreach", "Outreach: the next action and the day's plan, how fast", __doc__, "\n".join(parts))


if __name__ == "__main__":
    main()
