"""Read a local LeRobot dataset (v2.1 or v3.0) episode by episode, without loading it whole.

Metadata is read with json + pyarrow the way LeRobot's own loaders read it (`LeRobotDatasetMetadata`
for v3.0, the v2.1→v3.0 converter's `legacy_load_*` for v2.1), without importing them: see
`_open_v30`. Frame data is streamed with pyarrow, reading only the
non-image columns asked for, so memory stays bounded by one episode (v2.1) or one record batch
plus the current episode (v3.0), whatever the dataset size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_labvla.errors import LabVLAError

V21 = "v2.1"
V30 = "v3.0"
SUPPORTED_VERSIONS = (V21, V30)
# Columns every LeRobot frame carries besides the user features (lerobot.utils.constants.DEFAULT_FEATURES).
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_BATCH_ROWS = 65_536


@dataclass
class VideoRef:
    """Where one camera's frames of one episode live."""

    path: Path  # relative to the dataset root
    from_timestamp: float | None = None  # v3.0: the episode's span inside a shared file
    to_timestamp: float | None = None


@dataclass
class EpisodeRef:
    """One episode as the metadata describes it."""

    index: int
    length: int
    tasks: list[str]
    data_path: Path  # relative to the dataset root
    row_start: int | None = None  # v3.0: global `index` of the first frame
    videos: dict[str, VideoRef] = field(default_factory=dict)


@dataclass
class DatasetView:
    """The metadata of a local dataset, the same for v2.1 and v3.0."""

    root: Path
    version: str
    info: dict
    episodes: list[EpisodeRef]
    tasks: dict[int, str]  # task_index -> task text

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def robot_type(self) -> str | None:
        return self.info.get("robot_type")

    @property
    def video_keys(self) -> list[str]:
        return [k for k, ft in self.features.items() if ft["dtype"] == "video"]

    def numeric_keys(self, with_index_columns: bool = False) -> list[str]:
        """Features with numeric values (no images, videos, strings)."""
        keys = [k for k, ft in self.features.items() if ft["dtype"] not in ("image", "video", "string", "language")]
        if with_index_columns:
            return keys
        return [k for k in keys if k not in INDEX_COLUMNS]

    def float_keys(self) -> list[str]:
        """Float features besides `timestamp` (state, action, ...): where NaN/Inf can hide."""
        return [
            k
            for k in self.numeric_keys()
            if str(self.features[k]["dtype"]).startswith("float")
        ]

    def dim_names(self, key: str) -> list[str]:
        """Per-dimension names of a vector feature (LeRobot `names`, else `key[i]`)."""
        ft = self.features[key]
        size = int(np.prod(ft.get("shape") or (1,)))
        names = ft.get("names")
        if isinstance(names, dict):  # old layouts: {"motors": [...]}
            names = next(iter(names.values()), None)
        if isinstance(names, list) and len(names) == size and all(isinstance(n, str) for n in names):
            return list(names)
        return [f"{key}[{i}]" for i in range(size)]


@dataclass
class EpisodeData:
    """Frames of one episode, or why they could not be read."""

    ref: EpisodeRef
    columns: dict[str, np.ndarray]  # (T,) for scalars, (T, D) for vectors; strings as object arrays
    error: str | None = None  # check name: "missing_file" | "unreadable_file"
    message: str = ""
    # v3.0: the global `index` the first row would carry if `index` followed the rows' positions
    # in their file (it equals ref.row_start unless an earlier episode gained or lost rows).
    position_start: int | None = None

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def _load_json(path: Path) -> dict:
    import json

    with open(path) as f:
        return json.load(f)


