"""Churn and value on the real datasets, as `train` judges them and as `score` does on a split of record: every
family side by side with 95% bootstrap intervals, the gate's verdict, decile charts, calibration per cutoff.

- Online Retail as of 2011-08-20 and as of 2011-12-10 (the day after its data), CDNOW as of 1997-10-01 (its
  standard split: calibration before, the next 90 days held out): `train churn` and `train value` exactly as the
  CLI runs them (no tuning): every family's mean over the gate's held-out cutoffs, each figure with its 95%
  interval (a bootstrap over members), the family chosen and the gate's comparisons;
- where the horizon after the as-of date is in the data (2011-08-20, 1997-10-01): `score` as of that date judged
  against what members then did, beside every family fitted on the same training cutoffs, each with its interval,
  and the optimistic bound of any model (LightGBM learning from the judged cutoff's own labels,
  `experiments/ceiling.py`);
- the value champion's decile chart (predicted against actual spend per decile of predicted value), and churn's
  expected calibration error per held-out cutoff beside the churn rate there.

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
from features.common.home import StateHome
from features.dataset.importers import import_file
from features.dataset.online_retail import import_online_retail
from features.dataset.readers import WHITESPACE
from features.dataset.store import Dataset
from serving.models import registry
from serving.models.batch import score_members
from serving.models.kinds import CHURN, VALUE, GateMetric, ModelKind
from training.gate import HeldOutPredictions, paired_interval
from training.job import TrainResult, TrainSettings, train
from training.members.evaluation import BacktestSettings, backtest, decile_chart
from training.members.frames import labelled_snapshot
from training.metrics import WEIGHTED, target_metrics
from training.tracking import logged_predictions as job_predictions

COLUMNS = {
    CHURN: ("roc_auc", "pr_auc", "brier", "calibration_error"),
    VALUE: ("normalized_gini", "rmse", "mae", "total_error_pct"),
}
CDNOW_STANDARD_SPLIT = date(1997, 10, 1)
# Bootstrap replicates for the tables' intervals (the gate itself draws training.gate.REPLICATES).
REPLICATES = 400
SIMPLE_PEERS = ("bgnbd-gamma-gamma", "run-rate", "run-rate-30d", "run-rate-90d", "run-rate-180d", "run-rate-lifetime")


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
    """A markdown table of the frame, its index as the first column; '-' where a value is missing, text as is."""
    lines = [f"| {title} | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for label, row in table.iterrows():
        cells = [
            v if isinstance(v, str) else "-" if v != v else f"{v:,.{digits.get(str(c), 4)}f}" for c, v in row.items()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _digits(kind: ModelKind) -> dict[str, int]:
    return {"rmse": 2, "mae": 2, "total_error_pct": 1} if kind is VALUE else {}


def with_intervals(
    frame: pd.DataFrame, evidence: HeldOutPredictions | None, kind: ModelKind, digits: dict[str, int]
) -> pd.DataFrame:
    """The frame's gate metrics written with their 95% interval (a bootstrap over members) where the predictions
    are there."""
    out = frame.astype(object)
    for metric in kind.gate:
        if metric.name not in WEIGHTED or metric.name not in frame.columns:
            continue
        d = digits.get(metric.name, 4)
        for method in frame.index:
            value = frame.loc[method, metric.name]
            if evidence is None or not evidence.has(str(method)) or value != value:
                continue
            low, high = paired_interval(metric, evidence, str(method), None, replicates=REPLICATES)
            out.loc[method, metric.name] = f"{value:,.{d}f} [{low:,.{d}f}, {high:,.{d}f}]"
    return out


def logged_predictions(home: StateHome, run_id: str) -> HeldOutPredictions | None:
    return job_predictions(registry.connect(home), run_id)


def held_out_table(result: TrainResult, kind: ModelKind, evidence: HeldOutPredictions | None) -> str:
    """Every family's mean over the held-out cutoffs (the candidate starred) with intervals, and the verdict."""
    scores = {result.family: result.metrics, **result.rivals}
    frame = pd.DataFrame.from_dict(scores, orient="index").reindex(columns=list(COLUMNS[kind]))
    frame = with_intervals(frame, evidence, kind, _digits(kind))
    frame.index = [f"**{name}** (candidate)" if name == result.family else name for name in frame.index]
    verdict = "promoted" if result.promoted else "not promoted: " + "; ".join(result.reasons)
    cutoffs = ", ".join(map(str, result.test_cutoffs))
    return (
        _markdown(frame, f"{kind.name}, held out {cutoffs}", _digits(kind))
        + f"\n{result.choice}; {result.family} v{result.version} {verdict} ({result.seconds:.0f} s).\n"
    )


