"""Benchmark: fresh answers (per-request scoring over the online store) against the precomputed design before it.

For each community size (synthetic members; a state home with a champion of every kind, built when missing):
- start-up: seconds from launching `community-ml serve` to /readyz 200, and resident memory once ready (RSS of
  BentoML's worker, and of all its processes);
- single-member /churn and /recommend_products at concurrency 8 (an asyncio httpx load generator on the same
  2 cores): requests/s, p50 and p99, each row the run with the median rate of three; the fresh design with one
  worker (the default) and with two (`--workers 2`: they follow each other's events through the journal);
- event-to-effect: POST /events with an order for a member, then /churn for them: the time until an answer
  counts it (recency 0), for 50 members. The precomputed design has no /events: its way is `data import` of the
  order, `features build` and `/reload` (measured once, the import and build run as commands).

The precomputed design is the commit before the online store (`--baseline`, default 2f9ab47), run from a git
worktree on a copy of the same state home whose snapshot it built itself (not timed), with this project's .venv.
Writes experiments/results/online.md.

    .venv/bin/python experiments/bench_online.py [--sizes 20000 200000] [--root .community-ml-bench]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from experiments.bench_serving import free_port, load
from experiments.results_file import write_results

PROJECT = Path(__file__).resolve().parents[1]
BASELINE_REF = "2f9ab47"  # the last commit that scored every member at start-up


def run(command: list[str], env: dict[str, str], cwd: Path = PROJECT) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, env=own_registry(env), cwd=cwd, check=True)


def own_registry(env: dict[str, str]) -> dict[str, str]:
    """Each home its own MLflow registry: MLflow exports the tracking URI of the last client this process opened
    as $MLFLOW_TRACKING_URI, which a child would otherwise follow into another home."""
    return {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}


# The project's CLI as of the checkout a command runs in (`-m` imports from the working directory).
CLI = [sys.executable, "-m", "cli"]


def prepare(home: Path, dataset: str, members: int) -> None:
    """A synthetic community of `members` with a champion of every kind (each kind's learned family, untuned: the
    benchmark measures serving, not the gate). 200,000 members: about 3 minutes and 12 GB to generate."""
    env = {**os.environ, "COMMUNITY_ML_HOME": str(home)}
    if not (home / "datasets" / dataset / "dataset.json").exists():
        run([*CLI, "data", "generate", "--dataset", dataset, "--members", str(members)], env)
    quick = ["--training-cutoffs", "2", "--test-cutoffs", "1", "--budget-seconds", "0"]
    for kind, family in (
        ("churn", "lightgbm"),
        ("value", "lightgbm"),
        ("product-recs", "als"),
        ("content-recs", "als"),
    ):
        if not _has_champion(home, dataset, kind):
            run([*CLI, "train", kind, "--dataset", dataset, "--family", family, *quick], env)
            if not _has_champion(home, dataset, kind):  # the gate kept a baseline: serve the learned family anyway
                _crown_latest(home, dataset, kind)


def _has_champion(home: Path, dataset: str, kind: str) -> bool:
    from features.common.home import StateHome
    from serving.models import registry
    from serving.models.kinds import kind as model_kind

    return registry.champion(registry.connect(StateHome(home)), dataset, model_kind(kind)) is not None


def _crown_latest(home: Path, dataset: str, kind: str) -> None:
    from features.common.home import StateHome
    from serving.models import registry
    from serving.models.kinds import kind as model_kind

    client = registry.connect(StateHome(home))
    latest = max(int(v.version) for v in client.search_model_versions(f"name='{dataset}.{kind}'"))
    registry.set_champion(client, dataset, model_kind(kind), str(latest))


def baseline_tree(ref: str, folder: Path) -> Path:
    run(["git", "worktree", "add", "--detach", "--force", str(folder), ref], dict(os.environ))
    return folder


def copy_home(home: Path, target: Path) -> Path:
    """The dataset, snapshots and registry (model files shared by path): the precomputed design writes its own."""
    for part in ("datasets", "secrets"):
        if (home / part).exists():
            shutil.copytree(home / part, target / part)
    shutil.copy(home / "mlflow.db", target / "mlflow.db")
    return target


def tree_rss(process: psutil.Process) -> tuple[float, float]:
    """(largest worker RSS, all processes' RSS) in MB."""
    processes = [process, *process.children(recursive=True)]
    sizes = []
    for p in processes:
        try:
            sizes.append(p.memory_info().rss / 1e6)
        except psutil.NoSuchProcess:
            continue
    return max(sizes[1:] or sizes), sum(sizes)


def serve(cwd: Path, home: Path, dataset: str, port: int, workers: int = 1) -> tuple[subprocess.Popen[bytes], float]:
    env = {**os.environ, "COMMUNITY_ML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("COMMUNITY_ML_API_KEY", None)
    started = time.perf_counter()
    env = own_registry(env)
    process = subprocess.Popen(
        [*CLI, "serve", "--dataset", dataset, "--port", str(port), *(["--workers", str(workers)] * (workers > 1))],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while time.perf_counter() - started < 900:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server in {cwd} exited with {process.returncode}")
        time.sleep(0.25)
    process.kill()
    raise SystemExit("the server did not become ready in 15 minutes")


def latencies(base: str, members: list[str], requests: int, repeats: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    out = {}
    for name, path, extra in (("churn", "/churn", {}), ("product recs", "/recommend_products", {"k": 10})):

        def payloads(n: int, extra: dict[str, Any] = extra) -> list[dict[str, Any]]:
            return [{"member_ids": [str(rng.choice(members))], **extra} for _ in range(n)]

        asyncio.run(load(base + path, payloads(50), 8))  # warm-up
        runs = [asyncio.run(load(base + path, payloads(requests), 8)) for _ in range(repeats)]
        out[name] = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        print(name, {k: round(v, 2) for k, v in out[name].items()}, flush=True)
    return out


def event_to_effect(base: str, members: list[str], events: int) -> dict[str, float]:
    """Seconds from posting an order to the first /churn answer that counts it, per member."""
    rng = np.random.default_rng(1)
    seconds, posts = [], []
    with httpx.Client(timeout=30) as client:
        for i, member in enumerate(rng.choice(members, events, replace=False)):
            now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
            order = {"member_id": str(member), "ts": now, "amount": 25.0, "order_id": f"BENCH-{time.time_ns()}-{i}"}
            started = time.perf_counter()
            posted = client.post(f"{base}/events", json={"orders": [order]})
            posts.append(time.perf_counter() - started)
            assert posted.status_code == 200, posted.text
            while True:
                answer = client.post(f"{base}/churn", json={"member_ids": [str(member)]}).json()["members"][0]
                if answer["fresh"] and answer["recency_days"] == 0:
                    break
            seconds.append(time.perf_counter() - started)
    ms = np.array(seconds) * 1000
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "post_p50": float(np.median(posts) * 1000),
    }


def import_build_reload(cwd: Path, home: Path, dataset: str, base: str, member: str) -> float:
    """The precomputed design's way to an answer that counts a new order: import it, build the features, reload.
    Seconds until the member's answer shows it (recency 0 days from the new as-of date)."""
    env = {**os.environ, "COMMUNITY_ML_HOME": str(home)}
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        order = Path(folder) / "order.csv"
        order.write_text(f"member_id,ts,amount,order_id\n{member},{now},25.0,BENCH-{time.time_ns()}\n")
        run([*CLI, "data", "import", "--dataset", dataset, "--table", "orders", "--input", str(order)], env, cwd)
    run([*CLI, "features", "build", "--dataset", dataset, "--as-of", "latest"], env, cwd)
    before = httpx.post(f"{base}/metadata", json={}, timeout=30).json()["loaded_at"]
    reloaded = httpx.post(f"{base}/reload", json={}, timeout=900)
    # Past the service's 30 s request timeout /reload answers 504, but its thread goes on and swaps the state in.
    while reloaded.status_code == 504 and time.perf_counter() - started < 1800:
        if httpx.post(f"{base}/metadata", json={}, timeout=30).json()["loaded_at"] != before:
            break
        time.sleep(1)
    answer = httpx.post(f"{base}/churn", json={"member_ids": [member]}, timeout=30).json()["members"][0]
    assert answer["tier"] and not answer["cold_start"], answer
    return time.perf_counter() - started


def measure(
    design: str, cwd: Path, home: Path, dataset: str, members: list[str], args: Any, workers: int = 1
) -> dict[str, Any]:
    port = free_port()
    process, startup = serve(cwd, home, dataset, port, workers)
    try:
        worker, total = tree_rss(psutil.Process(process.pid))
        print(design, f"ready in {startup:.1f} s, worker {worker:.0f} MB, all {total:.0f} MB", flush=True)
        base = f"http://127.0.0.1:{port}"
        result: dict[str, Any] = {"startup": startup, "worker_mb": worker, "total_mb": total}
        result |= latencies(base, members, args.requests, args.repeats)
        if design.startswith("fresh"):
            result["effect"] = event_to_effect(base, members, args.events)
        else:
            result["effect_seconds"] = import_build_reload(cwd, home, dataset, base, members[len(members) // 2])
        return result
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--root", type=Path, default=PROJECT / ".community-ml-bench", help="where the homes live")
    parser.add_argument("--baseline", default=BASELINE_REF, help="the precomputed design's commit")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()

    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = baseline_tree(args.baseline, Path(tmp) / "baseline")
        try:
            for size in args.sizes:
                home, dataset = args.root / f"m{size}", f"m{size}"
                prepare(home, dataset, size)
                from features.common.home import StateHome
                from features.dataset.store import Dataset
                from features.pipelines.snapshots import Snapshot, resolve_as_of

                data = Dataset(StateHome(home), dataset)
                members = Snapshot(data, resolve_as_of(data, "latest")).features()["member_id"].astype(str).tolist()
                old_home = copy_home(home, Path(tmp) / f"old-{size}")
                env = {**os.environ, "COMMUNITY_ML_HOME": str(old_home)}
                run([*CLI, "features", "build", "--dataset", dataset, "--as-of", "latest"], env, cwd=tree)
                serve(PROJECT, home, dataset, free_port())[0].terminate()  # the first start lays the table out
                time.sleep(2)
                results[size] = {
                    "precomputed": measure("precomputed", tree, old_home, dataset, members, args),
                    "fresh": measure("fresh", PROJECT, home, dataset, members, args),
                    "fresh, 2 workers": measure("fresh, 2 workers", PROJECT, home, dataset, members, args, workers=2),
                }
                shutil.rmtree(old_home, ignore_errors=True)
                # The orders the benchmark posted were never ingested: dropped, they stay out of the next run.
                shutil.rmtree(home / "events", ignore_errors=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=PROJECT, check=False)
    write(results, args)


def write(results: dict[int, dict[str, dict[str, Any]]], args: Any) -> None:
    lines = [
        "| members | design | start-up s | worker MB | all processes MB | churn req/s | churn p50 ms | churn p99 ms "
        "| recs req/s | recs p50 ms | recs p99 ms | event to effect p50 / p99 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size, designs in results.items():
        for design, r in designs.items():
            c, p = r["churn"], r["product recs"]
            effect = (
                f"{r['effect']['p50']:.1f} / {r['effect']['p99']:.1f} ms (the post alone {r['effect']['post_p50']:.1f})"
                if "effect" in r
                else f"{r['effect_seconds']:.0f} s: no events; import, features build, /reload"
            )
            lines.append(
                f"| {size:,} | {design} | {r['startup']:.1f} | {r['worker_mb']:.0f} | {r['total_mb']:.0f} | "
                f"{c['rps']:.0f} | {c['p50']:.1f} | {c['p99']:.1f} | {p['rps']:.0f} | {p['p50']:.1f} | "
                f"{p['p99']:.1f} | {effect} |"
            )
    sizes = sorted(results)
    growth = ""
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for design in ("precomputed", "fresh"):
            per_member = (results[hi][design]["total_mb"] - results[lo][design]["total_mb"]) * 1e6 / (hi - lo)
            growth += f"- {design}: memory grows {per_member:,.0f} bytes per member from {lo:,} to {hi:,} members.\n"
    write_results(
        "online",
        "Fresh answers against precomputed answers",
        __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2],
        "\n".join(lines) + "\n\n" + growth,
    )


if __name__ == "__main__":
    main()
