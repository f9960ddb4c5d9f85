"""JSON-safe values and tables: NaN as ``null``, infinities as strings, DataFrames with their dtypes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd


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


def frame_from_json(data: Mapping[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(data["data"], columns=data["columns"], index=data["index"])
    frame.index.name = data.get("index_name")
    for column, dtype in zip(data["columns"], data["dtypes"], strict=True):
        if dtype.startswith("float"):
            frame[column] = frame[column].map(from_json_number).astype(dtype)
        elif dtype.startswith(("int", "bool")):
            frame[column] = frame[column].astype(dtype)
    if len(frame.index) and all(isinstance(i, int) for i in data["index"]):
        frame.index = frame.index.astype("int64")
    return frame
