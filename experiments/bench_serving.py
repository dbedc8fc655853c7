"""Benchmark: the BentoML service under load, beside the same prediction functions behind a bare Starlette app.

Both servers run on loopback from one state home with trained champions (a fresh synthetic community unless
--home points at one, e.g. after `make demo`). An asyncio load generator (httpx) sends a fixed number of
requests at concurrency 1, 8 and 32 for: churn for one member, churn for a batch of 100, and product
recommendations for one member; it reports throughput, p50 and p99 latency and errors. A last run sends churn
calls at concurrency 8 while /reload swaps the models in, and counts failed requests.
Writes experiments/results/serving.md. The load generator shares the 2 cores with the server.

    .venv/bin/python experiments/bench_serving.py [--home PATH --dataset NAME] [--requests 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from experiments.results_file import write_results

BARE_APP = """
import os
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from features.home import StateHome
from serving.models.base import ListRules
from serving.models.kinds import PRODUCT_RECS
from serving.predictions import load_state, member_scores, recommendations

state = load_state(StateHome.from_env(), os.environ["COMMUNITY_ML_DATASET"])


async def churn(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"members": member_scores(state, body["member_ids"])[0]})


async def products(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"members": recommendations(state, PRODUCT_RECS, body["member_ids"],
                                                    ListRules(k=body.get("k", 10)))})


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({})

app = Starlette(routes=[Route("/churn", churn, methods=["POST"]), Route("/recommend_products", products,
                methods=["POST"]), Route("/readyz", ready)])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_home(root: Path, dataset: str) -> None:
    """A small synthetic community with every champion the service loads."""
    from features.home import StateHome
    from features.importers import import_synthetic
    from features.store import Dataset
    from features.synthetic import SyntheticConfig
    from serving.models.kinds import KINDS
    from serving.models.registry import champion, connect, set_champion
    from training.job import TrainSettings, train

    home = StateHome(root)
    data = Dataset(home, dataset)
    import_synthetic(data, SyntheticConfig(members=5_000))
    client = connect(home)
    for kind in (k for k in KINDS.values() if not k.learns_from_campaign):
        version = train(data, kind, TrainSettings(training_cutoffs=2, test_cutoffs=1)).version
        if champion(client, dataset, kind) is None:  # the benchmark needs one of each, whatever the gate said
            set_champion(client, dataset, kind, version)


def ready_home(home: Path | None, dataset: str, tmp: str) -> tuple[Path, list[str]]:
    """The state home to serve (built in `tmp` when none is given) and the member ids of its latest snapshot."""
    from features.home import StateHome
    from features.snapshots import Snapshot, resolve_as_of
    from features.store import Dataset

    root = home or Path(tmp) / "home"
    if home is None:
        prepare_home(root, dataset)
    data = Dataset(StateHome(root), dataset)
    return root, Snapshot(data, resolve_as_of(data, "latest")).features()["member_id"].astype(str).tolist()


def start(command: list[str], env: dict[str, str], port: int, cwd: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"server on port {port} did not become ready")


async def load(url: str, payloads: list[dict], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    queue = list(payloads)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while queue:
                payload = queue.pop()
                started = time.perf_counter()
                try:
                    response = await client.post(url, json=payload)
                    errors += response.status_code != 200
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "rps": len(payloads) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "errors": errors,
    }


