"""Checks rows against the data contract: good rows come out typed, broken rows come out with their reason."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.dataset.contract import Column, Kind, TableSpec

QUARANTINE_COLUMNS = ("source", "row", "field", "reason", "detail", "raw")
_EARLIEST = pd.Timestamp("1990-01-01")
_LATEST = pd.Timestamp("2100-01-01")
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


@dataclass
class Validated:
    good: pd.DataFrame  # every contract column, typed; index is the source row number
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    rows: list[dict] | None = None  # the good rows in their JSON form, where the check made them (row_checks.py)


class _Problems:
    """The first problem found on each row, with the field it is in."""

    def __init__(self, index: pd.Index) -> None:
        self.field = pd.Series(None, index=index, dtype=object)
        self.reason = pd.Series(None, index=index, dtype=object)
        self.detail = pd.Series(None, index=index, dtype=object)

    def add(self, mask: pd.Series, field: str, reason: str, detail: pd.Series | str | None = None) -> None:
        new = mask & self.field.isna()
        if not new.any():
            return
        self.field[new] = field
        self.reason[new] = reason
        if isinstance(detail, pd.Series):
            self.detail[new] = detail[new].astype(str)
        elif detail is not None:
            self.detail[new] = detail

    @property
    def mask(self) -> pd.Series:
        return self.field.notna()


def _as_text(values: pd.Series) -> pd.Series:
    """Strings with surrounding blanks removed; empty becomes missing.

    Arrow-backed strings: their string kernels are vectorised, Python's run a loop per value.
    """
    text = values.astype("string[pyarrow]").str.strip()
    return text.mask(text == "")


def _coerce_id(values: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(values):
        # Spreadsheets turn integer ids into floats (17850 -> 17850.0); the id is the integer.
        whole = values.notna() & (values == np.floor(values))
        out = values.astype("string")
        out[whole] = values[whole].astype("int64").astype("string")
        return out
    text = _as_text(values)
    floaty = text.str.fullmatch(r"\d+\.0+").fillna(False)
    if floaty.any():
        text[floaty] = text[floaty].str.replace(r"\.0+$", "", regex=True)
    return text


def _coerce_category(values: pd.Series) -> pd.Series:
    text = _as_text(values).str.lower()
    return text.str.replace(r"[\s\-]+", "_", regex=True)


def _coerce_number(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = _as_text(values)
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    # pandas' string parser can land one unit in the last place off (it read 90.75255727209151 as ...152, found by
    # tests/features/test_row_checks.py); Python's float is exact, so the value stored is the value sent.
    parsed = numbers.notna()
    if parsed.any():
        numbers[parsed] = text[parsed].map(_exact_float).fillna(numbers[parsed])
    return numbers


def _exact_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _coerce_timestamp(values: pd.Series, time_format: str | None = None) -> tuple[pd.Series, pd.Series]:
    """ISO dates, ISO datetimes (any offset, converted to UTC) and unix epoch seconds, as naive UTC; or, with a
    `time_format` (strftime codes, e.g. %Y%m%d), exactly that format.

    Returns the timestamps and a mask of values that parsed but fall outside 1990-2100 (e.g. epoch
    milliseconds read as seconds).
    """
    if time_format is not None:
        parsed = pd.to_datetime(_as_text(values), format=time_format, errors="coerce", utc=True)
        out = parsed.dt.tz_localize(None).astype("datetime64[ns]")
        out_of_range = (out < _EARLIEST) | (out >= _LATEST)
        return out.mask(out_of_range), out_of_range
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        out = values.astype("datetime64[ns]")
        return out, (out < _EARLIEST) | (out >= _LATEST)
    text = values if pd.api.types.is_numeric_dtype(values) else _as_text(values)
    epoch = pd.to_numeric(text, errors="coerce")
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    in_range = epoch.between(_EARLIEST.timestamp(), _LATEST.timestamp(), inclusive="left")
    out[in_range] = pd.to_datetime(epoch[in_range], unit="s")
    out_of_range = epoch.notna() & ~in_range
    rest = text.notna() & epoch.isna()
    if rest.any():
        parsed = pd.to_datetime(text[rest], format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
        out[rest] = parsed
        out_of_range |= (out < _EARLIEST) | (out >= _LATEST)
        out[out_of_range] = pd.NaT
    return out, out_of_range


def _coerce_bool(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    text = _as_text(values).str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
    return out


def tags_of(value: object) -> list[str] | None:
    """A value's tags as a list (None where there are none): a list or array as it is, text split on `|`."""
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [str(v) for v in value if v is not None and not (isinstance(v, float) and np.isnan(v))]
    elif value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    else:
        parts = str(value).split("|")
    kept = list(dict.fromkeys(p.strip().lower() for p in parts if p.strip()))
    return kept or None


