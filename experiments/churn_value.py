"""Churn and value on the real datasets: every family side by side on `train`'s own held-out cutoffs, the
optimistic bound of any model at the same cutoffs, and CDNOW's standard split scored by `score`.

For Online Retail and CDNOW, each in its own dataset (its own champions):
- `train churn` and `train value` as of the day after the data, exactly as the CLI runs them (no tuning): every
  family's mean over the held-out cutoffs, which family the job chose and why, and whether it was promoted;
- the bound: LightGBM in its own form (the same features and model inputs) learning from the held-out cutoff's own
  members and labels (5-fold cross-validation within the cutoff, so no drift between training and test), with,
  where the data has products, basket features the store lacks (`experiments/ceiling.py`);
- CDNOW's standard split (features before 1997-10-01, the next 90 days, all 23,570 customers): `train` as of
  1997-10-01, then `score` as of 1997-10-01 judged against what the customers spent, beside every family fitted on
  the same training cutoffs and the bound at 1997-10-01.

    .venv/bin/python experiments/churn_value.py [--retail-csv PATH] [--cdnow PATH]

Writes experiments/results/churn_value.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.ceiling import ceiling_rows
from experiments.results_file import write_results
from features.home import StateHome
from features.importers import import_file
from features.online_retail import import_online_retail
from features.readers import WHITESPACE
from features.store import Dataset
from serving.models.batch import score_members
from serving.models.kinds import CHURN, VALUE, ModelKind
from training.backtest import BacktestSettings, backtest, target_metrics
from training.frames import labelled_snapshot
from training.job import TrainResult, TrainSettings, train

COLUMNS = {
    CHURN: ("roc_auc", "pr_auc", "brier", "calibration_error"),
    VALUE: ("rmse", "mae", "normalized_gini", "total_error_pct"),
}
CDNOW_STANDARD_SPLIT = date(1997, 10, 1)


def import_cdnow(dataset: Dataset, path: Path) -> None:
    """CDNOW_master as a user imports it: whitespace-separated, dates as YYYYMMDD, one line per order."""
    mapping = {"member_id": "customer_id", "ts": "date", "amount": "dollar_value", "quantity": "number_of_cds"}
    import_file(dataset, "orders", path, mapping, sep=WHITESPACE, time_format="%Y%m%d")


@dataclass(frozen=True)
class RealData:
    name: str
    path: Path
    load: Callable[[Dataset, Path], Any]


def _markdown(table: pd.DataFrame, title: str, digits: dict[str, int]) -> str:
    """A markdown table of the frame, its index as the first column; '-' where a value is missing."""
    lines = [f"| {title} | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for label, row in table.iterrows():
        cells = ["-" if v != v else f"{v:,.{digits.get(str(c), 4)}f}" for c, v in row.items()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _digits(kind: ModelKind) -> dict[str, int]:
    return {"rmse": 2, "mae": 2, "total_error_pct": 1} if kind is VALUE else {}


def held_out_table(result: TrainResult, kind: ModelKind, bound: dict[str, float]) -> str:
    """Every family's mean over the held-out cutoffs (the candidate starred), the bound below them."""
    scores = {result.family: result.metrics, **result.rivals}
    frame = pd.DataFrame.from_dict(scores, orient="index").reindex(columns=list(COLUMNS[kind]))
    frame.index = [f"**{name}** (candidate)" if name == result.family else name for name in frame.index]
    for name, values in bound.items():
        frame.loc[name] = pd.Series(values)
    verdict = "promoted" if result.promoted else "not promoted: " + "; ".join(result.reasons)
    cutoffs = ", ".join(map(str, result.test_cutoffs))
    return (
        _markdown(frame, f"{kind.name}, held out {cutoffs}", _digits(kind))
        + f"\n{result.choice}; {result.family} v{result.version} {verdict} ({result.seconds:.0f} s).\n"
    )


