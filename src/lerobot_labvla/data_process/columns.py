"""Check a data file's columns against `meta/info.json` the way LeRobot's loader will read it.

LeRobot loads every data file with `datasets.Dataset.from_parquet(features=...)`, the features
built from info.json by `get_hf_features_from_features`: one column per non-video feature, a
scalar `Value` for shape (1,), a fixed-length `Sequence` for shape (D,), `Image` for images.
A missing or extra column, or a vector of another length, fails that load (or, for a missing
column, yields `None` values that fail later in training); a numeric column of another width
(float64 for float32, int32 for int64) is cast on load and only loses precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# LeRobot's language annotation columns have their own nested types (lerobot.datasets.language).
LANGUAGE_COLUMNS = ("language_persistent", "language_events")


@dataclass
class ColumnProblem:
    column: str
    severity: str  # "error": LeRobot cannot load the file; "warning": it casts the column on load
    message: str


def expected_columns(features: dict[str, dict]) -> dict[str, dict]:
    """The columns LeRobot expects in every data file: all features except videos."""
    return {k: ft for k, ft in features.items() if ft["dtype"] != "video"}


def check_columns(schema: pa.Schema, features: dict[str, dict]) -> list[ColumnProblem]:
    """What in `schema` (one data file) disagrees with info.json's `features`."""
    expected = expected_columns(features)
    names = schema.names
    out = [ColumnProblem(k, "error", f"column {k!r} is missing") for k in expected if k not in names]
    out += [ColumnProblem(k, "error", f"column {k!r} is not in info.json's features") for k in names if k not in expected]
    for k in names:
        if k in expected and k not in LANGUAGE_COLUMNS:
            problem = _check_type(k, schema.field(k).type, expected[k])
            if problem:
                out.append(problem)
    return out


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _check_type(key: str, t: pa.DataType, ft: dict) -> ColumnProblem | None:
    dtype, shape = ft["dtype"], tuple(ft.get("shape") or ())
    if dtype == "image":
        return None if pa.types.is_struct(t) else ColumnProblem(key, "error", f"column {key!r} is {t}, not an image struct")
    if dtype == "string":
        ok = pa.types.is_string(t) or pa.types.is_large_string(t)
        return None if ok else ColumnProblem(key, "error", f"column {key!r} is {t}, info.json says string")
    try:
        want = np.dtype(dtype)
    except TypeError:
        return ColumnProblem(key, "error", f"info.json gives {key!r} the unknown dtype {dtype!r}")
    if shape in ((), (1,)):
        if _is_list(t):
            return ColumnProblem(key, "error", f"column {key!r} holds lists ({t}), info.json says a scalar {dtype}")
        value_type = t
    else:
        if not _is_list(t):
            return ColumnProblem(key, "error", f"column {key!r} is {t}, info.json says shape {list(shape)}")
        if len(shape) == 1 and pa.types.is_fixed_size_list(t) and t.list_size != shape[0]:
            return ColumnProblem(key, "error", f"column {key!r} holds vectors of {t.list_size}, info.json says {shape[0]}")
        value_type = t.value_type
        while _is_list(value_type):  # 2-D and up: nested lists
            value_type = value_type.value_type
    if not _is_numeric(value_type):
        return ColumnProblem(key, "error", f"column {key!r} holds {value_type}, info.json says {dtype}")
    have = np.dtype(value_type.to_pandas_dtype())
    if have != want:
        return ColumnProblem(key, "warning", f"column {key!r} is stored as {have}, info.json says {want} "
                                             "(LeRobot casts it on load)")
    return None


def vector_size(ft: dict) -> int:
    """Values per frame of a numeric feature (product of its shape)."""
    return int(np.prod(ft.get("shape") or (1,)))
