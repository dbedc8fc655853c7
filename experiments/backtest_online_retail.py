"""Churn and value backtests on Online Retail, every model beside its baselines on the same held-out cutoffs.

Test cutoffs are monthly from 2011-06-01 to 2011-09-01 with a 90-day horizon; for each, the models train on the
six monthly cutoffs whose labels end before it (no tuning yet). Writes experiments/results/churn_value.md.

    .venv/bin/python experiments/backtest_online_retail.py [--retail-csv PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date
from pathlib import Path

from experiments.results_file import write_results
from features.home import StateHome
from features.online_retail import import_online_retail
from features.store import Dataset
from training.backtest import BacktestSettings, ModelKind, backtest

CUTOFFS = [date(2011, 6, 1), date(2011, 7, 1), date(2011, 8, 1), date(2011, 9, 1)]
COLUMNS = {
    ModelKind.churn: ("roc_auc", "pr_auc", "brier", "calibration_error"),
    ModelKind.value: ("rmse", "mae", "normalized_gini", "total_error_pct"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail-csv", type=Path, default=Path("../shared/data/online_retail/online_retail.csv.gz"))
    args = parser.parse_args()
    if not args.retail_csv.exists():
        raise SystemExit(f"{args.retail_csv} not found: this benchmark needs the Online Retail file")

    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Dataset(StateHome(Path(tmp)), "retail")
        import_online_retail(dataset, args.retail_csv)
        for kind, columns in COLUMNS.items():
            report = backtest(dataset, kind, BacktestSettings(cutoffs=CUTOFFS))
            means = report.mean_by_method()
            lines = [f"| {kind.value} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
            for method, row in means.iterrows():
                cells = " | ".join("-" if row[c] != row[c] else f"{row[c]:.4f}" for c in columns)
                lines.append(f"| {method} | {cells} |")
            lines.append(
                f"\n{kind.value}: {len(CUTOFFS)} cutoffs trained and scored in {report.seconds:.1f} s "
                f"(features, {len(CUTOFFS)} models, baselines).\n"
            )
            sections.append("\n".join(lines))
    write_results(
        "churn_value",
        "Churn and value backtests on Online Retail",
        "Produced by `make bench` (`experiments/backtest_online_retail.py`). Mean over the test cutoffs "
        + ", ".join(map(str, CUTOFFS))
        + " (90-day horizon); each cutoff's model trains on the six monthly cutoffs whose labels end before it,\n"
        "and is scored beside the baselines on the same members. No hyper-parameter tuning yet; BG/NBD and\n"
        "Gamma-Gamma baselines are not in this table yet.",
        "\n".join(sections),
    )


if __name__ == "__main__":
    main()
