"""Benchmark: how long `community-ml health` takes on the plan's size, before and after a change, in one run.

On the 500,000-member community of experiments/bench_outreach.py (`--big-home`, built there when missing: the
demo's config, its coupon campaign), each `health` variant in its own process, once per checkout: this one and,
with `--before REF`, a git worktree of REF on the same home (a variant REF lacks is shown as such). Seconds and
peak memory (GNU time). Writes experiments/results/health.md.

    .venv/bin/python experiments/bench_health.py [--big-home DIR] [--before REF]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench_outreach import BIG_DATASET, BIG_MEMBERS, ready_big_home
from experiments.results_file import write_results

PROJECT = Path(__file__).resolve().parents[1]
VARIANTS = (
    ("the community", []),
    ("--by group", ["--by", "group"]),
    ("--by group_type", ["--by", "group_type"]),
    ("--by channel", ["--by", "channel"]),
    ("--by content_type", ["--by", "content_type"]),
)


def timed_health(code: Path, home: Path, extra: list[str]) -> tuple[float, float] | str:
    """`health` of the checkout at `code` in its own process: seconds and peak memory (GB), or why it failed."""
    env = {**os.environ, "COMMUNITY_ML_HOME": str(home), "PYTHONPATH": str(code)}
    command = [sys.executable, "-m", "cli", "health", "--dataset", BIG_DATASET, "--no-record", "--json", *extra]
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, cwd=code, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a watched floor crossed, still a whole report
        return "not in this version" if "Invalid value for '--by'" in done.stderr else "failed"
    peak = next((int(line.split(":")[-1]) for line in done.stderr.splitlines() if "Maximum resident" in line), 0)
    return seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-home", type=Path, default=PROJECT / ".community-ml-bench" / "plan500k")
    parser.add_argument("--before", help="a commit whose `health` to time beside this checkout's")
    args = parser.parse_args()
    ready_big_home(args.big_home)
    results: dict[str, dict[str, tuple[float, float] | str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        checkouts = {"after": PROJECT}
        if args.before:
            code = Path(tmp) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", "--force", str(code), args.before], cwd=PROJECT,
                           check=True, capture_output=True)  # fmt: skip
            checkouts = {f"before ({args.before})": code, **checkouts}
        try:
            for label, extra in VARIANTS:
                for version, code in checkouts.items():
                    results.setdefault(label, {})[version] = outcome = timed_health(code, args.big_home, extra)
                    print(label, version, outcome, flush=True)
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(Path(tmp) / "before")], cwd=PROJECT)
    versions = list(checkouts)
    lines = ["| health | " + " | ".join(versions) + " |", "|---|" + "---:|" * len(versions)]
    for label, by_version in results.items():
        cells = []
        for version in versions:
            outcome = by_version[version]
            cells.append(outcome if isinstance(outcome, str) else f"{outcome[0]:.1f} s, {outcome[1]:.1f} GB")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    command = "experiments/bench_health.py" + (f" --before {args.before}" if args.before else "")
    explanation = (
        f"`.venv/bin/python {command}`: each variant of `health` in its own process, one run per checkout, on the "
        f"same {BIG_MEMBERS:,}-member home (bench_outreach.py's big home); seconds and peak memory."
    )
    write_results("health", f"`community-ml health` on {BIG_MEMBERS:,} members", explanation, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
