"""`labvla-data merge`: several v3.0 datasets -> one, through LeRobot's `merge_datasets` (`aggregate_datasets`).

LeRobot merges only datasets with the same features and robot type. `--pad` merges datasets of different
robots (RoboGenesis profiles: FR3 state 8 / action 7, ALOHA 14 / 14) the way the LabVLA paper trains across
embodiments: every 1-D numeric feature whose width differs is zero-padded at the end to the widest, and two
per-frame masks record which dims of each frame are padding:

    dim_is_pad.observation.state  bool (S_max,)    dim_is_pad.action  bool (A_max,)

(The names contain `_is_pad` so LeRobot's batch converter carries them to the policy, and start with neither
`observation.` nor `action`, so LeRobot does not take them for a policy input or output.) The labvla policy
zeroes those dims per sample after normalization and keeps them out of its flow-matching loss and FAST targets.

Each source is staged (data files rewritten padded, videos linked), its stats recomputed, then LeRobot
aggregates the staged copies. LeRobot's merged stats average the padding zeros into every padded dim; they
are replaced per dim by the stats of the sources where that dim is real, so a dim's normalization is that of
the robots that have it. Everything is built next to `--dst` and renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_labvla.errors import LabVLAError

STATE = "observation.state"
ACTION = "action"
STATE_DIM_PAD = "dim_is_pad.observation.state"
ACTION_DIM_PAD = "dim_is_pad.action"
DIM_PAD_KEYS = {STATE: STATE_DIM_PAD, ACTION: ACTION_DIM_PAD}
MERGE_LOG = "merge_log.json"
STAGING_MARK = ".labvla-tmp-"
_NUMERIC_SKIP = ("image", "video", "string", "language")
_INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


@dataclass
class Source:
    root: Path
    info: dict
    robot_type: str

    @property
    def features(self) -> dict:
        return self.info["features"]


def merge(srcs: list[str | Path], dst: str | Path, *, pad: bool = False, repo_id: str | None = None,
          overwrite: bool = False) -> dict:
    """Merge `srcs` into a new dataset at `dst` and return the merge log (also written to `dst/merge_log.json`)."""
    from lerobot.datasets.aggregate import aggregate_datasets

    from lerobot_labvla.data_process.clean import remove_stale_staging

    t0 = time.perf_counter()
    sources = [_open(Path(s).resolve()) for s in srcs]
    dst = Path(dst).resolve()
    if len(sources) < 2:
        raise LabVLAError(f"merge needs at least two --src datasets, got {len(sources)}")
    for s in sources:
        if dst == s.root or s.root in dst.parents:
            raise LabVLAError(f"--dst {dst} must be outside --src {s.root} (merge never modifies a source)")
    if dst.exists() and not overwrite:
        raise LabVLAError(f"--dst {dst} already exists; choose a new folder or pass --overwrite")
    features, widths = plan_features(sources, pad)
    robot_types = list(dict.fromkeys(s.robot_type for s in sources))
    robot_type = "+".join(robot_types)
    repo_id = repo_id or f"local/{dst.name}"

    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(dst)
    staging = dst.parent / f".{dst.name}{STAGING_MARK}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        staged = [_stage(s, staging / f"src_{k}", features, widths, robot_type, pad) for k, s in enumerate(sources)]
        out = staging / "out"
        aggregate_datasets([f"local/src_{k}" for k in range(len(staged))], repo_id, roots=staged, aggr_root=out)
        if pad:
            _real_dim_stats(out, staged, widths)
        log = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dst": str(dst),
            "repo_id": repo_id,
            "robot_type": robot_type,
            "padded": {k: {"width": max(w), "source_widths": w} for k, w in widths.items() if len(set(w)) > 1},
            "masks": [DIM_PAD_KEYS[k] for k in (STATE, ACTION) if k in features] if pad else [],
            "sources": [],
            "elapsed_s": 0.0,
        }
        first = 0
        for k, s in enumerate(sources):
            n = s.info["total_episodes"]
            log["sources"].append({"root": str(s.root), "robot_type": s.robot_type, "episodes": [first, first + n - 1],
                                   "frames": s.info["total_frames"],
                                   **{f"{key}_width": widths[key][k] for key in (STATE, ACTION) if key in widths}})
            first += n
        log["elapsed_s"] = round(time.perf_counter() - t0, 3)
        (out / MERGE_LOG).write_text(json.dumps(log, indent=1))
        if dst.exists():  # --overwrite: swap, then delete the old one
            dst.rename(staging / "old")
        out.rename(dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return log


def _open(root: Path) -> Source:
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise LabVLAError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    info = json.loads(info_path.read_text())
    version = info.get("codebase_version")
    if version != "v3.0":
        raise LabVLAError(f"{root} is a {version} dataset; merge reads v3.0 (convert it first: `labvla-data clean` "
                          "writes v3.0, or LeRobot's convert_dataset_v21_to_v30)")
    return Source(root, info, str(info.get("robot_type") or "unknown"))


def plan_features(sources: list[Source], pad: bool) -> tuple[dict, dict[str, list[int]]]:
    """The merged features (padded widths, joined names, the two masks under `pad`) and, per padded-able feature,
    each source's width. Raises naming what differs when the sources cannot be merged."""
    fps = {s.info["fps"] for s in sources}
    if len(fps) > 1:
        raise LabVLAError(f"the sources have different fps {sorted(fps)}; LeRobot merges one fps (resample first)")
    keys = [set(s.features) for s in sources]
    if any(k != keys[0] for k in keys):
        diff = "; ".join(f"{s.root.name}: missing {sorted(keys[0] - k) or '-'}, extra {sorted(k - keys[0]) or '-'}"
                         for s, k in zip(sources[1:], keys[1:]) if k != keys[0])
        raise LabVLAError(f"the sources have different features than {sources[0].root.name} ({diff})")
    merged: dict = {}
    widths: dict[str, list[int]] = {}
    for key, first in sources[0].features.items():
        fts = [s.features[key] for s in sources]
        dtypes = {ft["dtype"] for ft in fts}
        if len(dtypes) > 1:
            raise LabVLAError(f"feature {key!r} has dtypes {sorted(dtypes)} across the sources; they must agree")
        shapes = [tuple(ft["shape"]) for ft in fts]
        numeric_vector = first["dtype"] not in _NUMERIC_SKIP and len(first["shape"]) == 1 and key not in _INDEX_COLUMNS
        if numeric_vector:
            widths[key] = [int(s[0]) for s in shapes]
        if len(set(shapes)) == 1:
            merged[key] = {**first, "names": _joined_names(fts)} if numeric_vector else first
            continue
        if not numeric_vector:
            raise LabVLAError(f"feature {key!r} has shapes {sorted(set(shapes))} across the sources; only 1-D "
                              "numeric features can be padded (resize cameras to one size before merging)")
        if not pad:
            raise LabVLAError(f"feature {key!r} has widths {widths[key]} across the sources (different robots); pass "
                              "--pad to zero-pad it to the widest with a per-frame mask (dim_is_pad.*)")
        merged[key] = {**first, "shape": [max(widths[key])], "names": _joined_names(fts)}
    if pad:
        for key, mask in DIM_PAD_KEYS.items():
            if key in merged:
                merged[mask] = {"dtype": "bool", "shape": list(merged[key]["shape"]), "names": merged[key]["names"]}
    return merged, widths


