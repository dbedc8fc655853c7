"""Benchmark: the day's outreach plan (issue 43) against the obvious policies, on generated worlds of several seeds.

Each seed's community (configs/synthetic.yaml: a randomized coupon campaign and 15 months of weekly product pushes,
`--members` members) gets the demo's pipeline (churn, value, product recommendations, uplift; the gate picks every
champion), then on the day after its history every policy's contacts are played through the world's hidden answers
with `data simulate` (the same draws for every policy): the gain is the net revenue of the next 30 days against
sending nothing, less the contacts' costs.

- `plan, budget B`: `outreach plan --budget B` (B = a tenth of the members);
- the obvious policies with the same budget, each among the members who agreed to the channel: the B highest churn
  risks sent the offer, the B highest predicted values sent a product push (their recommender's first item), B
  random members sent the offer;
- `plan, no budget` against everyone who agreed to the offer's channel sent the offer.
The obvious policies ignore caps and cool-offs (that is what makes them obvious); their breaches are counted.

    .venv/bin/python experiments/bench_plan.py [--seeds 7 11 23] [--members 8000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.results_file import write_results

PROJECT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cli"]
DATASET = "world"
CUTOFFS = ["--training-cutoffs", "4", "--test-cutoffs", "2"]


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([*CLI, *command], env=env, cwd=PROJECT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def prepare(home: Path, seed: int, members: int) -> dict[str, str]:
    """The seed's community with the demo's champions (kept between runs: generated and trained once)."""
    env = {**os.environ, "COMMUNITY_ML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    if (home / "trained").exists():
        return env
    run(["data", "generate", "--dataset", DATASET, "--config", "configs/synthetic.yaml", "--members", str(members),
         "--seed", str(seed), "--force"], env)  # fmt: skip
    run(["features", "build", "--dataset", DATASET, "--as-of", "latest"], env)
    for kind in ("churn", "value"):
        run(["train", kind, "--dataset", DATASET, *CUTOFFS], env)
    run(["train", "product-recs", "--dataset", DATASET, "--budget-seconds", "20"], env)
    run(["train", "uplift", "--dataset", DATASET, "--campaign", "coupon", "--horizon-days", "30"], env)
    (home / "trained").touch()
    return env


def obvious_policies(home: Path, env: dict[str, str], at: datetime, budget: int, seed: int) -> dict[str, pd.DataFrame]:
    """Each obvious policy's plan (member_id, action, channel, item_id, holdout)."""
    from features.common.home import StateHome
    from features.dataset.store import Dataset
    from serving.outreach.policy import CONSENT, load_policy, reachable

    run(["score", "--dataset", DATASET, "--out", str(home / "scores.parquet")], env)
    run(
        ["recommend", "--dataset", DATASET, "--kind", "product-recs", "--k", "1", "--out", str(home / "top.parquet")],
        env,
    )
    scores = pd.read_parquet(home / "scores.parquet")
    top = pd.read_parquet(home / "top.parquet")
    policy = load_policy()
    dataset = Dataset(StateHome(home), DATASET)
    members = scores["member_id"].astype(str).tolist()
    verdict = reachable(dataset, policy, at, members)
    agreed = verdict[verdict["reason"] != CONSENT]

    def first_channel(action: str) -> pd.Series:
        """Each member's first of the action's channels they agreed to."""
        order = {c: i for i, c in enumerate(policy.actions[action].channels)}
        mine = agreed[agreed["channel"].isin(order)].assign(order=lambda f: f["channel"].map(order))
        return mine.sort_values("order").drop_duplicates("member_id").set_index("member_id")["channel"]

    offer_by, push_by = first_channel("offer"), first_channel("product-push")
    frame = scores.assign(member_id=scores["member_id"].astype(str)).set_index("member_id")

    def plan(chosen: pd.Index, action: str, channels: pd.Series, items: pd.Series | None = None) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "member_id": chosen,
                "action": action,
                "channel": channels.reindex(chosen).to_numpy(),
                "item_id": None if items is None else items.reindex(chosen).to_numpy(),
                "holdout": False,
            }
        )

    may_offer, may_push = frame.index.intersection(offer_by.index), frame.index.intersection(push_by.index)
    churn = frame.loc[may_offer, "churn_probability"].sort_values(ascending=False, kind="stable").index[:budget]
    value = frame.loc[may_push, "expected_value"].sort_values(ascending=False, kind="stable").index[:budget]
    items = top.assign(member_id=top["member_id"].astype(str)).set_index("member_id")["item_id"]
    rng = np.random.default_rng(seed)
    random = pd.Index(rng.choice(np.asarray(may_offer), size=min(budget, len(may_offer)), replace=False))
    return {
        "highest churn risk, offer": plan(churn, "offer", offer_by),
        "highest value, product push": plan(value, "product-push", push_by, items),
        "random, offer": plan(random, "offer", offer_by),
        "everyone consenting, offer (no budget)": plan(may_offer, "offer", offer_by),
    }


def calibration_said(dataset: object, at: datetime) -> str:
    """How long calibrating product pushes takes (what the plan and every service worker do at start)."""
    import time

    from features.pipelines.snapshots import resolve_as_of
    from serving.models.champions import load_champions
    from serving.models.kinds import PRODUCT_RECS
    from serving.outreach.pushes import ProductPushes

    model = load_champions(dataset.home, dataset.name, [PRODUCT_RECS])[PRODUCT_RECS].model  # type: ignore[attr-defined]
    started = time.perf_counter()
    pushes = ProductPushes.open(dataset, model, resolve_as_of(dataset, "latest"))  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    what = pushes if isinstance(pushes, str) else pushes.response.summary()
    return f" Product-push calibration ({model.family}): {seconds:.1f} s; {what}."