def open_dataset(root: str | Path) -> DatasetView:
    """Read the metadata of the dataset at `root`, or raise `LabVLAError` saying why it can't be read."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise LabVLAError(f"{root} is a file, not a dataset folder; pass the folder that holds meta/info.json")
    if not root.is_dir():
        raise LabVLAError(f"dataset folder {root} does not exist; pass the folder that holds meta/info.json")
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise LabVLAError(f"{root} is not a LeRobot dataset: {info_path} is missing")
    try:
        info = _load_json(info_path)
    except (OSError, ValueError) as exc:
        raise LabVLAError(f"{info_path} is not readable JSON ({exc}); restore it from the original dataset") from exc
    check_info(info, info_path)
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise LabVLAError(
            f"{root} has codebase_version {version!r}; labvla-data reads {' and '.join(SUPPORTED_VERSIONS)} "
            "(convert older datasets with LeRobot's v2.0→v2.1 script first)"
        )
    try:
        return _open_v30(root, info) if version == V30 else _open_v21(root, info)
    except LabVLAError:
        raise
    except Exception as exc:  # a meta/ file whose values have the wrong types (None lengths, text indices, ...)
        raise LabVLAError(f"cannot read the {version} metadata of {root}: {type(exc).__name__}: {exc}") from exc


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_info(info, info_path: Path) -> None:
    """Raise `LabVLAError` naming the first value of info.json that LeRobot's loader could not use."""

    def bad(what: str, value, expected: str):
        raise LabVLAError(f"{info_path}: {what} is {value!r}, expected {expected}; restore it from the original dataset")

    if not isinstance(info, dict):
        bad("the file", type(info).__name__, "a JSON object")
    for key in ("fps", "features"):
        if key not in info:
            raise LabVLAError(f"{info_path} has no '{key}'; it is not a LeRobot dataset info file")
    fps = info["fps"]
    if not isinstance(fps, int | float) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
        bad("'fps'", fps, "a number > 0")
    features = info["features"]
    if not isinstance(features, dict) or not features:
        bad("'features'", features, "a non-empty object {name: {dtype, shape, names}}")
    for name, ft in features.items():
        if not isinstance(ft, dict) or not isinstance(ft.get("dtype"), str):
            bad(f"feature {name!r}", ft, "an object with a 'dtype' string")
        shape = ft.get("shape")
        if not isinstance(shape, list | tuple) or not all(_is_int(d) and d >= 0 for d in shape):
            bad(f"the shape of feature {name!r}", shape, "a list of non-negative integers")
    for key in ("total_episodes", "total_frames", "total_tasks", "total_chunks", "total_videos", "chunks_size"):
        if key in info and not (_is_int(info[key]) and info[key] >= 0):
            bad(f"'{key}'", info[key], "an integer >= 0")
    if info.get("chunks_size") == 0:
        bad("'chunks_size'", 0, "an integer > 0")
    for key in ("data_path", "video_path"):
        tpl = info.get(key)
        if tpl is None:
            continue
        try:
            tpl.format(chunk_index=0, file_index=0, episode_chunk=0, episode_index=0, video_key="k")
        except (AttributeError, KeyError, IndexError, ValueError) as exc:
            bad(f"'{key}'", tpl, f"a path template ({type(exc).__name__}: {exc})")


# Metadata is read here with json + pyarrow, mirroring LeRobot 0.6.1's own loaders (v3.0:
# `lerobot.datasets.io_utils.load_info/load_tasks/load_episodes`, as `LeRobotDatasetMetadata` calls
# them; v2.1: `legacy_load_episodes/legacy_load_tasks` of `lerobot.scripts.convert_dataset_v21_to_v30`):
# same files, same columns, same ordering, same failures. Importing those loaders imports torch
# through `lerobot.datasets`, and the scan's < 1 GiB peak-RSS budget cannot afford that on a CUDA
# torch build (`import lerobot.datasets.dataset_metadata` alone peaks at ~1.07 GB). `clean` and
# `stats` still go through LeRobot's own code (they write / compute with it).
# Paths copied from lerobot.datasets.utils (LeRobot 0.6.1).
EPISODES_DIR = "meta/episodes"
DEFAULT_TASKS_PATH = "meta/tasks.parquet"
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"


def _load_v30_tasks(root: Path) -> dict[int, str]:
    """`io_utils.load_tasks`: `pd.read_parquet(meta/tasks.parquet)`, task text as the index."""
    table = pq.read_table(root / DEFAULT_TASKS_PATH)
    pandas_meta = table.schema.pandas_metadata or {}
    index_cols = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    text_col = index_cols[0] if index_cols else "task"
    if text_col not in table.column_names or "task_index" not in table.column_names:
        raise ValueError(f"{DEFAULT_TASKS_PATH} has columns {table.column_names}; expected task (index) and task_index")
    texts = table.column(text_col).to_pylist()
    indices = table.column("task_index").to_pylist()
    return {int(i): str(t) for t, i in zip(texts, indices, strict=True)}


