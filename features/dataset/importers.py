"""Imports outside files into a dataset's canonical tables: map, validate, merge, quarantine the rest."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from features.common.errors import DataError
from features.common.progress import say, step
from features.dataset.campaigns import CampaignPlan, plan_path
from features.dataset.contract import TABLES, TableSpec
from features.dataset.privacy import forgotten_mask
from features.dataset.readers import RawTable, read_raw
from features.dataset.store import Dataset, ParquetAppender, in_stored_order, write_json_atomic, write_parquet_atomic
from features.dataset.synthetic import SyntheticConfig, generate_chunks
from features.dataset.validation import Validated, quarantine_frame, reason_counts, validate


class TableSummary(BaseModel):
    """What one import did to one table."""

    table: str
    rows_read: int
    rows_added: int
    rows_updated: int
    rows_unchanged: int
    rows_quarantined: int
    rows_total: int
    reasons: dict[str, int]
    quarantine_file: str | None = None
    rows_forgotten: int = 0  # rows of members who asked to be forgotten: not imported again


class ImportSummary(BaseModel):
    dataset: str
    source: str
    tables: list[TableSummary]
    ignored_columns: list[str] = []
    seconds: float


def parse_assignments(pairs: list[str], option: str, spec: TableSpec) -> dict[str, str]:
    """`["member_id=CustomerID", ...]` -> {"member_id": "CustomerID"}; contract column names only."""
    out: dict[str, str] = {}
    for pair in pairs:
        canonical, sep, value = pair.partition("=")
        canonical = canonical.strip()
        if not sep or not canonical:
            raise DataError(f"{option} {pair!r}: expected CANONICAL=VALUE, e.g. {option} member_id=CustomerID")
        if canonical not in spec.column_names:
            raise DataError(
                f"{option} {pair!r}: {canonical!r} is not a column of {spec.name}; "
                f"its columns are: {', '.join(spec.column_names)}"
            )
        if canonical in out:
            raise DataError(f"{option}: {canonical!r} is given twice")
        out[canonical] = value
    return out


def canonical_frame(
    spec: TableSpec, raw: RawTable, mapping: dict[str, str], constants: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """The raw rows under contract column names, and the source columns that were not used."""
    both = sorted(set(mapping) & set(constants))
    if both:
        raise DataError(f"{', '.join(both)}: given both with --map and with --set; choose one")
    found = list(raw.frame.columns)
    absent = [src for src in mapping.values() if src not in found]
    if absent:
        raise DataError(
            f"{raw.source}: column {', '.join(repr(a) for a in absent)} not found in the header; "
            f"the file has: {', '.join(map(str, found))}"
        )
    columns: dict[str, pd.Series | str] = {}
    used: set[str] = set()
    for name in spec.column_names:
        if name in mapping:
            columns[name] = raw.frame[mapping[name]]
            used.add(mapping[name])
        elif name in constants:
            columns[name] = constants[name]
        elif name in found:
            columns[name] = raw.frame[name]
            used.add(name)
    missing = [name for name in spec.required if name not in columns]
    if missing:
        hints = " ".join(f"--map {m}=YOUR_COLUMN" for m in missing)
        raise DataError(
            f"{raw.source}: {spec.name} needs the columns {', '.join(spec.required)}; "
            f"missing {', '.join(missing)} (the file has: {', '.join(map(str, found))}); "
            f"map them with {hints}"
        )
    frame = pd.DataFrame(columns, index=raw.frame.index)
    return frame, [str(c) for c in found if c not in used]


def broken_lines_frame(raw: RawTable) -> pd.DataFrame:
    rows = pd.Index([r for r, _, _ in raw.broken_lines])
    reasons = pd.Series([why for _, why, _ in raw.broken_lines], index=rows, dtype=object)
    lines = pd.DataFrame({"line": [text for _, _, text in raw.broken_lines]}, index=rows)
    return quarantine_frame(raw.source, rows, "row", reasons, None, lines)


def store_validated(dataset: Dataset, table: str, validated: Validated, rows_read: int) -> TableSummary:
    """Merges the good rows into the dataset and the broken ones into its quarantine; rows of forgotten
    members stay out (their source files may still hold them)."""
    good = validated.good
    gone = forgotten_mask(dataset, good["member_id"]) if "member_id" in good else pd.Series(False, index=good.index)
    result = dataset.merge(table, good[~gone])
    dataset.add_quarantine(table, validated.quarantine)
    quarantined = len(validated.quarantine)
    return TableSummary(
        table=table,
        rows_read=rows_read,
        rows_added=result.added,
        rows_updated=result.updated,
        rows_unchanged=result.unchanged,
        rows_quarantined=quarantined,
        rows_total=result.total,
        reasons=reason_counts(validated.quarantine),
        quarantine_file=str(dataset.quarantine_path(table)) if quarantined else None,
        rows_forgotten=int(gone.sum()),
    )


def import_file(
    dataset: Dataset,
    table: str,
    path: Path,
    mapping: dict[str, str] | None = None,
    constants: dict[str, str] | None = None,
    encoding: str = "utf-8",
    sep: str | None = None,
    time_format: str | None = None,
) -> ImportSummary:
    """Imports one file into one canonical table of `dataset` (created when new); `sep` overrides the field
    separator of the file's extension, `time_format` the timestamp formats recognised by default."""
    started = time.perf_counter()
    spec = TABLES[table]
    with step(f"reading {path}"):
        raw = read_raw(path, encoding, sep)
    frame, ignored = canonical_frame(spec, raw, mapping or {}, constants or {})
    with step(f"validating {len(raw.frame) + len(raw.broken_lines):,} rows against the {table} contract"):
        validated = validate(spec, frame, raw.source, raw.frame, time_format)
        if raw.broken_lines:
            validated.quarantine = pd.concat([broken_lines_frame(raw), validated.quarantine], ignore_index=True)
    with step(f"writing {dataset.table_path(table)}"):
        summary = store_validated(dataset, table, validated, len(raw.frame) + len(raw.broken_lines))
        dataset.record(
            {
                "kind": "import",
                "table": table,
                "source": str(path),
                "rows_added": summary.rows_added,
                "rows_quarantined": summary.rows_quarantined,
            }
        )
    return ImportSummary(
        dataset=dataset.name,
        source=str(path),
        tables=[summary],
        ignored_columns=ignored,
        seconds=round(time.perf_counter() - started, 2),
    )