def bound_rows(dataset: Dataset, cutoffs: list[date], kind: ModelKind) -> dict[str, dict[str, float]]:
    """The bounds' mean over the cutoffs, named as rows of a family table."""
    rows = pd.DataFrame(ceiling_rows(dataset, cutoffs, 90, kind))
    names = {"store": "bound: own labels, same features", "basket": "bound: own labels, + basket features"}
    out = {}
    for variant, name in names.items():
        part = rows[rows["variant"] == variant].drop(columns=["variant", "cutoff"])
        if not part.empty:
            out[name] = part.mean().to_dict()
    return out


def real_dataset_section(data: RealData, home: StateHome) -> str:
    dataset = Dataset(home, data.name)
    data.load(dataset, data.path)
    parts = [f"## {data.name}: `community-ml train` as of the day after the data\n"]
    for kind in COLUMNS:
        result = train(dataset, kind, TrainSettings())
        parts.append(held_out_table(result, kind, bound_rows(dataset, result.test_cutoffs, kind)))
    return "\n".join(parts)


def standard_split_section(path: Path, home: StateHome) -> str:
    """CDNOW calibrated before 1997-10-01 and judged on the next 90 days: `score` beside every family."""
    dataset = Dataset(home, "cdnow-standard-split")
    import_cdnow(dataset, path)
    results = {kind: train(dataset, kind, TrainSettings(as_of=CDNOW_STANDARD_SPLIT)) for kind in COLUMNS}
    started = time.perf_counter()
    scored, champions = score_members(dataset, CDNOW_STANDARD_SPLIT)
    seconds = time.perf_counter() - started
    truth = labelled_snapshot(dataset, CDNOW_STANDARD_SPLIT, 90)
    scored = scored.merge(truth, on="member_id", how="left", validate="one_to_one")
    parts = [
        f"## CDNOW's standard split: `score` as of {CDNOW_STANDARD_SPLIT}, the next 90 days\n\n"
        f"{len(scored):,} customers scored in {seconds:.1f} s, {int(scored[CHURN.label].isna().sum())} without a "
        "label. Every family below is fitted on the same six training cutoffs as the champion.\n"
    ]
    for kind, columns in COLUMNS.items():
        report = backtest(dataset, kind, BacktestSettings(cutoffs=[CDNOW_STANDARD_SPLIT]))
        frame = report.mean_by_method().reindex(columns=list(columns))
        champion = champions[kind]
        name = f"**`score`: champion {champion.family} v{champion.version}**"
        frame.loc[name] = pd.Series(target_metrics(kind, scored, scored[str(kind.output)].to_numpy()))
        for bound, values in bound_rows(dataset, [CDNOW_STANDARD_SPLIT], kind).items():
            frame.loc[bound] = pd.Series(values)
        result = results[kind]
        parts.append(
            _markdown(frame, kind.name, _digits(kind))
            + f"\n`train {kind.name} --as-of {CDNOW_STANDARD_SPLIT}`: {result.choice}; "
            + ("promoted" if result.promoted else "not promoted")
            + ".\n"
        )
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail-csv", type=Path, default=Path("../shared/data/online_retail/online_retail.csv.gz"))
    parser.add_argument("--cdnow", type=Path, default=Path("../shared/data/cdnow/CDNOW_master.txt.gz"))
    args = parser.parse_args()
    for path in (args.retail_csv, args.cdnow):
        if not path.exists():
            raise SystemExit(f"{path} not found: this benchmark needs the real datasets in ../shared/data")
    real = [
        RealData("online-retail", args.retail_csv, import_online_retail),
        RealData("cdnow", args.cdnow, import_cdnow),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        home = StateHome(Path(tmp))
        sections = [real_dataset_section(data, home) for data in real]
        sections.append(standard_split_section(args.cdnow, home))
    write_results(
        "churn_value",
        "Churn and value on real data: every family side by side",
        __doc__.split("\n\n")[1] + "\n\nProduced by `make bench` (`experiments/churn_value.py`). Churn's "
        "calibration_error is the expected calibration error (10 equal-width bins); value's total_error_pct is "
        "the sum of predictions against the sum of what was spent.",
        "\n".join(sections),
    )


if __name__ == "__main__":
    main()
