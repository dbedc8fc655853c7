"""Benchmark: the prediction service under load with wrk, before and after the hot-path work, in one run.

On the demo community (10,000 synthetic members; champions churn, value, uplift and product recommendations, as
`make demo` trains them; built under --home when missing) each server in turn:
- `wrk -t2 -c8 -d20s --latency` on single-member POST /churn and /recommend_products (a Lua script posting one
  random known member per request, after a 5 s warm-up): requests/s, p50, p99, p99.9, non-2xx answers;
- a profile of the worker under /churn load (py-spy, 200 samples/s): the share of its CPU in each layer, from the
  innermost frame that belongs to one (HTTP server, BentoML's middleware and IO, our request code, the online
  store, the models, the prediction log);
- POST /events with one order, 100 times in a row: p50 and p99 answer time;
- memory: resident memory of the workers once ready, and its growth after every member was answered once.
The servers: "before" is `--before` (default: the last commit before this work) run from a git worktree with this
project's .venv; "after" is this checkout with one worker and with its default (one per core). Two floors show
what no endpoint of ours can beat on this machine: uvicorn answering a constant, and a BentoML endpoint answering
a constant. Then the in-process cost per member of both versions (`member_scores`, `recommendations`: the best of
7 passes over 500 random members). wrk, the servers and the profiler share the machine's cores.
Writes experiments/results/serving.md.

    .venv/bin/python experiments/bench_serving.py [--home PATH] [--before REF] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from experiments.results_file import write_results

PROJECT = Path(__file__).resolve().parents[1]
BEFORE_REF = "a301bfa"  # the last commit before the hot-path work (issue 29)
DATASET = "demo"
CLI = [sys.executable, "-m", "cli"]  # the CLI of the checkout a server runs from (`-m` imports from its cwd)

WRK_SCRIPT = """
local ids = {}
for line in io.lines(os.getenv("MEMBERS_FILE")) do ids[#ids + 1] = line end
local path = os.getenv("WRK_PATH")
-- the body, MEMBER standing for a random member's id (default: one member's member_ids)
local template = os.getenv("WRK_BODY") or '{"member_ids": ["MEMBER"]}'
request = function()
  local body = string.gsub(template, "MEMBER", ids[math.random(#ids)])
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "p50": %f, "p99": %f, "p999": %f, ' ..
    '"non2xx": %d, "errors": %d}\\n', summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
"""

FLOOR_APPS = {
    "floor: uvicorn, a constant answer": """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"members": []}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
""",
    "floor: BentoML endpoint, a constant answer": """
import bentoml

@bentoml.service(logging={"access": {"enabled": False}})
class Floor:
    @bentoml.api
    async def churn(self, member_ids: list[str]) -> dict:
        return {"members": []}

    @bentoml.api
    async def recommend_products(self, member_ids: list[str]) -> dict:
        return {"members": []}
""",
}

# Layers of a request, by the files of a frame: a sample counts for the innermost frame that matches one.
LAYERS = [
    ("prediction log", ("serving/prediction_log",)),
    ("online store (rows)", ("serving/online/",)),
    ("models (LightGBM, inputs, reasons, tiers)", ("serving/models/", "serving/members.py", "lightgbm/", "scipy/")),
    ("our request code (service, hot path, coalescing)", ("serving/",)),
    ("validation and JSON (pydantic, BentoML IO)", ("_bentoml_sdk/", "pydantic", "json/", "_bentoml_impl/serde")),
    ("tracing and metrics", ("opentelemetry", "trace/", "prometheus", "instruments.py", "traffic.py", "sampling.py")),
    ("BentoML request handling", ("_bentoml_impl/", "bentoml/")),
    ("HTTP server (uvicorn, Starlette)", ("uvicorn/", "starlette/", "h11/", "httptools/", "anyio/")),
    ("event loop (asyncio)", ("asyncio/", "selectors.py")),
]
PROFILE_SECONDS = 8


def endpoint_table(
    serving_home: Path | None, endpoints: dict[str, str | None], seconds: int, connections: int = 4
) -> str:
    """Each endpoint (path -> body with MEMBER, None: member_ids) under `wrk -t2 -c<connections>` after a 5 s
    warm-up, on one server of the demo community with two workers: requests/s, p50, p99, p99.9, non-2xx."""
    with tempfile.TemporaryDirectory() as tmp:
        home, members = ready_home(serving_home, DATASET, tmp)
        members_file, script = Path(tmp) / "members.txt", Path(tmp) / "post.lua"
        members_file.write_text("\n".join(members[:5000]) + "\n")
        script.write_text(WRK_SCRIPT)
        env = {**os.environ, "COMMUNITY_ML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        port = free_port()
        server = start([*CLI, "serve", "--dataset", DATASET, "--port", str(port), "--workers", "2"], env, port, PROJECT)
        rows = {}
        try:
            base = f"http://127.0.0.1:{port}"
            for path, body in endpoints.items():
                wrk(base, path, 5, script, members_file, connections, body)
                rows[path] = wrk(base, path, seconds, script, members_file, connections, body)
        finally:
            stop(server)
    lines = ["| endpoint | requests/s | p50 ms | p99 ms | p99.9 ms | non-2xx |", "|---|---:|---:|---:|---:|---:|"]
    for path, r in rows.items():
        lines.append(
            f"| `{path}` | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p999']:.2f} | {r['non2xx']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: list[str], env: dict[str, str], cwd: Path = PROJECT) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, env=env, cwd=cwd, check=True)


def prepare_home(root: Path, dataset: str = DATASET) -> None:
    """The demo community with the demo's champions, as `make demo` trains them (about 4 minutes)."""
    env = {**os.environ, "COMMUNITY_ML_HOME": str(root), "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cutoffs = ["--training-cutoffs", "4", "--test-cutoffs", "2"]
    run([*CLI, "data", "generate", "--dataset", dataset, "--config", "configs/synthetic.yaml"], env)
    run([*CLI, "features", "build", "--dataset", dataset, "--as-of", "latest"], env)
    run([*CLI, "train", "churn", "--dataset", dataset, *cutoffs], env)
    run([*CLI, "train", "value", "--dataset", dataset, *cutoffs], env)
    run([*CLI, "train", "product-recs", "--dataset", dataset, "--budget-seconds", "20"], env)
    campaign = ["--campaign", "coupon", "--horizon-days", "30"]
    run([*CLI, "campaign", "report", "--dataset", dataset, *campaign], env)
    run([*CLI, "train", "uplift", "--dataset", dataset, *campaign], env)


def ready_home(home: Path | None, dataset: str, tmp: str) -> tuple[Path, list[str]]:
    """The state home to serve (the demo community, built when missing) and the member ids of its snapshot."""
    from features.common.home import StateHome
    from features.dataset.store import Dataset
    from features.pipelines.snapshots import Snapshot, resolve_as_of

    root = home or Path(tmp) / "home"
    if not (root / "datasets" / dataset / "dataset.json").exists():
        prepare_home(root, dataset)
    data = Dataset(StateHome(root), dataset)
    return root, Snapshot(data, resolve_as_of(data, "latest")).features()["member_id"].astype(str).tolist()


def start(command: list[str], env: dict[str, str], port: int, cwd: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(480):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server ({' '.join(command)}) exited with {process.returncode}")
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"server on port {port} did not become ready")


def stop(process: subprocess.Popen) -> None:
    """The server and every process it started (BentoML's workers are its children)."""
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


async def load(url: str, payloads: list[dict], concurrency: int) -> dict[str, float]:
    """An asyncio httpx client's rate and latency (the load generator of the older benchmarks that import it)."""
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


def wrk(
    base: str,
    path: str,
    seconds: int,
    script: Path,
    members_file: Path,
    connections: int = 8,
    body: str | None = None,
) -> dict[str, float]:
    """`body`: the request's JSON with MEMBER for a random member's id (default: {"member_ids": ["MEMBER"]})."""
    env = {**os.environ, "MEMBERS_FILE": str(members_file), "WRK_PATH": path, **({"WRK_BODY": body} if body else {})}
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^RESULT (.*)$", out, re.M)
    if found is None:
        raise SystemExit(f"wrk gave no result:\n{out}")
    result = json.loads(found.group(1))
    result["rps"] = result["requests"] / result["seconds"]
    return result


def workers_of(process: subprocess.Popen) -> list[psutil.Process]:
    """The processes that answer: BentoML's workers (the server's children running the service)."""
    children = psutil.Process(process.pid).children(recursive=True)
    answering = [c for c in children if "worker" in " ".join(c.cmdline())]
    return answering or [psutil.Process(process.pid), *children]


def rss_mb(processes: list[psutil.Process]) -> float:
    return sum(p.memory_info().rss for p in processes) / 1e6


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        found = re.search(r"\(([^()]*):\d+\)$", frame)
        path = found.group(1) if found else frame
        for name, marks in LAYERS:
            if any(mark in path for mark in marks):
                return name
    return "other"


def profile(base: str, pid: int, script: Path, members_file: Path) -> dict[str, float] | str:
    """Each layer's share of one worker's CPU samples under /churn load; or why there is no profile."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        return "py-spy is not installed (it is in the dev dependencies)"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "-r",
                "200",
                *["-d", str(PROFILE_SECONDS)],
                "--nonblocking",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wrk(base, "/churn", PROFILE_SECONDS + 2, script, members_file)
        _, error = spy.communicate(timeout=60)
        if not out.exists():
            return f"py-spy could not sample the worker: {error.strip().splitlines()[-1] if error else 'no output'}"
        counts: Counter[str] = Counter()
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            if any("_bootstrap" in f for f in frames):  # imports at start-up, not requests
                continue
            counts[layer_of(frames)] += int(n)
    total = sum(counts.values()) or 1
    return {name: 100 * n / total for name, n in counts.items()}


def post_events(base: str, members: list[str], n: int = 100) -> dict[str, float]:
    """POST /events with one order, `n` times in a row: the answer's time (ms)."""
    times = []
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            order = {
                "member_id": members[i % len(members)],
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "amount": 10.0 + i,
                "order_id": f"bench-{time.time_ns()}",
            }
            started = time.perf_counter()
            answer = client.post(f"{base}/events", json={"orders": [order]})
            times.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"/events answered {answer.status_code}: {answer.text[:300]}")
            time.sleep(0.05)  # one at a time, as a shop's backend posts its orders
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def answer_everyone(base: str, members: list[str]) -> None:
    with httpx.Client(timeout=60) as client:
        for i in range(0, len(members), 200):
            client.post(f"{base}/churn", json={"member_ids": members[i : i + 200]}).raise_for_status()


IN_PROCESS = """
import json, os, sys, timeit
import numpy as np
try:  # this checkout's layout, or an older one's (the "before" worktree)
    from features.common.home import StateHome
    from serving.state import load_state, member_scores, recommendations
except ImportError:
    from features.home import StateHome
    from serving.predictions import load_state, member_scores, recommendations
from serving.models.base import ListRules
from serving.models.kinds import PRODUCT_RECS
state = load_state(StateHome.from_env(), sys.argv[1])
ids = [m.decode() for m in np.asarray(state.online.table.ids)]
picked = [ids[i] for i in np.random.default_rng(0).integers(len(ids), size=500)]
def best(f):
    f(picked[0])
    return min(timeit.repeat(lambda: [f(m) for m in picked], number=1, repeat=7)) / len(picked) * 1e3
def first_lists():  # every pass with no list kept (a version that keeps none has no cache)
    if hasattr(state, "lists"):
        state.lists = type(state.lists)()
    return [recommendations(state, PRODUCT_RECS, [m], ListRules(k=10)) for m in picked]
print("RESULT " + json.dumps({
    "member_scores": best(lambda m: member_scores(state, [m])),
    "first_list": min(timeit.repeat(first_lists, number=1, repeat=7)) / len(picked) * 1e3,
    "recommendations": best(lambda m: recommendations(state, PRODUCT_RECS, [m], ListRules(k=10))),
}))
"""


def in_process(code: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, DATASET], cwd=code, env=env, capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"^RESULT (.*)$", out, re.M)
    assert found is not None, out
    return json.loads(found.group(1))


def clear_events(root: Path) -> None:
    """The posted orders go with the server that took them: each server starts from the same snapshot."""
    shutil.rmtree(root / "events" / DATASET, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=PROJECT / ".community-ml-bench" / "serving")
    parser.add_argument("--before", default=BEFORE_REF, help="the commit to measure as 'before'")
    parser.add_argument("--seconds", type=int, default=20, help="each wrk run's length")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench` installs it (Debian's package)")

    with tempfile.TemporaryDirectory() as tmp:
        root, members = ready_home(args.home, DATASET, tmp)
        clear_events(root)
        script, members_file = Path(tmp) / "members.lua", Path(tmp) / "members.txt"
        script.write_text(WRK_SCRIPT)
        members_file.write_text("\n".join(members) + "\n")
        before = Path(tmp) / "before"
        run(["git", "worktree", "add", "--detach", "--force", str(before), args.before], dict(os.environ))
        env = {**os.environ, "COMMUNITY_ML_HOME": str(root), "COMMUNITY_ML_DATASET": DATASET}
        env |= {"BENTOML_DO_NOT_TRACK": "true"}
        for name in ("COMMUNITY_ML_API_KEY", "MLFLOW_TRACKING_URI", "COMMUNITY_ML_WORKERS"):
            env.pop(name, None)
        cores = os.cpu_count() or 1
        servers = [
            ("before (1 worker)", before, 1),
            ("after, 1 worker", PROJECT, 1),
            (f"after ({cores} workers, the default)", PROJECT, 0),
        ]
        rows: list[dict[str, Any]] = []
        try:
            for label, code, workers in servers:
                rows.append(measure_server(label, code, workers, env, args.seconds, script, members_file, members))
                clear_events(root)
            for label, source in FLOOR_APPS.items():
                rows.append(measure_floor(label, source, Path(tmp), env, args.seconds, script, members_file))
            costs = {"before": in_process(before, env), "after": in_process(PROJECT, env)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=PROJECT, check=False)
            clear_events(root)
    write_results("serving", "Serving benchmark: the hot path", explanation(args), table(rows, costs))


def measure_server(
    label: str,
    code: Path,
    workers: int,
    env: dict[str, str],
    seconds: int,
    script: Path,
    members_file: Path,
    members: list[str],
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [*CLI, "serve", "--dataset", DATASET, "--port", str(port), "--workers", str(workers)]
    server = start(command, {**env, "PYTHONPATH": str(code)}, port, code)
    try:
        answering = workers_of(server)
        row: dict[str, Any] = {"server": label, "rss_ready": rss_mb(answering)}
        for path in ("/churn", "/recommend_products"):
            wrk(base, path, 5, script, members_file)  # warm-up
            row[path] = wrk(base, path, seconds, script, members_file)
            print(label, path, {k: round(v, 2) for k, v in row[path].items()}, flush=True)
        row["layers"] = profile(base, answering[0].pid, script, members_file)
        before = rss_mb(answering)
        answer_everyone(base, members)
        row["bytes_per_member"] = (rss_mb(answering) - before) * 1e6 / len(members)
        row["events"] = post_events(base, members)
        print(label, {k: v for k, v in row.items() if k not in ("/churn", "/recommend_products")}, flush=True)
        return row
    finally:
        stop(server)


def measure_floor(
    label: str, source: str, tmp: Path, env: dict[str, str], seconds: int, script: Path, members_file: Path
) -> dict[str, Any]:
    (tmp / "floor_app.py").write_text(source)
    port = free_port()
    if "bentoml" in source:
        command = [sys.executable, "-m", "bentoml", "serve", "floor_app:Floor", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(port), "--log-level", "warning"]
        command += ["--no-access-log"]
    server = start(command, {**env, "PYTHONPATH": str(tmp)}, port, tmp)
    try:
        base = f"http://127.0.0.1:{port}"
        row: dict[str, Any] = {"server": label}
        for path in ("/churn", "/recommend_products"):
            wrk(base, path, 5, script, members_file)
            row[path] = wrk(base, path, seconds, script, members_file)
            print(label, path, {k: round(v, 2) for k, v in row[path].items()}, flush=True)
        return row
    finally:
        stop(server)


def explanation(args: argparse.Namespace) -> str:
    return (
        "Produced by `make bench` (`experiments/bench_serving.py`): the demo community (10,000 members; champions\n"
        "LightGBM churn and value, an uplift model and a product recommender, trained as `make demo` does), each\n"
        f"server in turn on loopback, `wrk -t2 -c8 -d{args.seconds}s --latency` beside it on the same 2 cores, one\n"
        "random known member per request after a 5 s warm-up. 'before' is commit "
        f"{args.before} (the last before the hot-path work)\n"
        "run from a git worktree; 'after' this checkout. The floors answer a constant: no endpoint served by that\n"
        "stack can do better on this machine. Layers: the share of one worker's CPU samples (py-spy) under /churn\n"
        "load, by the innermost frame that belongs to a layer. Memory: the answering workers' resident memory\n"
        "once ready, and its growth after /churn answered every member once, per member."
    )


def table(rows: list[dict[str, Any]], costs: dict[str, dict[str, float]]) -> str:
    lines = [
        "| server | endpoint | requests/s | p50 ms | p99 ms | p99.9 ms | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for path in ("/churn", "/recommend_products"):
            r = row[path]
            lines.append(
                f"| {row['server']} | `{path}` | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['p999']:.2f} | {r['non2xx'] + r['errors']} |"
            )
    served = [r for r in rows if "layers" in r]
    lines += [
        "",
        "| server | POST /events p50 ms | p99 ms | workers' memory once ready MB | growth per member answered |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in served:
        e = row["events"]
        lines.append(
            f"| {row['server']} | {e['p50']:.1f} | {e['p99']:.1f} | {row['rss_ready']:,.0f} | "
            f"{row['bytes_per_member']:,.0f} bytes |"
        )
    names = [name for name, _ in LAYERS] + ["other"]
    lines += ["", "Where a worker's CPU goes under /churn load (share of samples):", ""]
    lines.append("| layer | " + " | ".join(r["server"] for r in served) + " |")
    lines.append("|---|" + "---:|" * len(served))
    for name in names:
        cells = [f"{r['layers'].get(name, 0.0):.1f}%" if isinstance(r["layers"], dict) else "n/a" for r in served]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for r in served:
        if isinstance(r["layers"], str):
            lines.append(f"\n{r['server']}: no profile ({r['layers']}).")
    lines += [
        "",
        "In process, per member (best of 7 passes over 500 random members, one member per call):",
        "",
        "| | before ms | after ms |",
        "|---|---:|---:|",
        f"| `member_scores` (churn, value, uplift, tier, reasons) | {costs['before']['member_scores']:.3f} | "
        f"{costs['after']['member_scores']:.3f} |",
        f"| `recommendations` (10 products), a member's first list | {costs['before']['first_list']:.3f} | "
        f"{costs['after']['first_list']:.3f} |",
        f"| `recommendations` (10 products), asked again | {costs['before']['recommendations']:.3f} | "
        f"{costs['after']['recommendations']:.3f} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