def _load_v30_episodes(root: Path, columns: list[str]) -> dict[str, list]:
    """`io_utils.load_episodes`: every meta/episodes/*/*.parquet in sorted path order, concatenated
    (`datasets.Dataset.from_parquet`); only `columns` are read (LeRobot drops `stats/*` the same way)."""
    paths = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not paths:
        raise FileNotFoundError(f"Provided directory does not contain any parquet file: {root / EPISODES_DIR}")
    tables = []
    for path in paths:
        pf = pq.ParquetFile(path)
        tables.append(pf.read(columns=[c for c in columns if c in pf.schema_arrow.names]))
    table = pa.concat_tables(tables)  # raises on files with different schemas, as from_parquet does
    return table.to_pydict()


def _open_v30(root: Path, info: dict) -> DatasetView:
    # LeRobotDatasetMetadata falls back to the Hub when a local file is missing; with no network
    # that ends in an opaque Hub error, so name the missing file ourselves.
    missing = []
    if int(info.get("total_episodes", 0)) > 0 and not list((root / EPISODES_DIR).glob("*/*.parquet")):
        missing.append("meta/episodes/chunk-*/file-*.parquet")
    if int(info.get("total_tasks", 0)) > 0 and not (root / DEFAULT_TASKS_PATH).is_file():
        missing.append(DEFAULT_TASKS_PATH)
    if missing:
        raise LabVLAError(f"{root} is a v3.0 dataset without {', '.join(missing)}; restore the meta/ folder")
    video_keys = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
    data_tpl = info.get("data_path") or DEFAULT_DATA_PATH
    video_tpl = info.get("video_path") or DEFAULT_VIDEO_PATH
    wanted = ["episode_index", "length", "tasks", "data/chunk_index", "data/file_index", "dataset_from_index"]
    for key in video_keys:
        wanted += [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    try:
        # As LeRobotDatasetMetadata._load_metadata: tables only read when the totals say they exist.
        tasks = _load_v30_tasks(root) if int(info.get("total_tasks", 0)) > 0 else {}
        cols = _load_v30_episodes(root, wanted) if int(info.get("total_episodes", 0)) > 0 else {}
        for c in wanted[:6]:
            if cols and c not in cols:
                raise KeyError(f"meta/episodes has no column {c!r}")
    except Exception as exc:  # arrow, OS and key errors
        raise LabVLAError(f"could not read the v3.0 metadata of {root}: {type(exc).__name__}: {exc}") from exc

    episodes: list[EpisodeRef] = []
    for i in range(len(cols.get("episode_index", []))):
        videos = {}
        for key in video_keys:
            if f"videos/{key}/chunk_index" not in cols:
                continue
            videos[key] = VideoRef(
                path=Path(
                    video_tpl.format(
                        video_key=key,
                        chunk_index=cols[f"videos/{key}/chunk_index"][i],
                        file_index=cols[f"videos/{key}/file_index"][i],
                    )
                ),
                from_timestamp=float(cols[f"videos/{key}/from_timestamp"][i]),
                to_timestamp=float(cols[f"videos/{key}/to_timestamp"][i]),
            )
        episodes.append(
            EpisodeRef(
                index=int(cols["episode_index"][i]),
                length=int(cols["length"][i]),
                tasks=list(cols["tasks"][i] or []),
                data_path=Path(
                    data_tpl.format(chunk_index=cols["data/chunk_index"][i], file_index=cols["data/file_index"][i])
                ),
                row_start=int(cols["dataset_from_index"][i]),
                videos=videos,
            )
        )
    return DatasetView(root=root, version=V30, info=info, episodes=episodes, tasks=tasks)


def _load_jsonlines(path: Path) -> list:
    """`convert_dataset_v21_to_v30.load_jsonlines` (`list(jsonlines.open(path))`): one JSON value
    per line; a blank or broken line is an error (jsonlines' default, skip_empty=False)."""
    import json

    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                items.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"line {lineno} of {path.name} is not valid JSON: {exc}") from exc
    return items


