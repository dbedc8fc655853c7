"""Members' rows laid out for lookups by id: sorted ids, a matrix of numbers and one of text codes, memory-mapped
when read. The online store's feature rows (serving/online/table.py) and the profile's history
(features/profiles/book.py) are laid out this way: a lookup reads one row's pages, so memory does not grow with
the community, and opening one reads no rows."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LAYOUT_FILE = "layout.json"


def by_member_id(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order lookups search: member ids as UTF-8 bytes."""
    return frame.sort_values("member_id", key=lambda s: s.str.encode("utf-8"), kind="stable")


def write_columns(
    folder: Path,
    frame: pd.DataFrame,
    text: list[str],
    meta: dict[str, Any],
    arrays: dict[str, dict[str, np.ndarray]] | None = None,
) -> None:
    """`frame` (member_id and its columns; `text` are the text ones) laid out in `folder`, with `meta` in its
    layout file and `arrays` as NAME.npz files beside it. Written to a temporary folder and renamed: a reader sees
    the whole layout or none."""
    frame = by_member_id(frame)
    columns = [c for c in frame.columns if c != "member_id"]
    numbers = [c for c in columns if c not in text]
    tmp = folder.with_name(f".{folder.name}-{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = np.array([m.encode("utf-8") for m in frame["member_id"].astype(str)], dtype=bytes)
    np.save(tmp / "ids.npy", ids if len(ids) else np.array([], dtype="S1"))
    matrix = np.column_stack([floats(frame[c]) for c in numbers]) if numbers else np.empty((len(frame), 0))
    np.save(tmp / "numbers.npy", np.ascontiguousarray(matrix, dtype=np.float64))
    vocab: dict[str, list[str]] = {}
    codes = np.full((len(frame), len(text)), -1, dtype=np.int32)
    for j, name in enumerate(text):
        categorical = pd.Categorical(frame[name].astype("string").astype(object))
        vocab[name] = [str(c) for c in categorical.categories]
        codes[:, j] = categorical.codes
    np.save(tmp / "codes.npy", codes)
    for name, named in (arrays or {}).items():
        np.savez(tmp / f"{name}.npz", **named)
    layout = {**meta, "columns": columns, "number_columns": numbers, "text_columns": text, "vocab": vocab}
    (tmp / LAYOUT_FILE).write_text(json.dumps(layout))
    if folder.exists():  # another process laid it out meanwhile: theirs is the same
        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp.rename(folder)


@dataclass(frozen=True)
class Columns:
    """A layout written by `write_columns`, memory-mapped."""

    ids: np.ndarray  # bytes, sorted
    numbers: np.ndarray  # members x number columns (float64; NaN is empty, booleans are 0/1)
    codes: np.ndarray  # members x text columns (int32 into `vocab`; -1 is empty)
    number_columns: list[str]
    text_columns: list[str]
    vocab: dict[str, list[str]]
    layout: dict[str, Any]

    @classmethod
    def open(cls, folder: Path) -> Columns:
        layout = json.loads((folder / LAYOUT_FILE).read_text())
        return cls(
            np.load(folder / "ids.npy", mmap_mode="r"),
            np.load(folder / "numbers.npy", mmap_mode="r"),
            np.load(folder / "codes.npy", mmap_mode="r"),
            layout["number_columns"],
            layout["text_columns"],
            layout["vocab"],
            layout,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, member_id: str) -> int | None:
        key = member_id.encode()
        at = int(np.searchsorted(self.ids, key))
        return at if at < len(self.ids) and self.ids[at] == key else None

    def arrays(self, at: np.ndarray | slice) -> dict[str, np.ndarray]:
        """Every column's values at the positions: numbers as float (NaN empty), text as objects (None empty)."""
        out: dict[str, np.ndarray] = {}
        numbers, codes = np.asarray(self.numbers[at]), np.asarray(self.codes[at])
        for j, name in enumerate(self.number_columns):
            out[name] = numbers[:, j]
        for j, name in enumerate(self.text_columns):
            vocab = np.array([*self.vocab[name], None], dtype=object)
            out[name] = vocab[codes[:, j]]  # -1: the None at the end
        return out


def floats(series: pd.Series) -> np.ndarray:
    """A column as float64 (NaN for empty; booleans 0/1; text that is no number: NaN)."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiub":  # plain numbers: no conversion
        return series.to_numpy(dtype=float)
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):  # nullable: Int64, boolean
        return series.astype("Float64").to_numpy(float, na_value=np.nan)
    return pd.to_numeric(series.astype(object), errors="coerce").astype("Float64").to_numpy(float, na_value=np.nan)
