"""Benchmark: POST /events with the event log on a Redis stream and on the journal file, before and after, in one run.

Four servers of the demo community (two workers each; experiments/bench_serving.py builds its home when missing):
the code of `--before` and of this checkout, each with the journal (one machine) and with a Redis stream
(`COMMUNITY_ML_REDIS_URL`, Redis with `appendonly yes` and `appendfsync always`: nothing acknowledged is lost).
On each, one at a time: 100 POST /events of one order in a row (as a shop's backend posts its orders: p50, p99 of
the answer's time), then `/churn` under `wrk -t2 -c4` for `--seconds` after a 5 s warm-up (what Redis costs the
answers). Each server starts from the same snapshot with no event posted (the events and the stream are cleared
between servers). Writes experiments/results/events.md.

    .venv/bin/python experiments/bench_events.py [--before REF] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from experiments.bench_serving import (
    CLI,
    DATASET,
    PROJECT,
    WRK_SCRIPT,
    clear_events,
    free_port,
    post_events,
    ready_home,
    run,
    start,
    stop,
    wrk,
)
from experiments.results_file import write_results


def redis_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A Redis of its own, its append-only file fsynced at every write."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make test installs Debian's redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)]
    server = subprocess.Popen([*command, "--appendonly", "yes", "--appendfsync", "always"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return server, f"redis://127.0.0.1:{port}/0"
        except redis.RedisError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def main() -> None:
    import redis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=PROJECT / ".community-ml-bench" / "serving")
    parser.add_argument("--before", default="fa01702", help="the commit to measure as 'before'")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "COMMUNITY_ML_CHAMPION_POLL_SECONDS": "0"}
    for name in ("COMMUNITY_ML_API_KEY", "MLFLOW_TRACKING_URI", "COMMUNITY_ML_WORKERS", "COMMUNITY_ML_REDIS_URL"):
        env.pop(name, None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, members = ready_home(args.home, DATASET, tmp)
        script, members_file = Path(tmp) / "post.lua", Path(tmp) / "members.txt"
        script.write_text(WRK_SCRIPT)
        members_file.write_text("\n".join(members[:5000]) + "\n")
        before = Path(tmp) / "before"
        run(["git", "worktree", "add", "--detach", "--force", str(before), args.before], env)
        (Path(tmp) / "redis").mkdir()
        server_redis, url = redis_server(Path(tmp) / "redis")
        try:
            for log in ("journal", "redis stream"):
                for label, code in ((f"before ({args.before})", before), ("after", PROJECT)):
                    clear_events(root)
                    redis.Redis.from_url(url).flushall()
                    served = {**env, "PYTHONPATH": str(code), "COMMUNITY_ML_HOME": str(root)}
                    if log == "redis stream":
                        served["COMMUNITY_ML_REDIS_URL"] = url
                    port = free_port()
                    command = [*CLI, "serve", "--dataset", DATASET, "--port", str(port), "--workers", "2"]
                    server = start(command, served, port, code)
                    try:
                        base = f"http://127.0.0.1:{port}"
                        posted = post_events(base, members)
                        wrk(base, "/churn", 5, script, members_file, 4)
                        churn = wrk(base, "/churn", args.seconds, script, members_file, 4)
                    finally:
                        stop(server)
                    rows.append((label, log, posted, churn))
                    print(label, log, posted, {k: round(churn[k], 2) for k in ("rps", "p99")}, flush=True)
        finally:
            server_redis.terminate()
            server_redis.wait(timeout=10)
            clear_events(root)
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=PROJECT, check=False)
    lines = [
        "| server | event log | POST /events p50 ms | p99 ms | `/churn` requests/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, log, posted, churn in rows:
        lines.append(
            f"| {label} | {log} | {posted['p50']:.1f} | {posted['p99']:.1f} | {churn['rps']:,.0f} | "
            f"{churn['p50']:.2f} | {churn['p99']:.2f} |"
        )
    write_results("events", "Posted events: the journal and the Redis stream", __doc__, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
