"""Product recommendations on Online Retail, and content and product recommendations on the synthetic community.

Every item family `train` judges, with its defaults, beside the baselines on the same members, under both
protocols of the literature:
- time split: train on interactions before T, test on the next 90 days, members active in both;
- random per-item split (for data without meaningful time): 25% of each item's members held out.
Then what `train` itself chooses on each (every learned family tuned within the default budget on a validation
split carved from the training data, never the test split), with the time it took.
Writes experiments/results/recs.md.

    .venv/bin/python experiments/recs_online_retail.py [--retail-csv PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path

from experiments.results_file import write_results
from features.common.home import StateHome
from features.dataset.importers import import_synthetic
from features.dataset.online_retail import import_online_retail
from features.dataset.store import Dataset
from features.dataset.synthetic import SyntheticConfig
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, resolve_as_of
from serving.models.kinds import CONTENT_RECS, PRODUCT_RECS, ModelKind, Task
from training.items.evaluation import Recommend, Split, compare, factor_method, random_split, time_split
from training.items.trainer import RANDOM_TEST_SHARE
from training.job import TrainResult, TrainSettings, train
from training.tuning import TUNING_BUDGET_SECONDS

# Every item family `train` judges (with its defaults), and item-knn's other weighting.
FAMILIES: dict[str, tuple[str, dict]] = {
    "most popular": ("popular", {}),
    "buy again": ("buy-again", {}),
    "item-knn (BM25)": ("item-knn", {}),
    "item-knn (cosine, 100)": ("item-knn", {"weighting": "cosine", "neighbours": 100}),
    "EASE": ("ease", {}),
    "BPR": ("bpr", {}),
    "ALS (BM25)": ("als", {}),
}
HORIZON = 90
COLUMNS = ("precision", "new_precision", "recall", "ndcg", "map", "coverage", "fit_seconds", "seconds")


def methods() -> dict[str, Recommend]:
    return {name: factor_method(family, params) for name, (family, params) in FAMILIES.items()}


def table(title: str, split: Split, modes: tuple[bool, ...]) -> str:
    rows = compare(split, methods(), k=10, modes=modes)
    lines = [
        f"**{title}** ({len(split.users):,} test members, {split.train.shape[1]:,} items, k = 10)\n",
        "| method | list | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for r in rows:
        cells = " | ".join(f"{r[c]:.2f}" if c.endswith("seconds") else f"{r[c]:.4f}" for c in COLUMNS)
        lines.append(f"| {r['method']} | {r['mode']} | {cells} |")
    return "\n".join(lines) + "\n"


def chosen(runs: list[tuple[str, TrainResult]]) -> str:
    """What `train` chose on each dataset, kind and split, with its figures and its best rival's."""
    lines = [
        "**What `train` chooses** (default settings: every learned family tuned within "
        f"{TUNING_BUDGET_SECONDS[Task.items]:.0f} s in all, then judged)\n",
        "| dataset, kind, split | chosen | precision | ndcg | new_only_precision | best other (precision) "
        "| promoted | train seconds |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    for label, run in runs:
        m = run.metrics
        other, figures = max(run.rivals.items(), key=lambda item: item[1]["precision"])
        lines.append(
            f"| {label} | {run.family} | {m['precision']:.4f} | {m['ndcg']:.4f} | {m['new_only_precision']:.4f} "
            f"| {other} ({figures['precision']:.4f}) | {'yes' if run.promoted else 'no'} | {run.seconds:.0f} |"
        )
    lines.append("")
    lines += [f"- {label}: {run.choice}; parameters `{run.params}`" for label, run in runs]
    return "\n".join(lines) + "\n"


def train_default(dataset: Dataset, kind: ModelKind, split: str) -> TrainResult:
    return train(dataset, kind, TrainSettings(split=split))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail-csv", type=Path, default=Path("../shared/data/online_retail/online_retail.csv.gz"))
    args = parser.parse_args()
    sections = []
    runs: list[tuple[str, TrainResult]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = StateHome(Path(tmp))
        if args.retail_csv.exists():
            retail = Dataset(home, "retail")
            import_online_retail(retail, args.retail_csv)
            # As `train` judges a model serving after the data: the time split tests on the last 90 days, the
            # random split on 25% of each item's interactions before then.
            as_of = resolve_as_of(retail, "latest")
            test_from = as_of - timedelta(days=HORIZON)
            build_snapshot(retail, SnapshotSettings(as_of=as_of))
            sections.append(
                table(
                    f"Online Retail products, time split at {test_from}",
                    time_split(retail, PRODUCT_RECS, test_from, HORIZON),
                    (False, True),
                )
            )
            sections.append(
                table(
                    f"Online Retail products, random per-item split before {as_of}",
                    random_split(Snapshot(retail, as_of).interactions("products"), RANDOM_TEST_SHARE),
                    (True,),
                )
            )
            runs.append(("Online Retail, product-recs, time", train_default(retail, PRODUCT_RECS, "time")))
            runs.append(
                ("Online Retail, product-recs, random per-item", train_default(retail, PRODUCT_RECS, "random-per-item"))
            )
        synthetic = Dataset(home, "synthetic")
        import_synthetic(synthetic, SyntheticConfig())
        test_from = date(2025, 12, 1)
        sections.append(
            table(
                f"Synthetic community contents (reads, likes, shares), time split at {test_from}",
                time_split(synthetic, CONTENT_RECS, test_from, HORIZON),
                (True,),
            )
        )
        sections.append(
            table(
                f"Synthetic community products, time split at {test_from}",
                time_split(synthetic, PRODUCT_RECS, test_from, HORIZON),
                (False, True),
            )
        )
        runs.append(("synthetic, content-recs, time", train_default(synthetic, CONTENT_RECS, "time")))
        runs.append(("synthetic, product-recs, time", train_default(synthetic, PRODUCT_RECS, "time")))
    write_results(
        "recs",
        "Recommendation benchmark",
        "Produced by `make bench` (`experiments/recs_online_retail.py`). 'repeat allowed' lists may hold items\n"
        "the member already has (repeat buying is normal in retail), ranked with each family's repeat boost;\n"
        "'new only' lists may not, and their hits are items new to the member. new_precision counts only hits\n"
        "on items the member never had. fit_seconds = fitting the family on the split's training matrix;\n"
        "seconds = fitting and recommending for every test member. The family tables use each family's defaults\n"
        "(their records, `serving/models/families/recommenders.py`). The last table is `train` with its default\n"
        "settings, on the "
        "same test splits: every learned family tuned on a validation split carved from the training data alone\n"
        "(the time split: the 90 days before the test window; the random split: 25% of what the test leaves),\n"
        "then every family judged, and the best that beats the baselines (or the best baseline) champion;\n"
        "new_only_precision is the precision of its lists of items new to the member.",
        "\n".join(sections) + "\n" + chosen(runs),
    )


if __name__ == "__main__":
    main()
