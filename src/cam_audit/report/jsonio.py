"""JSON-safe values and tables: NaN as ``null``, infinities as strings, DataFrames with their dtypes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from cam_audit.errors import ReportError


def number(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def to_json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def from_json_number(value: Any) -> Any:
    if value is None:
        return math.nan
    if value in ("inf", "-inf"):
        return float(value)
    return value


def clean(value: Any) -> Any:
    """Make nested meta data JSON-safe (NaN -> null, tuples -> lists)."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    return to_json_number(value)


def frame_to_json(frame: pd.DataFrame) -> dict[str, Any]:
    columns = [column_to_json(frame.iloc[:, position]) for position in range(frame.shape[1])]
    return {
        "index": [clean(i) for i in frame.index.tolist()],
        "index_name": frame.index.name,
        "columns": [str(c) for c in frame.columns],
        "dtypes": [str(t) for t in frame.dtypes],
        "data": [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in frame.index],
    }


def column_to_json(column: pd.Series) -> list[Any]:
    """A column as JSON-safe Python values (``tolist`` already gives Python numbers for numeric dtypes)."""
    values = column.tolist()
    if column.dtype.kind == "f":
        return [to_json_number(v) for v in values]
    if column.dtype.kind in "iub":
        return values
    return [clean(v) for v in values]


def frame_from_json(data: Any, field: str = "table") -> pd.DataFrame:
    """The DataFrame of :func:`frame_to_json`.

    Raises:
        ReportError: ``data`` does not have that shape (a missing key, rows of the wrong length, a
            column that does not hold its dtype); the message starts with ``field``.
    """
    _check_table(data, field)
    try:
        frame = pd.DataFrame(data["data"], columns=data["columns"], index=data["index"])
    except (ValueError, TypeError) as err:
        raise ReportError(f"{field}: the rows do not fit its columns and index ({err})") from err
    frame.index.name = data.get("index_name")
    for column, dtype in zip(data["columns"], data["dtypes"], strict=True):
        try:
            if dtype.startswith("float"):
                frame[column] = frame[column].map(from_json_number).astype(dtype)
            elif dtype.startswith(("int", "bool")):
                frame[column] = frame[column].astype(dtype)
        except (ValueError, TypeError, OverflowError) as err:
            raise ReportError(f"{field}: column '{column}' does not hold {dtype} values ({err})") from err
    if len(frame.index) and all(isinstance(i, int) for i in data["index"]):
        frame.index = frame.index.astype("int64")
    return frame


_TABLE_KEYS = ("index", "columns", "dtypes", "data")


def _check_table(data: Any, field: str) -> None:
    """Raise :class:`ReportError` unless ``data`` has the shape :func:`frame_to_json` writes."""
    if not isinstance(data, Mapping):
        raise ReportError(
            f"{field} must be a table object with keys {list(_TABLE_KEYS)}, got a {type(data).__name__}"
        )
    missing = [key for key in _TABLE_KEYS if not isinstance(data.get(key), list)]
    if missing:
        raise ReportError(f"{field} has no list {missing[0]!r}; a table has the lists {list(_TABLE_KEYS)}")
    columns, dtypes, rows = data["columns"], data["dtypes"], data["data"]
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise ReportError(f"{field}: 'columns' must be distinct names, got {columns}")
    if len(dtypes) != len(columns) or not all(isinstance(t, str) for t in dtypes):
        raise ReportError(f"{field}: 'dtypes' must name one dtype per column ({len(columns)}), got {dtypes}")
    if len(rows) != len(data["index"]):
        raise ReportError(f"{field}: {len(rows)} rows in 'data' but {len(data['index'])} in 'index'")
    for position, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ReportError(
                f"{field}: row {position} must be a list of {len(columns)} values, got {row!r:.60}"
            )
