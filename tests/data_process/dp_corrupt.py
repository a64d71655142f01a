"""Break copies of datasets in the ways users' datasets break (used by the scan/clean tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_labvla.data_process.reader import column_to_numpy


def _to_arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(type_):
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=type_.value_type), values.shape[1])
    if pa.types.is_list(type_):
        offsets = pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=type_.value_type))
    return pa.array(values, type=type_)


def edit_column(path: Path, column: str, fn: Callable[[np.ndarray], None]) -> None:
    """Apply `fn` in place to the numpy copy of `column` and write the file back (same schema)."""
    table = pq.read_table(path)
    values = column_to_numpy(table.column(column)).copy()
    fn(values)
    i = table.column_names.index(column)
    table = table.set_column(i, table.schema.field(column), _to_arrow(values, table.schema.field(column).type))
    pq.write_table(table, path)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def v21_file(root: Path, ep: int) -> Path:
    return root / f"data/chunk-000/episode_{ep:06d}.parquet"


def v30_rows(root: Path, ep: int) -> tuple[Path, slice]:
    """The data file and row slice of episode `ep` in a v3.0 dataset (from its metadata)."""
    from lerobot_labvla.data_process.reader import open_dataset

    view = open_dataset(root)
    ref = view.episodes[ep]
    start = min(e.row_start for e in view.episodes if e.data_path == ref.data_path)
    return root / ref.data_path, slice(ref.row_start - start, ref.row_start - start + ref.length)