def decile_section(evidence: HeldOutPredictions | None, family: str, where: str) -> str:
    if evidence is None or not evidence.has(family):
        return ""
    chart = decile_chart(evidence, family)
    chart["share_of_spend"] = 100 * chart["share_of_spend"]
    chart = chart.rename(columns={"share_of_spend": "share_of_spend_pct"})
    return "\n" + _markdown(chart, f"{family} decile ({where})", {"members": 0, "share_of_spend_pct": 1}) + "\n"


def calibration_section(home: StateHome, result: TrainResult) -> str:
    """The churn candidate's and RFM's ECE at each held-out cutoff, beside the churn rate there."""
    evidence = logged_predictions(home, result.run_id)
    if evidence is None:
        return ""
    from training.metrics import expected_calibration_error

    rows = {}
    for i, cutoff in enumerate(evidence.cutoffs):
        actual = evidence.actual[i]
        row: dict[str, Any] = {"churn_rate": float(actual.mean())}
        for family in dict.fromkeys([result.family, "lightgbm", "rfm"]):
            if evidence.has(family):
                predicted = evidence.predicted[family][i]
                row[f"{family} mean prediction"] = float(predicted.mean())
                row[f"{family} ECE"] = expected_calibration_error(actual.astype(int), predicted)
        rows[cutoff] = row
    return "\n" + _markdown(pd.DataFrame.from_dict(rows, orient="index"), "churn, cutoff", {}) + "\n"


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


def trained_section(dataset: Dataset, as_of: date) -> tuple[str, dict[ModelKind, TrainResult]]:
    """`train churn` and `train value` as of the date: every family on the gate's held-out cutoffs."""
    parts = [f"## {dataset.name}: `community-ml train` as of {as_of}\n"]
    results = {}
    for kind in COLUMNS:
        result = results[kind] = train(dataset, kind, TrainSettings(as_of=as_of))
        evidence = logged_predictions(dataset.home, result.run_id)
        parts.append(held_out_table(result, kind, evidence))
        if kind is VALUE:
            parts.append(decile_section(evidence, result.family, "held-out cutoffs, the candidate"))
        else:
            parts.append(calibration_section(dataset.home, result))
    return "\n".join(parts), results


def judged_section(dataset: Dataset, as_of: date, results: dict[ModelKind, TrainResult]) -> str:
    """`score` as of the date against what members did in the next 90 days, beside every family fitted on the same
    training cutoffs (each with its interval) and the bound; whether the value champion beats every simple peer."""
    started = time.perf_counter()
    scored, champions = score_members(dataset, as_of)
    seconds = time.perf_counter() - started
    truth = labelled_snapshot(dataset, as_of, 90)
    scored = scored.merge(truth, on="member_id", how="left", validate="one_to_one")
    parts = [
        f"### `score` as of {as_of}, judged on the next 90 days\n\n"
        f"{len(scored):,} members scored in {seconds:.1f} s, {int(scored[CHURN.label].isna().sum())} without a "
        "label. Every family below is fitted on the same six training cutoffs as the champion.\n"
    ]
    for kind, columns in COLUMNS.items():
        report = backtest(dataset, kind, BacktestSettings(cutoffs=[as_of]))
        evidence = report.predictions
        champion = champions[kind]
        name = f"champion {champion.family} v{champion.version}"
        labelled = scored.dropna(subset=[str(kind.label)])
        served = labelled.set_index("member_id")[str(kind.output)]
        evidence.add(name, served.reindex(evidence.members[0]).to_numpy(float))
        frame = report.mean_by_method().reindex(columns=list(columns))
        served_metrics = target_metrics(kind, labelled, labelled[str(kind.output)].to_numpy())
        frame.loc[name] = pd.Series(served_metrics)
        frame = with_intervals(frame, evidence, kind, _digits(kind))
        frame.index = [f"**`score`: {n}**" if n == name else n for n in frame.index]
        for bound, values in bound_rows(dataset, [as_of], kind).items():
            frame.loc[bound] = pd.Series(values)
        result = results[kind]
        parts.append(
            _markdown(frame, kind.name, _digits(kind))
            + f"\n`train {kind.name} --as-of {as_of}`: {result.choice}; "
            + ("promoted" if result.promoted else "not promoted")
            + ".\n"
        )
        if kind is VALUE:
            parts.append(peers_verdict(report.mean_by_method(), served_metrics, name, evidence))
            parts.append(decile_section(evidence, name, f"as of {as_of}, the served champion"))
    return "\n".join(parts)


