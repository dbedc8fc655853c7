"""Reads outside files (CSV, gzipped CSV, TSV, Parquet) into raw frames whose index is the data row number."""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.common.errors import DataError

_DELIMITED = {".csv": ",", ".tsv": "\t", ".txt": ","}
_PARQUET = {".parquet", ".pq"}
# What `--sep` accepts: a name, or any single character.
WHITESPACE = r"\s+"
SEPARATORS = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|", "whitespace": WHITESPACE}


def separator(name: str) -> str:
    """The field separator `--sep NAME` stands for; a clear error for anything else."""
    if name in SEPARATORS:
        return SEPARATORS[name]
    if len(name) == 1:
        return name
    raise DataError(f"--sep {name!r}: use one character, or one of {', '.join(SEPARATORS)}")


@dataclass
class RawTable:
    """A file's rows as read: text columns stay strings, so parsing (and its errors) happens in validation."""

    source: str
    frame: pd.DataFrame  # index: 1-based data row number (the header is row 0)
    # Lines that could not be split into the header's columns: (row number, reason, raw text).
    broken_lines: list[tuple[int, str, str]] = field(default_factory=list)


def file_format(path: Path) -> tuple[str, bool]:
    """('csv'|'tsv'|'parquet', gzipped) from the file name."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gzipped and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if ext in _PARQUET and not gzipped:
        return "parquet", False
    if ext in _DELIMITED:
        return ("tsv" if ext == ".tsv" else "csv"), gzipped
    raise DataError(
        f"{path}: unknown file type {''.join(path.suffixes) or '(no extension)'}; "
        "use .csv, .csv.gz, .tsv, .tsv.gz or .parquet"
    )


def read_raw(path: Path, encoding: str = "utf-8", sep: str | None = None) -> RawTable:
    """Reads a whole file; raises DataError when it cannot be read at all. `sep` (see `separator`) overrides the
    field separator the file's extension implies."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    fmt, gzipped = file_format(path)
    if fmt == "parquet":
        return _read_parquet(path)
    return _read_delimited(path, sep or ("\t" if fmt == "tsv" else ","), gzipped, encoding)


def _read_parquet(path: Path) -> RawTable:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return RawTable(str(path), frame)


def _read_delimited(path: Path, sep: str, gzipped: bool, encoding: str) -> RawTable:
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=encoding,
            compression="gzip" if gzipped else None,
            skipinitialspace=False,
        )
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not valid {encoding} text ({exc.reason} at byte {exc.start}); "
            "re-save it as UTF-8 or pass --encoding (e.g. --encoding latin-1)"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty; expected a header row naming the columns") from exc
    except pd.errors.ParserError:
        # Some lines have the wrong number of fields: read line by line so each one is named and set aside.
        return _read_ragged(path, sep, gzipped, encoding)
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    _check_header(path, list(frame.columns))
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return RawTable(str(path), frame)


def _read_ragged(path: Path, sep: str, gzipped: bool, encoding: str) -> RawTable:
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding=encoding, newline="") as handle:
            rows = [line.split() for line in handle] if sep == WHITESPACE else list(csv.reader(handle, delimiter=sep))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc.reason}); pass --encoding") from exc
    header, body = rows[0], rows[1:]
    _check_header(path, header)
    width = len(header)
    good: list[list[str]] = []
    good_rows: list[int] = []
    broken: list[tuple[int, str, str]] = []
    for number, row in enumerate(body, start=1):
        if len(row) == width:
            good.append(row)
            good_rows.append(number)
        elif row:  # blank lines carry nothing
            reason = f"line has {len(row)} fields, the header has {width}"
            broken.append((number, reason, _join(row, sep)))
    frame = pd.DataFrame(good, columns=header, index=pd.Index(good_rows), dtype="object")
    frame = frame.replace("", None)
    return RawTable(str(path), frame, broken)


def _join(fields: list[str], sep: str) -> str:
    if sep == WHITESPACE:
        return " ".join(fields)
    out = io.StringIO()
    csv.writer(out, delimiter=sep).writerow(fields)
    return out.getvalue().rstrip("\r\n")


_LOOKS_LIKE_VALUE = re.compile(r"^\s*[-+]?(\d+([.,:/ -]\d+)*)\s*$")
_LOOKS_LIKE_DATE_OR_DECIMAL = re.compile(r"^\s*(\d{4}-\d{2}-\d{2}.*|[-+]?\d+\.\d+)\s*$")


def _check_header(path: Path, header: list[str]) -> None:
    """A header row of numbers or dates means the file has no header: say so instead of guessing."""
    names = [str(h) for h in header]
    # Column names are never dates or decimals, and rarely all numbers.
    if names and (
        all(_LOOKS_LIKE_VALUE.match(h) for h in names) or any(_LOOKS_LIKE_DATE_OR_DECIMAL.match(h) for h in names)
    ):
        raise DataError(
            f"{path}: the first line ({', '.join(names)}) looks like data, not column names; "
            "add a header row naming the columns"
        )
    blanks = [i + 1 for i, h in enumerate(names) if h.startswith("Unnamed:") or not h.strip()]
    if blanks and len(blanks) == len(names):
        raise DataError(f"{path}: the header row is empty; the first line must name the columns")