def _open_v21(root: Path, info: dict) -> DatasetView:
    for rel in (LEGACY_EPISODES_PATH, LEGACY_TASKS_PATH):
        if not (root / rel).is_file():
            raise LabVLAError(f"{root} is a v2.1 dataset without {rel}; restore the meta/ folder")
    try:
        # legacy_load_episodes / legacy_load_tasks: dicts keyed by index, sorted by index.
        items = _load_jsonlines(root / LEGACY_EPISODES_PATH)
        legacy_episodes = {item["episode_index"]: item for item in sorted(items, key=lambda x: x["episode_index"])}
        items = _load_jsonlines(root / LEGACY_TASKS_PATH)
        tasks = {item["task_index"]: item["task"] for item in sorted(items, key=lambda x: x["task_index"])}
    except Exception as exc:  # broken lines, missing keys
        raise LabVLAError(f"cannot read the v2.1 metadata of {root}: {type(exc).__name__}: {exc}") from exc

    chunks_size = int(info.get("chunks_size", 1000))
    data_tpl = info.get("data_path") or "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    video_tpl = info.get("video_path")
    video_keys = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
    episodes = []
    for ep_idx, item in legacy_episodes.items():
        chunk = ep_idx // chunks_size
        videos = {}
        if video_tpl:
            for key in video_keys:
                videos[key] = VideoRef(
                    Path(video_tpl.format(episode_chunk=chunk, video_key=key, episode_index=ep_idx))
                )
        episodes.append(
            EpisodeRef(
                index=int(ep_idx),
                length=int(item.get("length", 0)),
                tasks=list(item.get("tasks") or []),
                data_path=Path(data_tpl.format(episode_chunk=chunk, episode_index=ep_idx)),
                videos=videos,
            )
        )
    return DatasetView(root=root, version=V21, info=info, episodes=episodes, tasks={int(k): v for k, v in tasks.items()})