def _coerce_tags(values: pd.Series) -> pd.Series:
    return pd.Series([tags_of(v) for v in values], index=values.index, dtype=object)


def _coerce(col: Column, values: pd.Series, problems: _Problems, time_format: str | None = None) -> pd.Series:
    """Typed values; records missing, unparseable and disallowed values as problems."""
    if col.kind is Kind.TAGS:  # several values: none can be unparseable, an empty list is no tags
        out = _coerce_tags(values)
        if not col.nullable:
            problems.add(out.isna(), col.name, "missing")
        return out
    given = values.notna()
    if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
        given &= (values.astype("string[pyarrow]").str.strip() != "").fillna(False)
    if col.kind is Kind.ID:
        out = _coerce_id(values)
    elif col.kind is Kind.TEXT:
        out = _as_text(values)
    elif col.kind is Kind.CATEGORY:
        out = _coerce_category(values)
        if col.allowed is not None:
            unknown = out.notna() & ~out.isin(col.allowed)
            problems.add(unknown, col.name, f"unknown value (allowed: {', '.join(col.allowed)})", values)
    elif col.kind is Kind.NUMBER:
        out = _coerce_number(values)
        problems.add(given & out.isna(), col.name, "not a number", values)
        if col.non_negative:
            problems.add(out < 0, col.name, "negative", values)
        if col.maximum is not None:
            problems.add(out > col.maximum, col.name, f"above the scale's maximum {col.maximum:g}", values)
    elif col.kind is Kind.TIMESTAMP:
        out, out_of_range = _coerce_timestamp(values, time_format)
        problems.add(out_of_range, col.name, "timestamp out of range 1990-2100", values)
        problems.add(given & out.isna(), col.name, "unparseable timestamp", values)
    elif col.kind is Kind.BOOL:
        out = _coerce_bool(values)
        problems.add(given & out.isna(), col.name, "not a boolean (use true/false, yes/no or 1/0)", values)
    else:  # pragma: no cover - every Kind is handled above
        raise AssertionError(col.kind)
    if not col.nullable:
        problems.add(out.isna() & ~given, col.name, "missing")
    if col.kind in (Kind.ID, Kind.TEXT, Kind.CATEGORY):
        out = out.astype("string")  # one string type on disk and in memory, whatever the input was
    return out


def stored_dtype(col: Column) -> str:
    """The pandas dtype a column is stored as, once checked."""
    kinds = {Kind.TIMESTAMP: "datetime64[ns]", Kind.NUMBER: "float64", Kind.BOOL: "boolean", Kind.TAGS: "object"}
    return kinds.get(col.kind, "string")


def _empty_column(col: Column, index: pd.Index) -> pd.Series:
    if col.kind is Kind.TAGS:
        return pd.Series([None] * len(index), index=index, dtype=object)
    dtype = stored_dtype(col)
    missing = {"datetime64[ns]": pd.NaT, "float64": np.nan}.get(dtype, pd.NA)
    return pd.Series(missing, index=index, dtype=dtype)


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    """A table with no rows and the contract's column types."""
    index = pd.RangeIndex(0)
    return pd.DataFrame({col.name: _empty_column(col, index) for col in spec.columns})


