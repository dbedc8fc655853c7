"""Soak: two replicas that share only Redis, under mixed load, one killed mid-run and Redis restarted.

The demo community (experiments/bench_serving.py builds its home when missing) is copied into two replica homes and
a training home: no disk shared between them but the registry's read-only model files (the MLflow server's stand-in
here; `make soak` tests the real server). A Redis with `appendonly yes` and `appendfsync always` holds the event
stream. Each replica is `community-ml serve --workers 1`. The load is a client-side round-robin (a few lines of
Python: request i goes to replica i mod 2, and to the other where that one refuses the connection) pacing
`--rate` requests/s for `--seconds`: 90% `/churn` for a random member, 10% `POST /events` with one order of its
own id, at most `--in-flight` under way (past the servers' pace the load is a closed loop: the rate it reached is
in the table). At 20% of the run replica A is SIGKILLed (every process of it) and started again at 30%; at 75%
Redis is SIGKILLed and started again on its files. Then the training home runs `data ingest` twice, and every
acknowledged order is looked for in its tables. Writes experiments/results/soak_replicas.md.

The load generator is Python (wrk cannot fail over between two hosts) on the same 2 cores as both replicas and
Redis: the rate it reaches, not `--rate`, is what the table shows.

    .venv/bin/python experiments/soak_replicas.py [--seconds 90] [--rate 1000] [--in-flight 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil

from experiments.bench_events import redis_server
from experiments.bench_serving import CLI, DATASET, PROJECT, free_port, ready_home, start
from experiments.results_file import write_results


def replica_home(home: Path, root: Path) -> Path:
    """The dataset, its snapshots, keys and registry copied (the model files are linked, read-only)."""
    for part in ("datasets", "features", "secrets"):
        shutil.copytree(home / part, root / part)
    shutil.copy(home / "mlflow.db", root / "mlflow.db")
    (root / "mlartifacts").symlink_to(home / "mlartifacts")
    return root


def kill_tree(process: subprocess.Popen) -> None:
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for each in tree:
        each.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)
    process.wait(timeout=30)


class Load:
    """Paced requests, round-robin over the replicas with fail-over, every outcome recorded with its time."""

    def __init__(self, bases: list[str], members: list[str], rate: float, seconds: float, in_flight: int) -> None:
        self.bases, self.members, self.rate, self.seconds = bases, members, rate, seconds
        self.in_flight = in_flight  # requests under way at most: a closed loop past the servers' pace
        self.records: list[tuple[float, str, str, float]] = []  # (t, path, outcome, ms)
        self.acknowledged: list[str] = []
        self.refused: list[str] = []  # 503: not acknowledged, to post again
        self.unanswered: list[str] = []  # no answer (a replica killed mid-request, a timeout): kept or not
        self.started = 0.0

    async def one(self, client: httpx.AsyncClient, i: int, rng: np.random.Generator) -> None:
        member = self.members[int(rng.integers(len(self.members)))]
        if i % 10 == 0:
            order_id = f"soak-{i}"
            path, body = "/events", {"orders": [{"member_id": member, "ts": "2026-11-26T09:30:00", "amount": 10.0,
                                                 "order_id": order_id}]}  # fmt: skip
        else:
            order_id, path, body = "", "/churn", {"member_ids": [member]}
        began = time.perf_counter()
        outcome = "failed"
        for attempt in range(2):
            base = self.bases[(i + attempt) % len(self.bases)]
            try:
                answer = await client.post(base + path, json=body, timeout=5)
            except httpx.TransportError:
                continue  # that replica is down: the other one
            outcome = "ok" if answer.status_code == 200 else str(answer.status_code)
            break
        self.records.append((began - self.started, path, outcome, (time.perf_counter() - began) * 1000))
        if order_id:
            kept = {"ok": self.acknowledged, "503": self.refused}
            kept.get(outcome, self.unanswered).append(order_id)

    async def run(self, events: list[tuple[float, callable]]) -> None:
        rng = np.random.default_rng(0)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(limits=limits) as client:
            self.started = time.perf_counter()
            pending: set[asyncio.Task] = set()
            actions = []
            i = 0
            while (now := time.perf_counter() - self.started) < self.seconds:
                while events and events[0][0] <= now:  # in a thread: the load goes on meanwhile
                    _, action = events.pop(0)
                    actions.append(asyncio.create_task(asyncio.to_thread(action)))
                due = int(now * self.rate)
                while i < due and len(pending) < self.in_flight:
                    task = asyncio.create_task(self.one(client, i, rng))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    i += 1
                await asyncio.sleep(0.002)
            if pending:
                await asyncio.wait(pending)
            for action in actions:
                await action


def window_row(load: Load, name: str, start_s: float, end_s: float) -> str:
    rows = [r for r in load.records if start_s <= r[0] < end_s]
    failed = sum(r[2] != "ok" for r in rows)
    refused = sum(r[2] == "503" for r in rows)
    times = [r[3] for r in rows if r[2] == "ok"]
    p50, p99 = np.percentile(times, [50, 99]) if times else (np.nan, np.nan)
    rate = len(rows) / max(end_s - start_s, 1e-9)
    return (
        f"| {name} | {start_s:.0f}-{end_s:.0f} s | {len(rows):,} | {rate:,.0f} | {failed:,} ({refused:,} 503) | "
        f"{100 * failed / max(len(rows), 1):.2f}% | {p50:.1f} | {p99:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=PROJECT / ".community-ml-bench" / "serving")
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "COMMUNITY_ML_CHAMPION_POLL_SECONDS": "0"}
    for name in ("COMMUNITY_ML_API_KEY", "MLFLOW_TRACKING_URI", "COMMUNITY_ML_WORKERS"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory() as tmp:
        home, members = ready_home(args.home, DATASET, tmp)
        (Path(tmp) / "redis").mkdir()
        redis_process, url = redis_server(Path(tmp) / "redis")
        redis_port = url.rsplit(":", 1)[1].split("/")[0]
        env["COMMUNITY_ML_REDIS_URL"] = url
        homes = [replica_home(home, Path(tmp) / name) for name in ("replica-a", "replica-b", "training")]
        ports = [free_port(), free_port()]

        def serve(n: int) -> subprocess.Popen:
            command = [*CLI, "serve", "--dataset", DATASET, "--port", str(ports[n]), "--workers", "1"]
            return start(command, {**env, "COMMUNITY_ML_HOME": str(homes[n])}, ports[n], PROJECT)

        replicas = [serve(0), serve(1)]
        marks: dict[str, float] = {}
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        load = Load(bases, members[:5000], args.rate, args.seconds, args.in_flight)

        def kill_a() -> None:
            marks["A killed"] = time.perf_counter() - load.started
            kill_tree(replicas[0])

        def restart_a() -> None:
            marks["A restarting"] = time.perf_counter() - load.started
            replicas[0] = serve(0)  # returns once it answers /readyz
            marks["A ready"] = time.perf_counter() - load.started

        def restart_redis() -> None:
            nonlocal redis_process
            marks["Redis killed"] = time.perf_counter() - load.started
            redis_process.kill()
            redis_process.wait(timeout=10)
            command = ["redis-server", "--port", redis_port, "--bind", "127.0.0.1", "--save", "", "--dir"]
            redis_process = subprocess.Popen(
                [*command, str(Path(tmp) / "redis"), "--appendonly", "yes", "--appendfsync", "always"],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            marks["Redis back"] = time.perf_counter() - load.started

        timeline = [
            (0.20 * args.seconds, kill_a),
            (0.30 * args.seconds, restart_a),
            (0.75 * args.seconds, restart_redis),
        ]
        try:
            asyncio.run(load.run(timeline))
        finally:
            for replica in replicas:
                kill_tree(replica)
        ingest_env = {**env, "COMMUNITY_ML_HOME": str(homes[2])}
        for _ in range(2):  # twice: the second must change nothing
            subprocess.run([*CLI, "data", "ingest", "--dataset", DATASET], env=ingest_env, cwd=PROJECT, check=True)
        redis_process.terminate()
        orders = pd.read_parquet(homes[2] / "datasets" / DATASET / "orders.parquet", columns=["order_id"])
    found = orders["order_id"].astype(str)
    found = found[found.str.startswith("soak-")].value_counts()
    acknowledged = set(load.acknowledged)
    missing = acknowledged - set(found.index)
    duplicated = int((found > 1).sum())
    print(marks, flush=True)
    end = args.seconds
    a_down_to = marks.get("A ready", end)
    windows = [
        ("both replicas", 0, marks["A killed"]),
        ("A down (killed, restarting)", marks["A killed"], a_down_to),
        ("both again", a_down_to, marks["Redis killed"]),
        ("Redis restarting", marks["Redis killed"], marks["Redis back"] + 1),
        ("after", marks["Redis back"] + 1, end),
        ("whole run", 0, end),
    ]
    lines = [
        "| phase | seconds | requests | requests/s | failed (503) | error rate | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *(window_row(load, *w) for w in windows),
        "",
        "| orders posted | acknowledged (200) | refused (503: not kept) | unanswered | acknowledged and in the "
        "tables after two ingests | missing | in the tables twice | in the tables, unanswered |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(acknowledged) + len(load.refused) + len(load.unanswered):,} | {len(acknowledged):,} | "
        f"{len(load.refused):,} | {len(load.unanswered):,} | {len(acknowledged & set(found.index)):,} | "
        f"{len(missing):,} | {duplicated:,} | {len(set(load.unanswered) & set(found.index)):,} |",
        "",
        "Moments (seconds into the run): " + ", ".join(f"{k} {v:.1f}" for k, v in marks.items()) + ".",
    ]
    write_results("soak_replicas", "Soak: two replicas, one killed, Redis restarted", __doc__, "\n".join(lines) + "\n")
    if missing or duplicated:
        sys.exit(f"{len(missing)} acknowledged orders missing, {duplicated} twice")


if __name__ == "__main__":
    main()
