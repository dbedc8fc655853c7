"""Benchmark: outreach's speed (issue 43; its gain against the obvious policies: experiments/bench_plan.py).

- `POST /next_action` for one random member, beside `/churn`, `wrk -t2 -c4` after a 5 s warm-up, on one server of
  the demo community (two workers; experiments/bench_serving.py builds its home when missing);
- with `--before REF`, `/next_action` before and after in one run: a server of REF (a git worktree) and one of
  this checkout on the same home, up together, `--rounds` 10-second runs each in alternating order (the tail of
  a closed-loop load on 2 cores moves a lot between two runs of one server; see serving_ab.py). The same home
  serves both, so REF must read the models this checkout trained (no model format changed between them);
- `community-ml outreach plan` on the same community, in its own process, and on a community of 500,000 members
  (`--big-home`: configs/synthetic.yaml's campaign and pushes, an uplift champion and a product recommender; built
  once when missing, about 20 minutes on 2 cores).
Writes experiments/results/outreach.md.

    .venv/bin/python experiments/bench_outreach.py [--serving-home DIR] [--seconds 20] [--before REF --rounds 3]
        [--big-home DIR | --no-big]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.bench_serving import (
    CLI,
    DATASET,
    WRK_SCRIPT,
    endpoint_table,
    free_port,
    ready_home,
    run,
    start,
    stop,
    wrk,
)
from experiments.results_file import write_results

PROJECT = Path(__file__).resolve().parents[1]


BIG_DATASET, BIG_MEMBERS = "m500000", 500_000


def timed_plan(home: Path, dataset: str, out: str) -> tuple[float, str, float]:
    """`outreach plan` in its own process: seconds, what it said, peak memory (GB)."""
    env = {**os.environ, "COMMUNITY_ML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, "-m", "cli", "outreach", "plan", "--dataset", dataset, "--out", out]
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, cwd=PROJECT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"outreach plan failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    said = " ".join(done.stdout.split())
    peak = next((int(line.split(":")[-1]) for line in done.stderr.splitlines() if "Maximum resident" in line), 0)
    return seconds, said, peak / 2**20


def ready_big_home(home: Path) -> None:
    """The 500,000-member community with what the plan weighs (built once, kept)."""
    if (home / "trained").exists():
        return
    env = {**os.environ, "COMMUNITY_ML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    cli = [sys.executable, "-m", "cli"]
    for step in (
        ["data", "generate", "--dataset", BIG_DATASET, "--members", str(BIG_MEMBERS), "--seed", "7",
         "--config", "configs/synthetic.yaml", "--force"],
        ["train", "uplift", "--dataset", BIG_DATASET, "--campaign", "coupon", "--horizon-days", "30"],
        ["train", "product-recs", "--dataset", BIG_DATASET, "--budget-seconds", "0"],
    ):  # fmt: skip
        run([*cli, *step], env)
    (home / "trained").touch()


def plan_table(serving_home: Path | None, big_home: Path | None) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home, members = ready_home(serving_home, DATASET, tmp)
        rows.append((len(members), *timed_plan(home, DATASET, f"{tmp}/plan.csv")))
        if big_home is not None:
            ready_big_home(big_home)
            rows.append((BIG_MEMBERS, *timed_plan(big_home, BIG_DATASET, f"{tmp}/big-plan.csv")))
    header = "| members | seconds | peak memory GB | what it said |\n|---:|---:|---:|---|\n"
    return header + "".join(f"| {n:,} | {s:.1f} | {gb:.1f} | {said} |\n" for n, s, said, gb in rows)


def before_after(serving_home: Path | None, before: str, rounds: int, body: str) -> str:
    """`/next_action` on a server of `before` and one of this checkout, the same home, alternating runs."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    for name in ("COMMUNITY_ML_API_KEY", "MLFLOW_TRACKING_URI", "COMMUNITY_ML_WORKERS", "COMMUNITY_ML_REDIS_URL"):
        env.pop(name, None)
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home, members = ready_home(serving_home, DATASET, tmp)
        code = Path(tmp) / "before"
        run(["git", "worktree", "add", "--detach", "--force", str(code), before], env)
        script, members_file = Path(tmp) / "post.lua", Path(tmp) / "members.txt"
        script.write_text(WRK_SCRIPT)
        members_file.write_text("\n".join(members[:5000]) + "\n")
        servers: dict[str, tuple[subprocess.Popen, str]] = {}
        try:
            for label, root in ((f"before ({before})", code), ("after", PROJECT)):
                port = free_port()
                command = [*CLI, "serve", "--dataset", DATASET, "--port", str(port), "--workers", "2"]
                served = {**env, "PYTHONPATH": str(root), "COMMUNITY_ML_HOME": str(home)}
                servers[label] = (start(command, served, port, root), f"http://127.0.0.1:{port}")
            for _, base in servers.values():
                wrk(base, "/next_action", 5, script, members_file, 4, body)
            order = list(servers.items())
            for round_ in range(rounds):  # A B, B A, A B ...: neither always goes first
                for label, (_, base) in order if round_ % 2 == 0 else order[::-1]:
                    result = wrk(base, "/next_action", 10, script, members_file, 4, body)
                    runs.setdefault(label, []).append(result)
                    print(label, {k: round(result[k], 2) for k in ("rps", "p50", "p99", "p999")}, flush=True)
        finally:
            for server, _ in servers.values():
                stop(server)
            subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=PROJECT, check=False)
    lines = [
        "| server | runs: requests/s, p99 ms | median requests/s | median p50 ms | median p99 ms | median p99.9 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, results in runs.items():
        each = "; ".join(f"{r['rps']:,.0f}, {r['p99']:.1f}" for r in results)
        medians = [float(np.median([r[k] for r in results])) for k in ("rps", "p50", "p99", "p999")]
        lines.append(
            f"| {label} | {each} | {medians[0]:,.0f} | {medians[1]:.2f} | {medians[2]:.2f} | {medians[3]:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-home", type=Path, default=PROJECT / ".community-ml-bench" / "serving")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--big-home", type=Path, default=PROJECT / ".community-ml-bench" / "plan500k")
    parser.add_argument("--no-big", action="store_true", help="leave the 500,000-member plan out")
    parser.add_argument("--before", help="a commit whose /next_action to measure beside this checkout's")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = '{"member_id": "MEMBER"}'
    parts = [
        "## `/next_action` under load (wrk -t2 -c4, 2 workers)\n",
        endpoint_table(args.serving_home, {"/churn": None, "/next_action": body}, args.seconds),
    ]
    if args.before:
        parts += [
            f"## `/next_action` before ({args.before}) and after, alternating (wrk -t2 -c4, 2 workers each)\n",
            before_after(args.serving_home, args.before, args.rounds, body),
        ]
    parts += [
        "## The day's plan\n",
        plan_table(args.serving_home, None if args.no_big else args.big_home),
    ]
    write_results("outreach", "Outreach: the next action and the day's plan, how fast", __doc__, "\n".join(parts))


if __name__ == "__main__":
    main()