async def reload_under_load(base: str, members: list[str], requests: int) -> tuple[int, int, float]:
    """(failed requests, reload status, reload seconds) for churn calls at concurrency 8 during a reload."""
    payloads = [{"member_ids": [members[i % len(members)]]} for i in range(requests)]
    traffic = asyncio.create_task(load(f"{base}/churn", payloads, 8))
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        reloaded = await client.post(f"{base}/reload", json={})
    seconds = time.perf_counter() - started
    result = await traffic
    return int(result["errors"]), reloaded.status_code, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a state home with champions (default: build a small one)")
    parser.add_argument("--dataset", default="bench")
    parser.add_argument("--requests", type=int, default=600, help="requests per scenario")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the run with the median rate counts")
    args = parser.parse_args()
    project = Path(__file__).resolve().parents[1]

    with tempfile.TemporaryDirectory() as tmp:
        root, members = ready_home(args.home, args.dataset, tmp)
        env = {
            **os.environ,
            "COMMUNITY_ML_HOME": str(root),
            "COMMUNITY_ML_DATASET": args.dataset,
            "BENTOML_DO_NOT_TRACK": "true",
        }
        env.pop("COMMUNITY_ML_API_KEY", None)
        bare_module = Path(tmp) / "bare_app.py"
        bare_module.write_text(BARE_APP)
        bento_port, bare_port = free_port(), free_port()
        servers = {
            "BentoML service": (
                [sys.executable, "-m", "bentoml", "serve", "serving.service:CommunityML", "--port", str(bento_port)],
                bento_port,
                env,
            ),
            "bare Starlette (baseline)": (
                [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port), "--log-level", "warning"],
                bare_port,
                {**env, "PYTHONPATH": f"{tmp}:{project}"},
            ),
        }
        rng = np.random.default_rng(0)
        scenarios = {
            "churn, 1 member": ("/churn", lambda: {"member_ids": [str(rng.choice(members))]}),
            "churn, batch of 100": ("/churn", lambda: {"member_ids": [str(m) for m in rng.choice(members, 100)]}),
            "product recs, 1 member": (
                "/recommend_products",
                lambda: {"member_ids": [str(rng.choice(members))], "k": 10},
            ),
        }
        rows = []
        reload_row = ""
        for server, (command, port, server_env) in servers.items():
            process = start(command, server_env, port, project)
            try:
                base = f"http://127.0.0.1:{port}"
                for scenario, (path, make) in scenarios.items():
                    asyncio.run(load(base + path, [make() for _ in range(50)], 8))  # warm-up
                    for concurrency in (1, 8, 32):
                        # Two servers and the load generator share 2 cores: one run's rate swings by tens of
                        # percent, so each row is the median run of several.
                        runs = [
                            asyncio.run(load(base + path, [make() for _ in range(args.requests)], concurrency))
                            for _ in range(args.repeats)
                        ]
                        result = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
                        rows.append((scenario, server, concurrency, result))
                        print(scenario, server, concurrency, {k: round(v, 2) for k, v in result.items()}, flush=True)
                if server == "BentoML service":
                    failed, status, seconds = asyncio.run(reload_under_load(base, members, args.requests * 2))
                    reload_row = (
                        f"Reload under load: {args.requests * 2} churn calls at concurrency 8 while "
                        f"/reload swapped the models ({seconds:.1f} s, status {status}): {failed} failed.\n"
                    )
            finally:
                process.terminate()
                process.wait(timeout=30)

    bare = {(s, c): r for s, srv, c, r in rows if srv.startswith("bare")}
    lines = [
        "| scenario | server | concurrency | requests/s | p50 ms | p99 ms | errors | % of bare throughput |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, server, concurrency, r in rows:
        share = 100 * r["rps"] / bare[(scenario, concurrency)]["rps"]
        lines.append(
            f"| {scenario} | {server} | {concurrency} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['errors']} | {share:.0f}% |"
        )
    write_results(
        "serving",
        "Serving benchmark",
        "Produced by `make bench` (`experiments/bench_serving.py`). Both servers answer from the same loaded state\n"
        "(`serving/predictions.py`) on loopback, one worker each; the load generator is an asyncio httpx client\n"
        f"on the same 2 cores, {args.requests} requests per run after a warm-up; each row is the run with the\n"
        f"median rate of {args.repeats}. The service also writes its\n"
        "prediction log (a JSON line per member answered); the bare app does not.",
        "\n".join(lines) + "\n\n" + reload_row,
    )


if __name__ == "__main__":
    main()