def conformed(spec: TableSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every contract column, in contract order: a column it lacks (a table stored before the
    column was added to the contract) is empty."""
    missing = {c.name: _empty_column(c, frame.index) for c in spec.columns if c.name not in frame.columns}
    return (frame.assign(**missing) if missing else frame)[list(spec.column_names)]


def arrow_schema(spec: TableSpec) -> pa.Schema:
    """How a table is stored: its columns' types, tags as lists of strings (even where every row has none)."""
    schema = pa.Schema.from_pandas(empty_frame(spec), preserve_index=False)
    for col in spec.columns:
        if col.kind is Kind.TAGS:
            schema = schema.set(schema.get_field_index(col.name), pa.field(col.name, pa.list_(pa.string())))
    return schema


def _check_orders(table: pd.DataFrame, problems: _Problems) -> None:
    """Only a return may give goods or money back, and a return must."""
    table["is_return"] = table["is_return"].fillna(False)
    is_return = table["is_return"].astype(bool)
    for field in ("quantity", "amount"):
        negative = table[field] < 0
        problems.add(negative & ~is_return, field, "negative where not a return", table[field])
        problems.add((table[field] > 0) & is_return, field, "positive on a return line", table[field])


def _check_duplicates(spec: TableSpec, table: pd.DataFrame, problems: _Problems) -> None:
    candidates = table[~problems.mask]
    dup = candidates.duplicated(list(spec.key), keep="first")
    if not dup.any():
        return
    # Name the first row with the same key, so the user can compare the two.
    first_row = (
        candidates.reset_index(names="_row").groupby(list(spec.key), dropna=False, sort=False)["_row"].transform("min")
    )
    first_row.index = candidates.index
    whole_row = spec.key == spec.column_names
    detail = ("same values as row " if whole_row else f"same {', '.join(spec.key)} as row ") + first_row.astype(str)
    mask = pd.Series(False, index=table.index)
    mask[dup[dup].index] = True
    problems.add(mask, "row" if whole_row else spec.key[-1], "duplicate key", detail.reindex(table.index))


def validate(
    spec: TableSpec,
    frame: pd.DataFrame,
    source: str,
    raw: pd.DataFrame | None = None,
    time_format: str | None = None,
) -> Validated:
    """Types every contract column of `frame` and sets aside each row that breaks the contract.

    `frame` holds canonical column names (extra columns are ignored); `raw` holds the rows as they came from
    the source, written to the quarantine so the user sees exactly what was rejected. The index of both is
    the row number in the source. `time_format` reads every timestamp column in that strftime format.
    """
    problems = _Problems(frame.index)
    typed = pd.DataFrame(index=frame.index)
    for col in spec.columns:
        if col.name in frame.columns:
            typed[col.name] = _coerce(col, frame[col.name], problems, time_format)
        else:
            typed[col.name] = _empty_column(col, frame.index)
    if spec.name == "orders":
        _check_orders(typed, problems)
    _check_duplicates(spec, typed, problems)

    bad = problems.mask
    quarantine = quarantine_frame(
        source,
        frame.index[bad],
        problems.field[bad],
        problems.reason[bad],
        problems.detail[bad],
        (raw if raw is not None else frame).loc[bad],
    )
    return Validated(good=typed[~bad], quarantine=quarantine)


def quarantine_frame(
    source: str,
    rows: pd.Index,
    field: pd.Series | str,
    reason: pd.Series | str,
    detail: pd.Series | str | None,
    raw: pd.DataFrame,
) -> pd.DataFrame:
    """Rows set aside, with the source row number, the field at fault, the reason and the row as it came."""
    raw_json = [
        json.dumps({k: jsonable(v) for k, v in rec.items()}, ensure_ascii=False)
        for rec in raw.to_dict(orient="records")
    ]
    out = pd.DataFrame(
        {
            "source": source,
            "row": np.asarray(rows, dtype="int64"),
            "field": np.asarray(field if not isinstance(field, str) else [field] * len(rows), dtype=object),
            "reason": np.asarray(reason if not isinstance(reason, str) else [reason] * len(rows), dtype=object),
            "detail": np.asarray(detail if isinstance(detail, pd.Series) else [detail] * len(rows), dtype=object),
            "raw": raw_json,
        },
        columns=list(QUARANTINE_COLUMNS),
    )
    return out.astype({c: "string" for c in QUARANTINE_COLUMNS if c != "row"})


def jsonable(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):  # tags
        return [jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """'field: reason' -> number of rows, most frequent first."""
    if quarantine.empty:
        return {}
    labels = quarantine["field"].fillna("row") + ": " + quarantine["reason"]
    return {str(k): int(v) for k, v in labels.value_counts().items()}
