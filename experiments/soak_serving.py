"""Soak run: the BentoML service under sustained mixed load for several minutes, memory and latency tracked.

Starts the service on loopback (a fresh small synthetic community with every champion, or --home), then sends
churn calls (one member and batches of 100) and product recommendations at concurrency 8 without pause. Every
--window seconds it records the server's resident memory (the whole process tree: BentoML's supervisor and
worker), requests/s, p50 and p99 latency and errors. Passes when there is no error and memory at the end is
within --max-growth-mb of memory after the first window (the warm-up: caches and the prediction log's buffers).
Writes experiments/results/soak.md.

    .venv/bin/python experiments/soak_serving.py [--minutes 5] [--home PATH --dataset NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from experiments.bench_serving import free_port, ready_home, start
from experiments.measured import tree_rss_mb
from experiments.results_file import write_results


async def soak(base: str, members: list[str], seconds: float, window: float, server: psutil.Process) -> list[dict]:
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0}
    end = time.perf_counter() + seconds

    def payload() -> tuple[str, dict]:
        roll = rng.random()
        if roll < 0.6:
            return "/churn", {"member_ids": [str(rng.choice(members))]}
        if roll < 0.7:
            return "/churn", {"member_ids": [str(m) for m in rng.choice(members, 100)]}
        return "/recommend_products", {"member_ids": [str(rng.choice(members))], "k": 10}

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=8)) as client:

        async def worker() -> None:
            while time.perf_counter() < end:
                path, body = payload()
                started = time.perf_counter()
                try:
                    counts["errors"] += (await client.post(base + path, json=body)).status_code != 200
                except httpx.HTTPError:
                    counts["errors"] += 1
                counts["requests"] += 1
                latencies.append(time.perf_counter() - started)

        async def sampler() -> None:
            started = time.perf_counter()
            while time.perf_counter() < end:
                await asyncio.sleep(window)
                ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
                rows.append(
                    {
                        "minute": (time.perf_counter() - started) / 60,
                        "rss_mb": tree_rss_mb(server),
                        "rps": counts["requests"] / window,
                        "p50": float(np.percentile(ms, 50)),
                        "p99": float(np.percentile(ms, 99)),
                        "errors": counts["errors"],
                    }
                )
                print({k: round(v, 1) for k, v in rows[-1].items()}, flush=True)
                latencies.clear()
                counts.update(requests=0, errors=0)

        await asyncio.gather(sampler(), *(worker() for _ in range(8)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per sample")
    parser.add_argument("--max-growth-mb", type=float, default=50.0, help="allowed memory growth after warm-up")
    parser.add_argument("--home", type=Path, help="a state home with champions (default: build a small one)")
    parser.add_argument("--dataset", default="bench")
    args = parser.parse_args()
    project = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        root, members = ready_home(args.home, args.dataset, tmp)
        env = {**os.environ, "COMMUNITY_ML_HOME": str(root), "COMMUNITY_ML_DATASET": args.dataset}
        env.pop("COMMUNITY_ML_API_KEY", None)
        port = free_port()
        command = [sys.executable, "-m", "bentoml", "serve", "serving.service:CommunityML", "--port", str(port)]
        process = start(command, {**env, "BENTOML_DO_NOT_TRACK": "true"}, port, project)
        try:
            rows = asyncio.run(
                soak(f"http://127.0.0.1:{port}", members, args.minutes * 60, args.window, psutil.Process(process.pid))
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"]
    errors = sum(r["errors"] for r in rows)
    passed = errors == 0 and growth <= args.max_growth_mb
    lines = [
        "| minute | server memory MB | requests/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['minute']:.1f} | {r['rss_mb']:.0f} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['errors']} |"
            for r in rows
        ),
    ]
    verdict = (
        f"\n{'PASSED' if passed else 'FAILED'}: {errors} errors; memory {rows[0]['rss_mb']:.0f} MB after the first "
        f"window, {rows[-1]['rss_mb']:.0f} MB at the end ({growth:+.0f} MB; bound +{args.max_growth_mb:.0f} MB).\n"
    )
    write_results(
        "soak",
        "Soak run",
        "Produced by `make bench` (`experiments/soak_serving.py`). The BentoML service on loopback under sustained\n"
        f"load for {args.minutes:g} minutes at concurrency 8: 60% churn for one member, 10% churn for 100 members,\n"
        "30% product recommendations, from an asyncio httpx client on the same 2 cores. Memory is the resident\n"
        "set of the server's whole process tree; each row covers the window before it.",
        "\n".join(lines) + "\n" + verdict,
    )
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
