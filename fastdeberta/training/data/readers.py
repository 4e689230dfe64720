"""Row readers for fine-tuning data: CSV, TSV, JSONL and Parquet files.

Every row comes back with where it was found (``Row.where``: ``"train.csv:17"``), so that a later
check (a missing field, an unknown label) can name the file and line. Problems found while reading
(an empty file, a line that is not JSON, a CSV row with too many or too few fields) raise
:class:`DataError`, a ``ValueError`` naming the file, the line and what to do.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InvalidInputError

__all__ = ["TABLE_TYPES", "DataError", "Row", "column_values", "read_rows", "require_columns"]

TABLE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


class DataError(InvalidInputError):
    """A data file that cannot be used as given: the message names the file, the line and the fix."""


@dataclass
class Row:
    """One record of a data file and where it came from (``path:line``; ``path:row N`` for Parquet)."""

    data: dict[str, Any]
    where: str

    def get(self, column: str, default: Any = None) -> Any:
        return self.data.get(column, default)

    def __getitem__(self, column: str) -> Any:
        return self.data[column]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a data file ({', '.join(TABLE_TYPES)})")


def read_rows(path: str | os.PathLike, *, allow_empty: bool = False) -> list[Row]:
    """The records of a .csv / .tsv / .jsonl / .parquet file in file order.

    ``.json`` is read as JSON Lines when each line is an object, else as one JSON array of objects.
    Raises :class:`DataError` for a missing, empty (unless ``allow_empty``) or malformed file.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_TYPES:
        raise DataError(f"unsupported data file type {suffix or '(none)'!r} for {path}; use one of "
                        f"{', '.join(TABLE_TYPES)}")
    if suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); re-save it as UTF-8") from err
        if suffix in (".csv", ".tsv"):
            rows = _read_csv(text, path, "\t" if suffix == ".tsv" else ",")
        elif suffix == ".json" and text.lstrip().startswith("["):
            rows = _read_json_array(text, path)
        else:
            rows = _read_jsonl(text, path)
    if not rows and not allow_empty:
        raise DataError(f"{path} holds no records; it is empty (or has only a header line)")
    return rows


def _read_jsonl(text: str, path: Path) -> list[Row]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{n}: not valid JSON ({err.msg} at column {err.colno}); each line must "
                            "be one JSON object") from err
        if not isinstance(value, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, found a {type(value).__name__}")
        rows.append(Row(value, f"{path}:{n}"))
    return rows


def _read_json_array(text: str, path: Path) -> list[Row]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    rows = []
    for i, value in enumerate(values):
        if not isinstance(value, dict):
            raise DataError(f"{path}: item {i} is a {type(value).__name__}; expected a list of JSON objects")
        rows.append(Row(value, f"{path}:item {i}"))
    return rows


def _read_csv(text: str, path: Path, delimiter: str) -> list[Row]:
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as err:
        raise DataError(f"{path}:1: malformed header line ({err})") from err
    if len(set(header)) != len(header):
        duplicates = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{path}:1: duplicate column names {duplicates}; rename them")
    rows = []
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataError(f"{path}:{reader.line_num}: malformed line ({err})") from err
        if not fields:          # a blank line
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}:{reader.line_num}: {len(fields)} fields, but the header has {len(header)} "
                            f"({header}); quote values that contain {delimiter!r}")
        rows.append(Row(dict(zip(header, fields)), f"{path}:{reader.line_num}"))
    return rows


def _read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DataError("reading .parquet needs pyarrow: pip install pyarrow (or use .csv / .jsonl)") from err
    try:
        table = pq.read_table(str(path))
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} is not a readable Parquet file: {err}") from err
    return [Row(record, f"{path}:row {i + 1}") for i, record in enumerate(table.to_pylist())]


def require_columns(rows: Sequence[Row], columns: Iterable[str], path: str | os.PathLike,
                    option: dict[str, str] | None = None) -> None:
    """Raise :class:`DataError` naming the first row (file:line) that lacks one of ``columns``.

    ``option`` maps a column to the command-line option that picks it (for the hint).
    """
    option = option or {}
    for column in columns:
        for row in rows:
            value = row.data.get(column)
            if value is None:
                found = sorted(row.data)
                hint = f"; pick another with {option[column]}" if column in option else ""
                what = "has no" if column not in row.data else "has an empty"
                raise DataError(f"{row.where}: {what} column/field {column!r} (found {found}){hint}")


def column_values(rows: Sequence[Row], column: str) -> list[Any]:
    return [row.data[column] for row in rows]