def seed_rows(seed: int, members: int, root: Path) -> tuple[list[dict[str, object]], str]:
    from features.common.home import StateHome
    from features.dataset.responses import World, generated_config
    from features.dataset.store import Dataset
    from features.pipelines.snapshots import resolve_as_of
    from serving.outreach.policy import load_policy
    from serving.outreach.simulate import simulate_plan

    home = root / f"seed-{seed}"
    env = prepare(home, seed, members)
    dataset = Dataset(StateHome(home), DATASET)
    at = datetime.combine(resolve_as_of(dataset, "latest"), datetime.min.time()).replace(hour=10)
    budget = members // 10
    plans: dict[str, Path] = {}
    said = ""
    for name, extra in (("plan, budget B", ["--budget", str(budget)]), ("plan, no budget", [])):
        path = home / f"{name.replace(', ', '-').replace(' ', '_')}.csv"
        said = run(["outreach", "plan", "--dataset", DATASET, "--date", f"{at:%Y-%m-%d}", "--out", str(path),
                    *extra], env)  # fmt: skip
        plans[name] = path
    for name, frame in obvious_policies(home, env, at, budget, seed).items():
        plans[name] = home / f"obvious-{len(plans)}.csv"
        frame.to_csv(plans[name], index=False)
    world, policy = World(generated_config(dataset)), load_policy()
    said += calibration_said(dataset, at)
    rows = []
    for name, path in plans.items():
        summary = simulate_plan(dataset, path, policy, at, home / "simulated.csv", world=world)
        played = pd.read_csv(home / "simulated.csv")
        (home / "simulated.csv").unlink()
        # The bound of any targeting of the offer: each consenting member's hidden expected gain, the positive ones.
        oracle = float(played["expected_gain"].clip(lower=0).sum()) if name.startswith("everyone") else None
        promised = {}
        if name.startswith("plan"):  # what the plan expected of each action, beside what the world gave
            planned = pd.read_csv(path).query("~holdout")
            promised = {str(a): float(g) for a, g in planned.groupby("action")["expected_gain"].sum().items()}
        rows.append(
            {
                "seed": seed,
                "policy": name,
                "contacts": summary.contacts,
                "gain": summary.gain,
                "by_action": summary.gain_by_action,
                "breaches": sum(summary.breaches.values()),
                "unsubscribed": summary.unsubscribed,
                "complained": summary.complained,
                "expected": summary.expected_gain,
                "oracle": oracle,
                "promised": promised,
            }
        )
    return rows, said


def table(rows: list[dict[str, object]]) -> str:
    out = ["| seed | policy | contacts | gain (30 days) | gain by action | breaches | unsubscribed | complained |",
           "|---:|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        by = ", ".join(f"{a} {g:,.0f}" for a, g in r["by_action"].items())  # type: ignore[union-attr]
        out.append(
            f"| {r['seed']} | {r['policy']} | {r['contacts']:,} | {r['gain']:,.0f} | {by} | {r['breaches']:,} | "
            f"{r['unsubscribed']:,} | {r['complained']:,} |"
        )
    return "\n".join(out) + "\n"


def ratios(rows: list[dict[str, object]]) -> str:
    frame = pd.DataFrame(rows)
    out = ["| seed | plan / best obvious, budget B | plan / everyone consenting, no budget | bound: the hidden best "
           "offers / everyone (expected) | plan's breaches |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for seed, group in frame.groupby("seed"):
        gain = group.set_index("policy")["gain"]
        budgeted = gain[["highest churn risk, offer", "highest value, product push", "random, offer"]].max()
        breaches = int(group[group["policy"].str.startswith("plan")]["breaches"].sum())
        everyone = group.set_index("policy").loc["everyone consenting, offer (no budget)"]
        out.append(
            f"| {seed} | {gain['plan, budget B'] / budgeted:.2f} | "
            f"{gain['plan, no budget'] / everyone['gain']:.2f} | {everyone['oracle'] / everyone['expected']:.2f} | "
            f"{breaches} |"
        )
    return "\n".join(out) + "\n"


def promises(rows: list[dict[str, object]]) -> str:
    out = ["| seed | plan | action | the plan's expected gain | simulated gain | simulated / expected |",
           "|---:|---|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        for action, promised in r["promised"].items():  # type: ignore[union-attr]
            got = r["by_action"].get(action, 0.0)  # type: ignore[union-attr]
            out.append(
                f"| {r['seed']} | {r['policy']} | {action} | {promised:,.0f} | {got:,.0f} | {got / promised:.2f} |"
            )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    parser.add_argument("--members", type=int, default=8000)
    parser.add_argument("--root", type=Path, default=PROJECT / ".community-ml-bench" / "plan")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    said = []
    for seed in args.seeds:
        seed_table, plan_said = seed_rows(seed, args.members, args.root)
        rows += seed_table
        said.append(f"seed {seed}: " + " ".join(line.strip() for line in plan_said.splitlines() if line.strip()))
        print(table(seed_table), flush=True)
    parts = [
        f"## Gain by policy ({args.members:,} members a world, budget B = {args.members // 10:,} contacts)\n",
        table(rows),
        "## The plan against the best obvious policy\n",
        ratios(rows),
        "## What the plan expected of each action, and what the world gave\n",
        promises(rows),
        "## What each unbudgeted plan said, and how long its product pushes took to calibrate\n",
        "\n".join(f"- {s}" for s in said) + "\n",
    ]
    write_results("plan", "Outreach: the day's plan against the obvious policies", __doc__, "\n".join(parts))


if __name__ == "__main__":
    main()
