"""The data contract checked row by row, for the few rows of a posted batch (`POST /events`, `POST /items`).

validation.py checks a file column by column in pandas: fast for a million rows, but each pandas call costs tens
of microseconds whatever its length, and a posted order paid ~60 ms for its nine columns. Here each value is read
with plain Python under the same rules (the contract's columns, kinds, allowed values, bounds, the orders' return
rules and the duplicate-key rule, the same reasons and details). It types only what it can read with certainty the
way pandas does (JSON's numbers, booleans, ISO times, plain ASCII text); anything else (a time in another format, a
number written oddly, non-ASCII categories) sends the whole batch to `validate`, so a verdict never depends on
which path read it (tests/features/test_row_checks.py compares both on random rows).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from features.dataset.contract import Column, Kind, TableSpec
from features.dataset.validation import (
    _EARLIEST,
    _FALSE,
    _LATEST,
    _TRUE,
    Validated,
    empty_frame,
    jsonable,
    quarantine_frame,
    stored_dtype,
    tags_of,
)

ROW_CHECK_MAX = 200  # rows: above it pandas' per-column cost is the smaller one
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_FLOATY_ID = re.compile(r"\d+\.0+")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?")
_SEPARATORS = re.compile(r"[\s\-]+")
_EARLIEST_S, _LATEST_S = _EARLIEST.timestamp(), _LATEST.timestamp()


class Unsure(Exception):
    """A value this path does not read with certainty as pandas would: the batch goes to `validate`."""


Problem = tuple[str, str, str | None]  # field, reason, detail


def validate_rows(
    spec: TableSpec, rows: list[dict[str, Any]], source: str, positions: list[int] | None = None
) -> Validated | None:
    """`validate` for a few rows given as dicts (`positions`: their row numbers, default 0, 1, ...), or None where
    a value is one only `validate` reads (the caller then validates the batch there)."""
    numbers = positions if positions is not None else list(range(len(rows)))
    try:
        typed, problems = zip(*(_row(spec, row) for row in rows), strict=True) if rows else ((), ())
    except Unsure:
        return None
    typed, problems = list(typed), list(problems)
    if spec.name == "orders":
        for i, row in enumerate(typed):
            row["is_return"] = bool(row["is_return"]) if row["is_return"] is not None else False
            problems[i] = problems[i] or _return_problem(row)
    _duplicates(spec, typed, problems, numbers)
    good = [i for i, p in enumerate(problems) if p is None]
    bad = [i for i, p in enumerate(problems) if p is not None]
    if good:
        frame = pd.DataFrame.from_records(
            [typed[i] for i in good], columns=list(spec.column_names), index=[numbers[i] for i in good]
        )
        frame = frame.astype({c.name: stored_dtype(c) for c in spec.columns if c.kind is not Kind.TAGS})
    else:
        frame = empty_frame(spec)
    rows_json = [{name: jsonable(value) for name, value in typed[i].items()} for i in good]
    if not bad:
        return Validated(good=frame, quarantine=_no_quarantine(), rows=rows_json)
    quarantine = quarantine_frame(
        source,
        pd.Index([numbers[i] for i in bad], dtype="int64"),
        pd.Series([problems[i][0] for i in bad], dtype=object),  # type: ignore[index]
        pd.Series([problems[i][1] for i in bad], dtype=object),  # type: ignore[index]
        pd.Series([problems[i][2] for i in bad], dtype=object),  # type: ignore[index]
        pd.DataFrame.from_records([rows[i] for i in bad], columns=list(spec.column_names)),
    )
    return Validated(good=frame, quarantine=quarantine, rows=rows_json)


@cache
def _no_quarantine() -> pd.DataFrame:
    return quarantine_frame("", pd.Index([], dtype="int64"), "", "", None, pd.DataFrame())


def _row(spec: TableSpec, row: dict[str, Any]) -> tuple[dict[str, Any], Problem | None]:
    typed: dict[str, Any] = {}
    first: Problem | None = None
    for col in spec.columns:
        value, problem = _value(col, row.get(col.name))
        typed[col.name] = value
        first = first or problem
    return typed, first


def _given(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise Unsure  # pyarrow's and Python's ideas of whitespace and case differ outside printable ASCII
    return value.strip() or None


def _value(col: Column, value: Any) -> tuple[Any, Problem | None]:
    """The value typed as `_coerce` types it, and its first problem."""
    if isinstance(value, bool) and col.kind is not Kind.BOOL:
        raise Unsure
    if col.kind is Kind.TAGS:
        tags = tags_of(value)
        return tags, (col.name, "missing", None) if tags is None and not col.nullable else None
    given = _given(value)
    problem: Problem | None = None
    detail = None if value is None else str(value)
    out: Any
    if col.kind in (Kind.ID, Kind.TEXT, Kind.CATEGORY):
        out = _string(col, value)
        if col.kind is Kind.CATEGORY and col.allowed is not None and out is not None and out not in col.allowed:
            problem = (col.name, f"unknown value (allowed: {', '.join(col.allowed)})", detail)
    elif col.kind is Kind.NUMBER:
        out = _number(value)
        if given and math.isnan(out):
            problem = (col.name, "not a number", detail)
        elif col.non_negative and out < 0:
            problem = (col.name, "negative", detail)
        elif col.maximum is not None and out > col.maximum:
            problem = (col.name, f"above the scale's maximum {col.maximum:g}", detail)
    elif col.kind is Kind.TIMESTAMP:
        out, out_of_range = _timestamp(value)
        if out_of_range:
            problem = (col.name, "timestamp out of range 1990-2100", detail)
        elif given and out is None:
            problem = (col.name, "unparseable timestamp", detail)
    elif col.kind is Kind.BOOL:
        out = _bool(value)
        if given and out is None:
            problem = (col.name, "not a boolean (use true/false, yes/no or 1/0)", detail)
    else:  # pragma: no cover - every Kind is handled above
        raise AssertionError(col.kind)
    missing = out is None or (isinstance(out, float) and math.isnan(out))
    if problem is None and not col.nullable and missing and not given:
        problem = (col.name, "missing", None)
    return out, problem


def _string(col: Column, value: Any) -> str | None:
    if isinstance(value, int) or (isinstance(value, float) and col.kind is Kind.ID and value.is_integer()):
        if col.kind is not Kind.ID or abs(value) >= 1e15:  # pandas writes larger floats as 1e+15
            raise Unsure
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return None
        raise Unsure
    text = _text(value)
    if text is None:
        return None
    if col.kind is Kind.ID and _FLOATY_ID.fullmatch(text):
        return text.split(".")[0]
    if col.kind is Kind.CATEGORY:
        return _SEPARATORS.sub("_", text.lower())
    return text


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, int) and abs(value) >= 2**53:
        raise Unsure
    if isinstance(value, (int, float)):
        return float(value)
    text = _text(value)
    if text is None:
        return math.nan
    if not _NUMBER.fullmatch(text):
        raise Unsure
    return float(text)  # as validation's _coerce_number reads it: Python's float, exact


def _timestamp(value: Any) -> tuple[pd.Timestamp | None, bool]:
    """The time as naive UTC (None: none or unreadable), and whether it parsed outside 1990-2100."""
    if value is None:
        return None, False
    if isinstance(value, int):
        if abs(value) >= 2**53:
            raise Unsure
        if not _EARLIEST_S <= value < _LATEST_S:
            return None, True
        return pd.Timestamp(value, unit="s"), False
    if isinstance(value, float):
        if math.isnan(value):
            return None, False
        raise Unsure  # a fraction of a second: pandas' rounding decides
    text = _text(value)
    if text is None:
        return None, False
    if not _ISO.fullmatch(text) or not 1900 <= int(text[:4]) < 2200:
        raise Unsure  # other forms, and years pandas cannot hold in nanoseconds: pandas decides
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:  # a month 13, say
        raise Unsure from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    stamp = pd.Timestamp(parsed)
    if not _EARLIEST <= stamp < _LATEST:
        return None, True
    return stamp, False


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    text = _text(value) if isinstance(value, str) else str(value)
    if text is None:
        return None
    lowered = text.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _return_problem(row: dict[str, Any]) -> Problem | None:
    """Only a return may give goods or money back, and a return must (validation's `_check_orders`)."""
    for field in ("quantity", "amount"):
        value = row[field]
        if value is None or math.isnan(value):
            continue
        if value < 0 and not row["is_return"]:
            return field, "negative where not a return", str(value)
        if value > 0 and row["is_return"]:
            return field, "positive on a return line", str(value)
    return None


def _duplicates(
    spec: TableSpec, typed: list[dict[str, Any]], problems: list[Problem | None], numbers: list[int]
) -> None:
    """A row whose key an earlier good row has is a duplicate, naming that row (validation's rule)."""
    whole_row = spec.key == spec.column_names
    first: dict[tuple, int] = {}
    for i, row in enumerate(typed):
        if problems[i] is not None:
            continue
        key = tuple(_comparable(row[k]) for k in spec.key)
        if key not in first:
            first[key] = i
            continue
        detail = ("same values as row " if whole_row else f"same {', '.join(spec.key)} as row ") + str(
            numbers[first[key]]
        )
        problems[i] = ("row" if whole_row else spec.key[-1], "duplicate key", detail)


def _comparable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return tuple(value) if isinstance(value, list) else value
