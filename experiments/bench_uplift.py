"""Benchmark: campaigns on the synthetic community, where the truth is known.

1. The report's intervals: for many seeds, a community with a randomized coupon campaign is generated, its report
   computed, and each interval (raw and CUPED, 95%) checked against the planted average lift on conversion (the
   mean of each member's true lift, from the generator's ground truth). Coverage should be 95% or more (the
   interval's variance is Neyman's, conservative for an average of members' own lifts); CUPED's intervals narrower.
2. Who responds: for a few seeds at the demo's size, every uplift family and the churn-targeting reference judged
   as `train uplift` judges them (Qini, uplift among the top 10% and 30%, on the held-out 30%), with how well each
   ranking follows the true lift (Spearman) and the time to fit.

Each community lives in its own state home under .community-ml-bench/uplift/. Writes experiments/results/uplift.md.

    .venv/bin/python experiments/bench_uplift.py [--coverage-seeds 40] [--model-seeds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.results_file import write_results
from features.common.home import StateHome
from features.dataset.importers import import_synthetic
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig
from monitoring.campaign_report import CampaignReportSettings, campaign_report
from serving.models.kinds import UPLIFT
from training.metrics import uplift_metrics
from training.trainer import TrainSettings
from training.uplift.fit import fit_uplift
from training.uplift.trainer import CHURN_TARGETING, UpliftTrainer, churn_scores

ROOT = Path(".community-ml-bench/uplift")
CAMPAIGN_AT = date(2025, 7, 1)
HORIZON = 30


def community(name: str, members: int, seed: int) -> Dataset:
    home = StateHome(ROOT / name)
    os.environ["COMMUNITY_ML_HOME"] = str(home.root)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    dataset = Dataset(home, name)
    if not dataset.exists():
        config = SyntheticConfig(members=members, seed=seed, months=8, campaign_at=CAMPAIGN_AT)
        import_synthetic(dataset, config)
    return dataset


def planted(dataset: Dataset) -> float:
    truth = pd.read_parquet(dataset.path / "truth.parquet")
    return float(truth["true_lift_conversion"].dropna().mean())


def coverage(seeds: int, members: int) -> str:
    rows = []
    for seed in range(seeds):
        dataset = community(f"coverage-{members}-{seed}", members, seed)
        report = campaign_report(dataset, CampaignReportSettings(campaign="coupon", horizon_days=HORIZON))
        truth = planted(dataset)
        conversion = report.comparisons["coupon"]["conversion"]
        spend = report.comparisons["coupon"]["spend"]
        rows.append(
            {
                "raw_covers": conversion.raw.low <= truth <= conversion.raw.high,
                "cuped_covers": conversion.cuped.estimate.low <= truth <= conversion.cuped.estimate.high,
                "raw_width": conversion.raw.high - conversion.raw.low,
                "cuped_width": conversion.cuped.estimate.high - conversion.cuped.estimate.low,
                "error": conversion.raw.difference - truth,
                "spend_variance_removed": spend.cuped.variance_reduction,
                "srm_flagged": report.sample_ratio.mismatch,
                "members": report.matured,
            }
        )
    frame = pd.DataFrame(rows)
    return (
        f"| communities | members measured (mean) | raw 95% interval covers the planted lift | CUPED covers | "
        f"raw width | CUPED width | mean error | spend variance removed by CUPED | SRM flagged |\n"
        f"|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {len(frame)} | {frame['members'].mean():,.0f} | {frame['raw_covers'].mean():.0%} | "
        f"{frame['cuped_covers'].mean():.0%} | {frame['raw_width'].mean():.4f} | {frame['cuped_width'].mean():.4f} | "
        f"{frame['error'].mean():+.4f} | {frame['spend_variance_removed'].mean():.1%} | "
        f"{int(frame['srm_flagged'].sum())} of {len(frame)} |\n"
    )


def who_responds(seeds: int, members: int) -> str:
    rows = []
    settings = TrainSettings(campaign="coupon", horizon_days=HORIZON)
    for seed in range(seeds):
        dataset = community(f"models-{members}-{seed}", members, 100 + seed)
        trainer = UpliftTrainer()
        data = trainer.campaign(dataset, settings)
        test = data.held_out
        truth = pd.read_parquet(dataset.path / "truth.parquet").set_index("member_id")["true_lift_conversion"]
        true_lift = truth.reindex(data.frame["member_id"][test]).to_numpy()
        for family in ("x-learner", "t-learner", "random", CHURN_TARGETING):
            started = time.perf_counter()
            if family == CHURN_TARGETING:
                score, _ = churn_scores(dataset, data.frame[test].reset_index(drop=True), HORIZON)
            else:
                score = fit_uplift(family, data, ~test, UPLIFT, settings).predict(data.frame[test])
            seconds = time.perf_counter() - started
            metrics = uplift_metrics(score, data.treated[test], data.outcome[test])
            spearman = pd.Series(score).rank().corr(pd.Series(true_lift).rank()) if np.std(score) > 0 else 0.0
            rows.append({"seed": seed, "family": family, **metrics, "spearman": spearman, "seconds": seconds})
    frame = pd.DataFrame(rows)
    means = frame.groupby("family", sort=False).agg(["mean", "std"])
    lines = [
        "| family | Qini | uplift@10% | uplift@30% | Spearman with the true lift | fit + score s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for family, row in means.iterrows():
        cells = [
            f"{row[(m, 'mean')]:.4f} ± {row[(m, 'std')]:.4f}"
            for m in ("qini", "uplift_at_10", "uplift_at_30", "spearman")
        ]
        lines.append(f"| {family} | {' | '.join(cells)} | {row[('seconds', 'mean')]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coverage-seeds", type=int, default=40)
    parser.add_argument("--coverage-members", type=int, default=2_000)
    parser.add_argument("--model-seeds", type=int, default=3)
    parser.add_argument("--model-members", type=int, default=10_000)
    parser.add_argument("--fresh", action="store_true", help="generate every community again")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(ROOT, ignore_errors=True)
    started = time.perf_counter()
    first = coverage(args.coverage_seeds, args.coverage_members)
    second = who_responds(args.model_seeds, args.model_members)
    table = (
        f"## The report's 95% intervals against the planted lift (conversion, {HORIZON} days, "
        f"{args.coverage_members:,} members per community)\n\n{first}\n"
        f"## Who responds: uplift families on held-out campaign members ({args.model_members:,} members, "
        f"{args.model_seeds} communities, mean ± sd)\n\n{second}\n"
        f"Measured in {time.perf_counter() - started:.0f} s.\n"
    )
    explanation = __doc__.split("\n\n", 1)[1].rsplit("\n\n", 2)[0]
    write_results("uplift", "Campaigns: measured lift and uplift models against the planted truth", explanation, table)


if __name__ == "__main__":
    main()
