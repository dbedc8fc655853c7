"""Before and after in one run, for the recommendation endpoints: two servers up at once, wrk runs alternating.

The tail of a closed-loop load on 2 cores (wrk's threads and the server's workers sharing them) moves by a factor
of ten between two 10-second runs of one server, so a before/after comparison made of one run each says little.
Here both servers are up together (an idle one costs no CPU), each endpoint gets a 5 s warm-up on both, then
`--rounds` 10-second `wrk -t2 -c8` runs on each, in alternating order (ABBA...), and the table gives every run and
the medians. 'before' is `--before` (a commit) from a git worktree, serving a copy of the state home whose
recommenders it trained itself (a model's files are read by the code that wrote them); 'after' is this checkout.
The home is the serving benchmark's demo community (experiments/bench_serving.py builds it when missing), with a
content recommender trained when it has none. Writes experiments/results/serving_ab.md.

    .venv/bin/python experiments/serving_ab.py [--before REF] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from experiments.bench_serving import CLI, DATASET, PROJECT, WRK_SCRIPT, free_port, ready_home, run, start, stop, wrk
from experiments.results_file import write_results

ENDPOINTS = ("/recommend_products", "/recommend_content")
FIGURES = ("rps", "p50", "p99", "p999")


# Makes a kind's newest registered version the champion, run by the code that trained it, in its own process (MLflow
# keeps its registry in process-wide state).
SET_NEWEST = """
import sys
from pathlib import Path
from features.common.home import StateHome
from serving.models import registry
from serving.models.kinds import KINDS
client = registry.connect(StateHome(Path(sys.argv[1])))
kind = KINDS[sys.argv[2]]
versions = client.search_model_versions(f"name='{kind.registered_name(sys.argv[3])}'")
registry.set_champion(client, sys.argv[3], kind, str(max(int(v.version) for v in versions)))
"""


def with_recommenders(root: Path, code: Path, env: dict[str, str], always: bool) -> None:
    """Trains both recommenders with the code at `code` (where missing, or always) and makes them champions."""
    from features.common.home import StateHome
    from serving.models import registry
    from serving.models.kinds import CONTENT_RECS, PRODUCT_RECS

    client = registry.connect(StateHome(root))
    home = {**env, "COMMUNITY_ML_HOME": str(root), "PYTHONPATH": str(code)}
    for kind in (PRODUCT_RECS, CONTENT_RECS):
        if always or registry.champion(client, DATASET, kind) is None:
            run([*CLI, "train", kind.name, "--dataset", DATASET, "--budget-seconds", "20"], home, cwd=code)
            run([sys.executable, "-c", SET_NEWEST, str(root), kind.name, DATASET], home, cwd=code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=PROJECT / ".community-ml-bench" / "serving")
    parser.add_argument("--before", default="13e6732", help="the commit to measure as 'before'")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "COMMUNITY_ML_DATASET": DATASET}
    for name in ("COMMUNITY_ML_API_KEY", "MLFLOW_TRACKING_URI", "COMMUNITY_ML_WORKERS", "COMMUNITY_ML_REDIS_URL"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory() as tmp:
        root, members = ready_home(args.home, DATASET, tmp)
        with_recommenders(root, PROJECT, env, always=False)
        before, before_home = Path(tmp) / "before", Path(tmp) / "before-home"
        run(["git", "worktree", "add", "--detach", "--force", str(before), args.before], env)
        servers: dict[str, tuple[subprocess.Popen, str]] = {}
        try:
            shutil.copytree(root, before_home)
            with_recommenders(before_home, before, env, always=True)
            script, members_file = Path(tmp) / "members.lua", Path(tmp) / "members.txt"
            script.write_text(WRK_SCRIPT)
            members_file.write_text("\n".join(members) + "\n")
            for label, code, home in (("before", before, before_home), ("after", PROJECT, root)):
                port = free_port()
                command = [*CLI, "serve", "--dataset", DATASET, "--port", str(port), "--workers", "0"]
                served = {**env, "PYTHONPATH": str(code), "COMMUNITY_ML_HOME": str(home)}
                servers[label] = (start(command, served, port, code), f"http://127.0.0.1:{port}")
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for path in ENDPOINTS:
                for _, base in servers.values():
                    wrk(base, path, 5, script, members_file)
                order = list(servers.items())
                for round_ in range(args.rounds):  # A B, B A, A B ...: neither always goes first
                    for label, (_, base) in order if round_ % 2 == 0 else order[::-1]:
                        result = wrk(base, path, 10, script, members_file)
                        runs.setdefault((label, path), []).append(result)
                        print(label, path, {k: round(result[k], 2) for k in FIGURES}, flush=True)
        finally:
            for server, _ in servers.values():
                stop(server)
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=PROJECT, check=False)
    lines = [
        "| server | endpoint | runs: requests/s, p99 ms, p99.9 ms | median requests/s | median p50 ms "
        "| median p99 ms | median p99.9 ms |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (label, path), results in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0] != "before")):
        each = "; ".join(f"{r['rps']:,.0f}, {r['p99']:.1f}, {r['p999']:.1f}" for r in results)
        medians = [float(np.median([r[k] for r in results])) for k in FIGURES]
        lines.append(
            f"| {label} | `{path}` | {each} | {medians[0]:,.0f} | {medians[1]:.2f} | {medians[2]:.2f} | "
            f"{medians[3]:.2f} |"
        )
    explanation = __doc__.split("\n\n    .venv")[0] + f"\n\n'before' here: {args.before}."
    write_results("serving_ab", "Recommendations served: before and after, alternating", explanation, "\n".join(lines))


if __name__ == "__main__":
    main()
