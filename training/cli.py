"""`community-ml backtest ...`: rolling-origin evaluation of the churn and value models against baselines."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.table import Table

from features.cli import DatasetOption, JsonOption, console, user_errors
from features.errors import DataError
from features.home import StateHome
from features.scoring import ModelKind
from features.store import Dataset

backtest_app = typer.Typer(help="Evaluate models on cutoffs they never saw, beside the baselines.")


def parse_cutoffs(value: str) -> list[date]:
    try:
        return [date.fromisoformat(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise DataError(f"--cutoffs {value!r}: expected dates like 2011-06-01,2011-07-01") from exc


@backtest_app.command("backtest")
def backtest_command(
    kind: ModelKind = typer.Argument(..., help="churn or value"),
    dataset: str = DatasetOption,
    cutoffs: str = typer.Option(..., help="test cutoffs, comma-separated (e.g. 2011-06-01,2011-07-01)"),
    horizon_days: int = typer.Option(90, "--horizon-days"),
    training_cutoffs: int = typer.Option(6, help="monthly training cutoffs before each test cutoff"),
    seed: int = typer.Option(0),
    as_json: bool = JsonOption,
) -> None:
    """For each cutoff: train on what precedes it, score the next H days, compare with the baselines."""
    from training.backtest import BacktestSettings, backtest

    with user_errors():
        settings = BacktestSettings(
            cutoffs=parse_cutoffs(cutoffs), horizon_days=horizon_days, training_cutoffs=training_cutoffs, seed=seed
        )
        report = backtest(Dataset(StateHome.from_env(), dataset).require(), kind, settings)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    means = report.mean_by_method().drop(columns=["train_rows", "test_members"])
    table = Table(
        title=f"{kind.value} backtest on {dataset}, horizon {horizon_days} days, mean of "
        f"{len(settings.cutoffs)} cutoffs ({report.seconds:.0f} s)"
    )
    table.add_column("method")
    for column in means.columns:
        table.add_column(column, justify="right")
    for method, row in means.iterrows():
        table.add_row(str(method), *("-" if row[c] != row[c] else f"{row[c]:.4f}" for c in means.columns))
    console().print(table)


TrainKind = StrEnum("TrainKind", {k: k for k in ("churn", "value", "product-recs", "content-recs")})  # type: ignore[misc]


@backtest_app.command("train")
def train_command(
    kind: TrainKind = typer.Argument(..., help="churn, value, product-recs or content-recs"),
    dataset: str = DatasetOption,
    as_of: str = typer.Option("latest", "--as-of", help="serve as of this date (default: after the data)"),
    horizon_days: int = typer.Option(90, "--horizon-days"),
    trials: int = typer.Option(0, help="Optuna trials on validation cutoffs (0: default parameters)"),
    training_cutoffs: int = typer.Option(6, help="monthly training cutoffs (churn, value)"),
    test_cutoffs: int = typer.Option(3, help="held-out monthly cutoffs that judge the candidate (churn, value)"),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="move the champion alias if it passes"),
    seed: int = typer.Option(0),
    as_json: bool = JsonOption,
) -> None:
    """Train, judge on held-out data beside the baselines and the champion, register, and promote if better."""
    from features.snapshots import resolve_as_of

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        when = resolve_as_of(target, as_of)
        if kind.value in ("churn", "value"):
            from training.train import TrainSettings, train

            settings = TrainSettings(
                as_of=when,
                horizon_days=horizon_days,
                trials=trials,
                training_cutoffs=training_cutoffs,
                test_cutoffs=test_cutoffs,
                promote=promote,
                seed=seed,
            )
            result: Any = train(target, ModelKind(kind.value), settings)
            judged_on = ", ".join(map(str, result.test_cutoffs))
        else:
            from features.recommending import RecsKind
            from training.train_recs import RecsTrainSettings, train_recs

            recs = RecsTrainSettings(as_of=when, horizon_days=horizon_days, trials=trials, promote=promote, seed=seed)
            result = train_recs(target, RecsKind(kind.value), recs)
            judged_on = f"the {horizon_days} days before {result.as_of}"
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    _print_comparison(
        result.metrics, result.rivals, f"{kind.value} v{result.version} on {judged_on} ({result.seconds:.0f} s)"
    )
    verdict = (
        "promoted to champion" if result.promoted else "not promoted: " + "; ".join(result.reasons or ["--no-promote"])
    )
    console().print(f"{kind.value} version {result.version}: {verdict}")


def _print_comparison(metrics: dict[str, float], rivals: dict[str, dict[str, float]], title: str) -> None:
    columns = list(metrics)
    table = Table(title=title)
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in {"candidate": metrics, **rivals}.items():
        table.add_row(name, *(f"{values[c]:.4f}" if c in values else "-" for c in columns))
    console().print(table)


@backtest_app.command("score")
def score_command(
    dataset: str = DatasetOption,
    out: Path = typer.Option(..., "--out", help="FILE.parquet or FILE.csv"),
    as_of: str = typer.Option("latest", "--as-of", help="score members as of this date (default: after the data)"),
    tiers_config: Path | None = typer.Option(None, "--tiers", help="tier shares (configs/tiers.yaml)"),
    as_json: bool = JsonOption,
) -> None:
    """One row per member from the champion models: churn_probability, expected_value, tier, top_reasons."""
    from features.config import load_config
    from features.snapshots import resolve_as_of
    from features.tiers import TierSettings
    from training.score import score

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        tiers = load_config(TierSettings, tiers_config, {})
        summary = score(target, resolve_as_of(target, as_of), out, tiers)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    shares = ", ".join(f"{t} {s:.0%}" for t, s in summary.tier_shares.items())
    console().print(
        f"scored {summary.members:,} members of {dataset} as of {summary.as_of} with churn "
        f"v{summary.churn_version} and value v{summary.value_version}; tiers: {shares}"
    )
    console().print(f"written to {summary.out}")


@backtest_app.command("winback")
def winback_command(
    dataset: str = DatasetOption,
    out: Path = typer.Option(..., "--out", help="FILE.parquet or FILE.csv"),
    top: int | None = typer.Option(None, "--top", min=1, help="only the N members worth most"),
    as_of: str = typer.Option("latest", "--as-of", help="score members as of this date (default: after the data)"),
) -> None:
    """The win-back push list: churn-risk members with marketing consent, the most valuable first."""
    from features.snapshots import resolve_as_of
    from training.score import winback

    with user_errors():
        target = Dataset(StateHome.from_env(), dataset).require()
        summary = winback(target, resolve_as_of(target, as_of), out, top)
    console().print(
        f"{summary['members']:,} churn-risk members on the win-back list ({summary['without_consent']:,} without "
        f"marketing consent left out), written to {out}"
    )


@backtest_app.command("promote")
def promote_command(
    kind: ModelKind = typer.Argument(..., help="churn or value"),
    version: str | None = typer.Option(None, help="registered version to promote (default: the newest)"),
) -> None:
    """Make a registered version champion, only if it beats the baselines and the champion on its test cutoffs."""
    from training.train import promote

    with user_errors():
        result = promote(StateHome.from_env(), kind, version)
    if result.promoted:
        console().print(f"{kind.value} version {result.version} is the champion")
        return
    console().print(f"{kind.value} version {result.version} not promoted: {'; '.join(result.reasons)}")
    raise typer.Exit(1)


class RecommendKind(StrEnum):
    products = "products"
    content = "content"
    similar_products = "similar-products"


@backtest_app.command("recommend")
def recommend_command(
    dataset: str = DatasetOption,
    kind: RecommendKind = typer.Option(..., "--kind", help="products, content or similar-products"),
    out: Path = typer.Option(..., "--out", help="FILE.parquet or FILE.csv"),
    k: int = typer.Option(10, "--k", min=1, max=100, help="items per member (or per product)"),
    members: Path | None = typer.Option(None, "--members", help="a file with a member_id column (default: all)"),
    exclude_seen: bool | None = typer.Option(
        None, "--exclude-seen/--include-seen", help="default: include for products, exclude for content"
    ),
    exclude: list[str] = typer.Option([], "--exclude", help="an item id never to recommend (repeatable)"),
    category: str | None = typer.Option(None, help="only items of this category / content type"),
    consent_recorded_elsewhere: bool = typer.Option(
        False,
        "--consent-recorded-elsewhere",
        help="members with no consent recorded in the dataset (e.g. no members table) agreed elsewhere; "
        "a recorded refusal still leaves a member out",
    ),
) -> None:
    """member_id, rank, item_id, score (and cold_start) for every member with marketing consent (a push list),
    from the champion recommender."""
    from features.model_registry import connect, load_recommender
    from features.privacy import with_marketing_consent
    from features.readers import read_raw
    from features.recommending import RecsKind
    from features.snapshots import Snapshot, SnapshotSettings, build_snapshot, resolve_as_of
    from training.score import check_out_path, log_batch, recommendation_records, write_scores

    with user_errors():
        check_out_path(out)
        target = Dataset(StateHome.from_env(), dataset).require()
        recs_kind = RecsKind.products if kind is not RecommendKind.content else RecsKind.contents
        recommender, version = load_recommender(connect(target.home), recs_kind)
        if kind is RecommendKind.similar_products:
            frames = [recommender.similar_items(item, k).assign(product_id=item) for item in recommender.item_ids]
            table = pd.concat(frames, ignore_index=True)[["product_id", "rank", "item_id", "score"]]
        else:
            if members is not None:
                raw = read_raw(members)
                if "member_id" not in raw.frame:
                    raise DataError(f"{members}: needs a member_id column; it has {', '.join(raw.frame.columns)}")
                wanted = raw.frame["member_id"].dropna().astype(str).str.strip().tolist()
            else:
                as_of = resolve_as_of(target, "latest")
                build_snapshot(target, SnapshotSettings(as_of=as_of))
                wanted = Snapshot(target, as_of).features()["member_id"].tolist()
            wanted, left_out = with_marketing_consent(target, wanted, consent_recorded_elsewhere)
            if left_out:
                console().print(f"{left_out:,} members without marketing consent left out of the list")
            table = recommender.recommend(wanted, k, exclude_seen, list(exclude), category)
        write_scores(table, out)
        if kind is not RecommendKind.similar_products:
            records, versions = recommendation_records(table), {recs_kind.value: str(version.version)}
            log_batch(target, f"batch/{recs_kind.value}", records, versions, resolve_as_of(target, "latest"))
    console().print(f"{len(table):,} recommendations from {recs_kind.value} v{version.version} written to {out}")