def _joined_names(fts: list[dict]) -> list[str] | None:
    """Per dim, the distinct names the sources give it joined by `|` (`q7|left.gripper`): a padded dim carries
    a different joint on each robot, and a name with "gripper" in it still marks a gripper dim."""
    width = max(int(ft["shape"][0]) for ft in fts)
    names = [ft.get("names") for ft in fts]
    if not all(isinstance(n, list) and len(n) == ft["shape"][0] for n, ft in zip(names, fts)):
        return fts[0].get("names") if len({int(ft["shape"][0]) for ft in fts}) == 1 else [f"d{i}" for i in range(width)]
    return ["|".join(dict.fromkeys(n[i] for n in names if i < len(n))) for i in range(width)]


def _stage(src: Source, root: Path, features: dict, widths: dict[str, list[int]], robot_type: str, pad: bool) -> Path:
    """A copy of `src` in the merged schema: padded data files (+ masks), shared robot type, linked videos,
    per-episode `robot_type` column, recomputed stats."""
    from lerobot_labvla.data_process.clean import _recompute_stats

    shutil.copytree(src.root / "meta", root / "meta")
    for name in ("videos", "images"):
        if (src.root / name).is_dir():
            os.symlink(src.root / name, root / name, target_is_directory=True)
    hf_meta = _hf_schema_metadata(features)
    for path in sorted((src.root / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        for key, ft in features.items():
            if key in table.column_names and len(set(widths.get(key, ()))) > 1:
                table = _set(table, key, _pad_column(table.column(key), ft["shape"][0], ft["dtype"]))
        if pad:
            for key, mask in DIM_PAD_KEYS.items():
                if key in widths:
                    real = _width_of(src, key)
                    rows = np.zeros((table.num_rows, features[key]["shape"][0]), dtype=bool)
                    rows[:, real:] = True
                    table = table.append_column(mask, _fixed_list(rows))
        table = table.replace_schema_metadata({b"huggingface": hf_meta})
        out = root / path.relative_to(src.root)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
    # Videos keep their own encoder info (LeRobot's aggregate merges those); every other feature is the merged one.
    own = {k: src.features[k] if ft["dtype"] == "video" else ft for k, ft in features.items()}
    (root / "meta" / "info.json").write_text(json.dumps(dict(src.info, features=own, robot_type=robot_type), indent=4))
    for path in sorted((root / "meta" / "episodes").rglob("*.parquet")):
        table = pq.read_table(path)
        pq.write_table(_set(table, "robot_type", pa.array([src.robot_type] * table.num_rows, pa.string())), path)
    _recompute_stats(root)  # numeric stats per episode and overall, on the padded values (video stats kept)
    return root


def _width_of(src: Source, key: str) -> int:
    return int(src.features[key]["shape"][0])


def _set(table: pa.Table, name: str, column) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def _pad_column(column: pa.ChunkedArray, width: int, dtype: str) -> pa.Array:
    values = np.stack(column.to_numpy(zero_copy_only=False)) if len(column) else np.zeros((0, width))
    values = values.reshape(len(values), -1)  # a (1,) feature is a scalar column
    values = np.pad(values.astype(dtype), ((0, 0), (0, width - values.shape[1])))
    return _fixed_list(values)


def _fixed_list(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _hf_schema_metadata(features: dict) -> bytes:
    """The `huggingface` schema metadata LeRobot's writer puts in data files, for the merged features."""
    from lerobot.datasets.feature_utils import get_hf_features_from_features

    hf = get_hf_features_from_features({k: {**v, "shape": tuple(v["shape"])} for k, v in features.items()})
    return json.dumps({"info": {"features": hf.to_dict()}}).encode()


def _real_dim_stats(out: Path, staged: list[Path], widths: dict[str, list[int]]) -> None:
    """Replace the merged stats of every padded feature, dim by dim, by LeRobot's aggregate of the sources
    where that dim is real (LeRobot's own aggregate counts the padding zeros of the narrower robots)."""
    from lerobot.datasets.compute_stats import aggregate_stats
    from lerobot.datasets.io_utils import load_stats, write_stats

    merged = load_stats(out)
    per_source = [load_stats(root) for root in staged]
    for key, ws in widths.items():
        if len(set(ws)) == 1 or key not in merged:
            continue
        fixed = {stat: np.array(value, dtype=np.float64, copy=True) for stat, value in merged[key].items()}
        for width in sorted(set(ws)):
            have = [s for s, w in zip(per_source, ws) if w >= width]
            agg = aggregate_stats([{key: s[key]} for s in have])[key]
            lo = max([w for w in set(ws) if w < width], default=0)
            for stat, value in agg.items():
                if stat != "count":
                    fixed[stat][..., lo:width] = np.asarray(value)[..., lo:width]
        merged[key] = fixed
    write_stats(merged, out)