def peers_verdict(means: pd.DataFrame, served: dict[str, float], champion: str, evidence: HeldOutPredictions) -> str:
    """The target: the value champion against the best simple peer on Gini and on RMSE, with the paired interval."""
    family = champion.split(" ")[1]
    lines = []
    for metric in (GateMetric("normalized_gini", True), GateMetric("rmse", False)):
        peers = means.loc[[p for p in SIMPLE_PEERS if p in means.index], metric.name]
        best = str(peers.idxmax() if metric.higher_is_better else peers.idxmin())
        if family == best:
            lines.append(f"- {metric.name}: the champion is the best simple peer itself ({best}).")
            continue
        low, high = paired_interval(metric, evidence, champion, best, replicates=REPLICATES)
        ours, theirs = served[metric.name], float(peers[best])
        gain = ours - theirs if metric.higher_is_better else theirs - ours
        lines.append(
            f"- {metric.name}: champion {ours:,.4f} against the best simple peer, {best}, {theirs:,.4f}: gain "
            f"{gain:+,.4f}, 95% interval [{low:+,.4f}, {high:+,.4f}]"
        )
    return (
        "\nThe value champion against the best simple peer (BG/NBD + Gamma-Gamma or a run-rate window):\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail-csv", type=Path, default=Path("../shared/data/online_retail/online_retail.csv.gz"))
    parser.add_argument("--cdnow", type=Path, default=Path("../shared/data/cdnow/CDNOW_master.txt.gz"))
    args = parser.parse_args()
    for path in (args.retail_csv, args.cdnow):
        if not path.exists():
            raise SystemExit(f"{path} not found: this benchmark needs the real datasets in ../shared/data")
    runs = [  # (dataset name, loader, path, as of, whether the 90 days after it are in the data)
        ("online-retail-2011-08-20", import_online_retail, args.retail_csv, date(2011, 8, 20), True),
        ("online-retail-2011-12-10", import_online_retail, args.retail_csv, date(2011, 12, 10), False),
        ("cdnow-standard-split", import_cdnow, args.cdnow, CDNOW_STANDARD_SPLIT, True),
    ]
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        home = StateHome(Path(tmp))
        for name, load, path, as_of, judged in runs:
            dataset = Dataset(home, name)
            load(dataset, path)
            text, results = trained_section(dataset, as_of)
            sections.append(text)
            if judged:
                sections.append(judged_section(dataset, as_of, results))
    write_results(
        "churn_value",
        "Churn and value on real data: every family side by side, with intervals",
        __doc__.split("\n\n")[1] + "\n\nProduced by `make bench` (`experiments/churn_value.py`). Intervals: 95%, a "
        f"bootstrap over members ({REPLICATES} draws; a member drawn twice counts twice at every cutoff). Churn's "
        "calibration_error is the expected calibration error (10 equal-width bins); value's total_error_pct is "
        "the sum of predictions against the sum of what was spent.",
        "\n".join(sections),
    )


if __name__ == "__main__":
    main()