def column_to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An arrow column as numpy: (T,) for scalars, (T, D) for fixed-length vectors."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    is_list = pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
    if is_list and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
                    or pa.types.is_boolean(t.value_type)):  # bool: `labvla-data merge --pad`'s dim_is_pad masks
        n = len(col)
        values = col.flatten().to_numpy(zero_copy_only=False)
        if n == 0:
            return values.reshape(0, 0)
        if values.size % n:
            raise ValueError(f"ragged list column of type {t}")
        return values.reshape(n, values.size // n)
    if is_list or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_struct(t):
        return np.asarray(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def _table_to_columns(table: pa.Table) -> dict[str, np.ndarray]:
    return {name: column_to_numpy(table.column(name)) for name in table.column_names}


def iter_episodes(
    view: DatasetView,
    columns: list[str],
    episodes: Iterable[int] | None = None,
    exclude: Mapping[Path, set[str]] | None = None,
) -> Iterator[EpisodeData]:
    """Yield each episode's `columns` (those present in its files) in episode order.

    A missing or unreadable data file yields `EpisodeData` with `error` set instead of raising,
    so one bad file never stops a scan. `exclude` names columns not to read per data file (those
    whose type does not match info.json).
    """
    wanted = set(episodes) if episodes is not None else None
    refs = [ep for ep in view.episodes if wanted is None or ep.index in wanted]
    exclude = exclude or {}
    if view.version == V21:
        yield from _iter_v21(view, refs, columns, exclude)
    else:
        yield from _iter_v30(view, refs, columns, exclude)


def _present(schema: pa.Schema, columns: list[str], exclude: set[str] = frozenset()) -> list[str]:
    names = set(schema.names)
    return [c for c in columns if c in names and c not in exclude]


def _iter_v21(
    view: DatasetView, refs: list[EpisodeRef], columns: list[str], exclude: Mapping[Path, set[str]]
) -> Iterator[EpisodeData]:
    for ref in refs:
        path = view.root / ref.data_path
        if not path.is_file():
            yield EpisodeData(ref, {}, "missing_file", f"data file {ref.data_path} is missing")
            continue
        try:
            pf = pq.ParquetFile(path)
            table = pf.read(columns=_present(pf.schema_arrow, columns, exclude.get(ref.data_path, set())))
            data = _table_to_columns(table)
        except Exception as exc:  # arrow raises ArrowInvalid/OSError for truncated or garbage files
            yield EpisodeData(ref, {}, "unreadable_file", f"data file {ref.data_path} is unreadable: {exc}")
            continue
        yield EpisodeData(ref, data)


def file_starts(view: DatasetView) -> dict[Path, int]:
    """v3.0: data file -> the global `index` of its first row (the smallest dataset_from_index in it)."""
    starts: dict[Path, int] = {}
    for ep in view.episodes:
        if ep.row_start is not None:
            starts[ep.data_path] = min(starts.get(ep.data_path, ep.row_start), ep.row_start)
    return starts


def episode_rows(
    labels: np.ndarray | None, refs: list[EpisodeRef], file_start: int, index: np.ndarray | None = None
) -> dict[int, tuple[int, int]]:
    """The rows [lo, hi) of each episode in one v3.0 data file.

    An episode owns the one contiguous run of rows whose `episode_index` is its index (`labels`),
    so a row added to or lost from one episode is blamed on that episode only, not on every episode
    after it (as cutting by the metadata's dataset_from_index/length would). An episode with no
    such run, or with several, falls back to its metadata block, and that block is taken out of
    any run it overlaps (rows relabelled to a neighbour's index stay with their own episode).
    Where a run's length disagrees with the metadata, the global `index` column decides: if the rows
    carrying exactly the episode's metadata indices form one block, every row of the run outside that
    block carries another episode's index, and no row of the block belongs to another episode whose
    run agrees with its metadata, the labels are what was damaged and the block wins.
    """
    meta = {r.index: (r.row_start - file_start, r.row_start - file_start + r.length) for r in refs}
    if labels is None or len(labels) == 0:
        return meta
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts, stops = np.concatenate([[0], change]), np.concatenate([change, [len(labels)]])
    runs: dict[int, list[tuple[int, int]]] = {}
    for lo, hi in zip(starts.tolist(), stops.tolist(), strict=True):
        runs.setdefault(int(labels[lo]), []).append((lo, hi))
    own = {r.index: runs[r.index][0] for r in refs if len(runs.get(r.index, ())) == 1}
    fallback = [meta[r.index] for r in refs if r.index not in own]
    out = dict(meta)
    for idx, (lo, hi) in own.items():
        for flo, fhi in fallback:
            if flo <= lo < fhi:
                lo = min(fhi, hi)
            if flo < hi <= fhi:
                hi = max(flo, lo)
        out[idx] = (lo, hi)
    if index is not None and len(index) == len(labels):
        sound = [out[r.index] for r in refs if r.index in own and out[r.index][1] - out[r.index][0] == r.length]
        for ref in refs:
            lo, hi = out[ref.index]
            if ref.index in own and hi - lo != ref.length:
                out[ref.index] = _index_block(index, ref, refs, lo, hi, sound) or (lo, hi)
    return out


def _index_block(
    index: np.ndarray, ref: EpisodeRef, refs: list[EpisodeRef], lo: int, hi: int, sound: list[tuple[int, int]]
) -> tuple[int, int] | None:
    """The rows carrying exactly `ref`'s metadata indices, if the run [lo, hi) beyond them is other
    episodes' and no row of them lies in a `sound` run (another episode whose rows agree with its metadata)."""
    want = np.arange(ref.row_start, ref.row_start + ref.length)
    hits = np.flatnonzero((index >= want[0]) & (index <= want[-1])) if ref.length else np.array([], dtype=np.int64)
    if len(hits) != ref.length or not ref.length or hits[-1] - hits[0] + 1 != ref.length:
        return None
    if not np.array_equal(index[hits], want):
        return None
    a, b = int(hits[0]), int(hits[-1]) + 1
    if any(slo < b and a < shi for slo, shi in sound):
        return None
    outside = np.concatenate([index[lo:min(hi, a)], index[max(lo, b):hi]])
    others = np.zeros(len(outside), dtype=bool)
    for r in refs:
        if r is not ref:
            others |= (outside >= r.row_start) & (outside < r.row_start + r.length)
    return (a, b) if others.all() else None


def read_row_ids(pf: pq.ParquetFile) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The `episode_index` and `index` columns of a data file as int64 (None where absent or not integers)."""
    names = [c for c in ("episode_index", "index") if c in pf.schema_arrow.names]
    table = pf.read(columns=names)
    out = []
    for name in ("episode_index", "index"):
        col = table.column(name) if name in names else None
        ok = col is not None and pa.types.is_integer(col.type) and col.null_count == 0
        out.append(column_to_numpy(col).astype(np.int64, copy=False) if ok else None)
    return out[0], out[1]


def _iter_v30(
    view: DatasetView, refs: list[EpisodeRef], columns: list[str], exclude: Mapping[Path, set[str]]
) -> Iterator[EpisodeData]:
    by_file: dict[Path, list[EpisodeRef]] = {}
    for ref in refs:
        by_file.setdefault(ref.data_path, []).append(ref)
    starts = file_starts(view)
    all_in_file: dict[Path, list[EpisodeRef]] = {}
    for ep in view.episodes:
        all_in_file.setdefault(ep.data_path, []).append(ep)

    # Episodes come out in file/row order (= index order for datasets LeRobot wrote); nothing is
    # kept once yielded, so memory is one record batch plus the current episode.
    for rel, file_refs in by_file.items():
        path = view.root / rel
        if not path.is_file():
            for ref in file_refs:
                yield EpisodeData(ref, {}, "missing_file", f"data file {rel} is missing")
            continue
        yield from _slice_file(path, rel, file_refs, all_in_file[rel], starts[rel], columns, exclude.get(rel, set()))


def _slice_file(
    path: Path,
    rel: Path,
    refs: list[EpisodeRef],
    file_refs: list[EpisodeRef],
    file_start: int,
    columns: list[str],
    exclude: set[str],
) -> Iterator[EpisodeData]:
    try:
        pf = pq.ParquetFile(path)
        labels, index = read_row_ids(pf)
        ranges = episode_rows(labels, file_refs, file_start, index)
        batches = pf.iter_batches(batch_size=_BATCH_ROWS, columns=_present(pf.schema_arrow, columns, exclude))
    except Exception as exc:
        for ref in refs:
            yield EpisodeData(ref, {}, "unreadable_file", f"data file {rel} is unreadable: {exc}")
        return
    refs = sorted(refs, key=lambda r: ranges[r.index])

    pending: list[pa.RecordBatch] = []  # rows read but not yet handed out
    pending_start = 0  # file row of pending[0][0]
    pending_rows = 0
    i = 0
    try:
        for batch in batches:
            pending.append(batch)
            pending_rows += batch.num_rows
            while i < len(refs):
                ref = refs[i]
                lo, hi = ranges[ref.index]
                if hi - pending_start > pending_rows:
                    break
                table = pa.Table.from_batches(pending, schema=batch.schema).slice(lo - pending_start, hi - lo)
                yield EpisodeData(ref, _table_to_columns(table), position_start=file_start + lo)
                i += 1
                # Drop batches entirely before the next episode's first row.
                nxt = (ranges[refs[i].index][0] if i < len(refs) else pending_start + pending_rows) - pending_start
                while pending and pending[0].num_rows <= nxt:
                    nxt -= pending[0].num_rows
                    pending_start += pending[0].num_rows
                    pending_rows -= pending[0].num_rows
                    pending.pop(0)
    except Exception as exc:
        for ref in refs[i:]:
            yield EpisodeData(ref, {}, "unreadable_file", f"data file {rel} is unreadable: {exc}")
        return
    for ref in refs[i:]:
        lo, hi = ranges[ref.index]
        have = max(0, pending_start + pending_rows - lo)
        yield EpisodeData(
            ref, {}, "unreadable_file", f"data file {rel} ends early: episode {ref.index} needs {hi - lo} rows, found {have}"
        )