def import_synthetic(dataset: Dataset, config: SyntheticConfig) -> ImportSummary:
    """Generates the synthetic community and stores it through the same contract checks as any import, a chunk
    of members at a time (memory stays bounded at any size; each chunk's events are in time order)."""
    started = time.perf_counter()
    dataset.delete()  # a generated dataset is rebuilt whole, never mixed with an older one
    source = f"synthetic(seed={config.seed})"
    writers: dict[str, ParquetAppender] = {}
    read: dict[str, int] = {}
    quarantined: dict[str, pd.DataFrame] = {}
    truth: list[pd.DataFrame] = []
    group_truth: pd.DataFrame | None = None
    say(f"simulating {config.members:,} members over {config.months} months (seed {config.seed}) into {dataset.path}")
    try:
        for chunk in generate_chunks(config):
            for table, frame in chunk.tables.items():
                first_row = read.get(table, 0) + 1
                numbered = frame.set_axis(pd.RangeIndex(first_row, first_row + len(frame)))
                validated = validate(TABLES[table], numbered, source)
                read[table] = first_row - 1 + len(frame)
                if table not in writers:
                    writers[table] = dataset.appender(table)
                writers[table].write(in_stored_order(table, validated.good))
                quarantined[table] = pd.concat([quarantined.get(table), validated.quarantine])
            truth.append(chunk.truth)
            group_truth = chunk.group_truth if chunk.group_truth is not None else group_truth
            say(
                f"  {read['members']:,} of {config.members:,} members, {read['orders'] + read['engagements']:,} events "
                f"({time.perf_counter() - started:.0f} s)"
            )
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for table, rows in quarantined.items():
        dataset.add_quarantine(table, rows)
    write_parquet_atomic(pd.concat(truth, ignore_index=True), dataset.path / "truth.parquet")
    if group_truth is not None:
        write_parquet_atomic(group_truth, dataset.path / "truth_groups.parquet")
    if config.campaign_at is not None:  # the planted campaign's split, which its report checks the arms against
        plan = CampaignPlan(
            campaign=config.campaign, arms=["coupon"], holdout=config.campaign_holdout, audience="synthetic"
        )
        write_json_atomic(plan.model_dump(mode="json"), plan_path(dataset, config.campaign))
    summaries = [
        TableSummary(
            table=table,
            rows_read=read[table],
            rows_added=writer.rows,
            rows_updated=0,
            rows_unchanged=0,
            rows_quarantined=len(quarantined[table]),
            rows_total=writer.rows,
            reasons=reason_counts(quarantined[table]),
            quarantine_file=str(dataset.quarantine_path(table)) if len(quarantined[table]) else None,
        )
        for table, writer in writers.items()
    ]
    dataset.record(
        {
            "kind": "generate",
            "config": config.model_dump(mode="json"),
            "rows_added": {s.table: s.rows_added for s in summaries},
        }
    )
    return ImportSummary(
        dataset=dataset.name,
        source=f"synthetic({config.model_dump_json()})",
        tables=summaries,
        seconds=round(time.perf_counter() - started, 2),
    )
