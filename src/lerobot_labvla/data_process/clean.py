"""`labvla-data clean`: write a new v3.0 dataset without the episodes a scan report marks as faulty.

The source is never modified. Everything is built in a temporary folder next to `--dst` and
renamed into place at the end, so `--dst` either holds a complete dataset or nothing.

- v3.0 source: LeRobot's `dataset_tools.delete_episodes` (it re-indexes, re-cuts videos and copies
  episode metadata). It selects rows by their `episode_index` column, which a corrupted episode
  may carry wrongly, so data files holding dropped episodes are first re-cut by the metadata's
  row ranges into a staged copy of the source (everything else is linked, not copied).
- v2.1 source: the kept episodes are copied into a staged v2.1 folder, re-indexed 0..N-1, and
  LeRobot's official converter (`convert_dataset_v21_to_v30`) turns that into v3.0.
- Then, on the v3.0 result: optional clipping of action outliers to the report's bounds, and
  per-episode + overall stats recomputed with LeRobot's `compute_episode_stats`/`aggregate_stats`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_labvla.data_process.fingerprint import differences, fingerprint
from lerobot_labvla.data_process.reader import V21, DatasetView, episode_rows, file_starts, open_dataset, read_row_ids
from lerobot_labvla.data_process.scan import ACTION, CHECKS, load_report
from lerobot_labvla.data_process.stats import iter_episode_stats
from lerobot_labvla.errors import LabVLAError

SEVERITY_RANK = {"warning": 1, "error": 2}
CLEAN_LOG = "clean_log.json"
STAGING_MARK = ".labvla-tmp-"
# An episode with one of these findings cannot be carried into a v3.0 dataset as it is: its rows
# are not where, or not what, the metadata says (LeRobot's delete_episodes copies the metadata's
# `length`, so a kept length_mismatch would be cut or padded silently).
UNKEEPABLE = ("missing_file", "unreadable_file", "schema_mismatch", "length_mismatch")


@dataclass
class CleanConfig:
    """Which findings drop an episode, and what else to do (CLI flags of the same names)."""

    drop_severity: str = "error"  # drop episodes with findings at least this severe
    drop_checks: list[str] = field(default_factory=list)  # drop for these checks whatever their severity
    keep_checks: list[str] = field(default_factory=list)  # never drop for these checks
    clip_actions: bool = False  # clip action outliers to the report's bounds instead of dropping
    repo_id: str | None = None
    overwrite: bool = False
    force: bool = False  # apply a report whose dataset fingerprint does not match the source

    def validate(self) -> None:
        if self.drop_severity not in SEVERITY_RANK:
            raise LabVLAError(f"--drop-severity {self.drop_severity!r}: choose error or warning")
        for name in [*self.drop_checks, *self.keep_checks]:
            if name not in CHECKS:
                raise LabVLAError(f"unknown check {name!r} in --drop-checks/--keep-checks; known: {', '.join(CHECKS)}")


def episodes_to_drop(report: dict, cfg: CleanConfig) -> dict[int, list[str]]:
    """episode index -> the checks that drop it, under `cfg`."""
    threshold = SEVERITY_RANK[cfg.drop_severity]
    drops: dict[int, list[str]] = {}
    for ep in report["episodes"]:
        reasons = []
        for f in ep["findings"]:
            name = f["check"]
            if name in cfg.drop_checks:
                reasons.append(name)
            elif name in cfg.keep_checks or (cfg.clip_actions and name == "action_outlier"):
                continue
            elif SEVERITY_RANK.get(f["severity"], 0) >= threshold:
                reasons.append(name)
        if reasons:
            drops[ep["episode_index"]] = sorted(set(reasons))
    return drops


def clean_dataset(src: str | Path, dst: str | Path, report: dict | str | Path, cfg: CleanConfig | None = None) -> dict:
    """Write the cleaned v3.0 dataset to `dst` and return its clean log."""
    cfg = cfg or CleanConfig()
    cfg.validate()
    t0 = time.perf_counter()
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not isinstance(report, dict):
        report = load_report(report)
    view = open_dataset(src)
    changed = differences(report["dataset"].get("fingerprint") or {}, fingerprint(src))
    if changed and not cfg.force:
        raise LabVLAError(
            f"the report does not describe {src}: {'; '.join(changed)}; re-run labvla-data scan on it "
            "(or pass --force to apply it anyway)"
        )
    if report["dataset"]["total_episodes"] != len(view.episodes) or \
            [e["episode_index"] for e in report["episodes"]] != [ep.index for ep in view.episodes]:
        raise LabVLAError(
            f"the report lists {report['dataset']['total_episodes']} episodes but {src} has {len(view.episodes)}; "
            "re-run labvla-data scan on this dataset"
        )
    if dst == src or src in dst.parents:
        raise LabVLAError(f"--dst {dst} must be outside --src {src} (clean never modifies the source)")
    if dst.exists() and not cfg.overwrite:
        raise LabVLAError(f"--dst {dst} already exists; choose a new folder or pass --overwrite")

    drops = episodes_to_drop(report, cfg)
    kept = [ep.index for ep in view.episodes if ep.index not in drops]
    if not kept:
        raise LabVLAError(f"every episode of {src} would be dropped; check the report or loosen --drop-severity")
    _refuse_unkeepable(report, set(kept))
    bounds = report.get("action_bounds") if cfg.clip_actions else None
    if cfg.clip_actions and not bounds:
        raise LabVLAError("--clip-actions needs action bounds in the report, and this report has none (no action feature?)")
    repo_id = cfg.repo_id or f"local/{dst.name}"

    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(dst)
    staging = Path(dst.parent / f".{dst.name}{STAGING_MARK}{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        out = staging / "out"
        if view.version == V21:
            _v21_subset(view, kept, out)
            _convert_v21(out, repo_id)
        else:
            _v30_subset(view, kept, staging, out, repo_id)
            _carry_episode_columns(view.root, kept, out)
        _fix_totals(out)
        clipped = _clip_actions(out, bounds) if bounds else {}
        _recompute_stats(out)
        log_data = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "src": str(src),
            "src_codebase_version": view.version,
            "dst": str(dst),
            "repo_id": repo_id,
            "report": {"created": report.get("created"), "root": report["dataset"]["root"],
                       "fingerprint_matches": not changed},
            "config": asdict(cfg),
            "episodes_in": len(view.episodes),
            "episodes_out": len(kept),
            "dropped": [{"episode_index": i, "checks": drops[i]} for i in sorted(drops)],
            # new episode index -> source episode index
            "index_map": {str(new): old for new, old in enumerate(kept)},
            "clipped": clipped,
            "elapsed_s": round(time.perf_counter() - t0, 3),
        }
        (out / CLEAN_LOG).write_text(json.dumps(log_data, indent=1))
        if dst.exists():  # --overwrite: swap, then delete the old one
            old = staging / "old"
            dst.rename(old)
        out.rename(dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return log_data


def _refuse_unkeepable(report: dict, kept: set[int]) -> None:
    for ep in report["episodes"]:
        if ep["episode_index"] not in kept:
            continue
        bad = sorted({f["check"] for f in ep["findings"] if f["check"] in UNKEEPABLE})
        if bad:
            raise LabVLAError(
                f"episode {ep['episode_index']} has {', '.join(bad)} and cannot be kept as it is (its rows are not "
                "what the metadata says, and clean never cuts or pads an episode to fit); drop it: take "
                f"{', '.join(bad)} out of --keep-checks"
            )


def remove_stale_staging(dst: Path) -> list[Path]:
    """Delete staging folders left next to `dst` by clean runs that were killed (their PID is gone)."""
    removed = []
    for path in dst.parent.glob(f".{dst.name}{STAGING_MARK}*"):
        pid = path.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier call in this process, finished or failed
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _fix_totals(root: Path) -> None:
    """Set info.json's totals from the episodes and tasks actually written (a source with a wrong
    total_frames would otherwise pass it on to the copy)."""
    view = open_dataset(root)
    info = dict(view.info)
    info.update(total_episodes=len(view.episodes), total_frames=sum(ep.length for ep in view.episodes),
                total_tasks=len(view.tasks), splits={"train": f"0:{len(view.episodes)}"})
    if info != view.info:
        (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))


# ---- v3.0 -----------------------------------------------------------------------------------


def _v30_subset(view: DatasetView, kept: list[int], staging: Path, out: Path, repo_id: str) -> None:
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata
    from lerobot.datasets.dataset_tools import delete_episodes

    dropped = [ep.index for ep in view.episodes if ep.index not in set(kept)]
    if not dropped:
        _copy_v30(view, out)
        return
    src = _stage_v30_source(view, set(kept), staging / "src")
    # delete_episodes only reads `.meta`, `.root` and a few settings of its source: a stand-in
    # avoids LeRobotDataset loading every data file (a broken file of a dropped episode would fail).
    source = SimpleNamespace(
        repo_id=f"local/{view.root.name}",
        root=src,
        meta=LeRobotDatasetMetadata(f"local/{view.root.name}", root=src),
        image_transforms=None,
        delta_timestamps=None,
        tolerance_s=1e-4,
    )
    delete_episodes(source, dropped, output_dir=out, repo_id=repo_id)


def _carry_episode_columns(src: Path, kept: list[int], out: Path) -> None:
    """Copy the episode metadata columns LeRobot's delete_episodes leaves behind (it writes only its own:
    tasks, length, data/videos/meta indices, stats), e.g. RoboGenesis' per-episode `annotation.<stream>`."""
    def episode_files(root: Path) -> list[Path]:
        return sorted((root / "meta" / "episodes").glob("*/*.parquet"))

    ours = set(pq.read_schema(episode_files(out)[0]).names)
    fields: dict[str, pa.Field] = {}
    by_index: dict[int, dict] = {}
    for path in episode_files(src):
        schema = pq.read_schema(path)  # files of a merged source may differ
        present = [n for n in schema.names if n not in ours]
        fields.update({n: schema.field(n) for n in present})
        for row in pq.read_table(path, columns=["episode_index", *present]).to_pylist():
            by_index[row.pop("episode_index")] = row
    if not fields:
        return
    for path in episode_files(out):
        table = pq.read_table(path)
        old = [kept[i] for i in table.column("episode_index").to_pylist()]  # delete_episodes renumbers 0..N-1
        for field_ in fields.values():
            table = table.append_column(field_, pa.array([by_index[o].get(field_.name) for o in old], field_.type))
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)


def _copy_v30(view: DatasetView, out: Path) -> None:
    """Copy meta/ and the files the episodes point to (not stray files: LeRobot would load every
    parquet under data/)."""
    shutil.copytree(view.root / "meta", out / "meta")
    if (view.root / "images").is_dir():
        shutil.copytree(view.root / "images", out / "images")
    files = {ep.data_path for ep in view.episodes} | {v.path for ep in view.episodes for v in ep.videos.values()}
    for rel in sorted(files):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(view.root / rel, out / rel)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst, target_is_directory=src.is_dir())


def _stage_v30_source(view: DatasetView, kept: set[int], root: Path) -> Path:
    """A view of the source where data files hold only the kept episodes' rows (cut by position)."""
    shutil.copytree(view.root / "meta", root / "meta")
    for name in ("videos", "images"):
        if (view.root / name).is_dir():
            _link(view.root / name, root / name)
    by_file: dict[Path, list] = {}
    for ep in view.episodes:
        by_file.setdefault(ep.data_path, []).append(ep)
    starts = file_starts(view)
    for rel, eps in by_file.items():
        keep = [ep for ep in eps if ep.index in kept]
        if not keep:
            continue  # never opened by delete_episodes
        if len(keep) == len(eps):
            _link(view.root / rel, root / rel)
            continue
        pf = pq.ParquetFile(view.root / rel)
        # The rows of each episode as scan found them (by episode_index, else metadata offsets).
        labels, index = read_row_ids(pf)
        ranges = episode_rows(labels, eps, starts[rel], index)
        table = pf.read()
        parts = [table.slice(lo, hi - lo) for lo, hi in sorted(ranges[ep.index] for ep in keep)]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(parts), root / rel)
    return root


# ---- v2.1 -----------------------------------------------------------------------------------


def _v21_subset(view: DatasetView, kept: list[int], out: Path) -> None:
    """Copy the kept episodes of a v2.1 dataset into `out`, re-indexed 0..N-1 (still v2.1)."""
    from lerobot.datasets.utils import LEGACY_EPISODES_PATH, LEGACY_EPISODES_STATS_PATH, LEGACY_TASKS_PATH
    from lerobot.scripts.convert_dataset_v21_to_v30 import load_jsonlines

    info = dict(view.info)
    chunks_size = int(info.get("chunks_size", 1000))
    data_tpl, video_tpl = info["data_path"], info.get("video_path")
    refs = {ep.index: ep for ep in view.episodes}
    legacy_stats_path = view.root / LEGACY_EPISODES_STATS_PATH
    legacy_stats = (
        {item["episode_index"]: item["stats"] for item in load_jsonlines(legacy_stats_path)}
        if legacy_stats_path.is_file()
        else {}
    )
    (out / "meta").mkdir(parents=True)
    shutil.copy(view.root / LEGACY_TASKS_PATH, out / LEGACY_TASKS_PATH)

    episodes, stats_lines, total = [], [], 0
    for new, old in enumerate(kept):
        ref = refs[old]
        table = pq.read_table(view.root / ref.data_path)
        n = table.num_rows
        for name, values in (("episode_index", np.full(n, new)), ("index", np.arange(total, total + n))):
            if name in table.column_names:
                i = table.column_names.index(name)
                table = table.set_column(i, name, pa.array(values, type=table.schema.field(name).type))
        dst_path = out / data_tpl.format(episode_chunk=new // chunks_size, episode_index=new)
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, dst_path)
        for key, vref in ref.videos.items():
            dst_video = out / video_tpl.format(episode_chunk=new // chunks_size, video_key=key, episode_index=new)
            dst_video.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(view.root / vref.path, dst_video)
        episodes.append({"episode_index": new, "tasks": ref.tasks, "length": n})
        # The converter aggregates these; numeric ones are recomputed after conversion anyway.
        stats_lines.append({"episode_index": new, "stats": legacy_stats.get(old) or _numeric_stats(view, table)})
        total += n

    _write_jsonl(out / LEGACY_EPISODES_PATH, episodes)
    _write_jsonl(out / LEGACY_EPISODES_STATS_PATH, stats_lines)
    info.update(
        total_episodes=len(kept),
        total_frames=total,
        total_chunks=(len(kept) - 1) // chunks_size + 1,
        total_videos=len(kept) * len(view.video_keys),
        splits={"train": f"0:{len(kept)}"},
    )
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))


def _numeric_stats(view: DatasetView, table: pa.Table) -> dict:
    from lerobot_labvla.data_process.reader import column_to_numpy
    from lerobot_labvla.data_process.stats import episode_stats

    cols = {k: column_to_numpy(table.column(k)) for k in view.numeric_keys(True) if k in table.column_names}
    return {k: {s: np.asarray(v).tolist() for s, v in ft.items()} for k, ft in episode_stats(view, cols).items()}


def _write_jsonl(path: Path, items: list[dict]) -> None:
    with open(path, "w") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")


def _convert_v21(root: Path, repo_id: str) -> None:
    """LeRobot's official converter, in place on our staged copy (it leaves the v2.1 as root_old)."""
    from lerobot.scripts.convert_dataset_v21_to_v30 import convert_dataset

    try:
        convert_dataset(repo_id=repo_id, root=root, push_to_hub=False)
    except Exception as exc:  # the converter raises bare ValueError/KeyError on odd layouts
        raise LabVLAError(f"LeRobot's v2.1→v3.0 converter failed on the kept episodes: {type(exc).__name__}: {exc}") from exc
    shutil.rmtree(root.parent / f"{root.name}_old", ignore_errors=True)


# ---- on the v3.0 result ---------------------------------------------------------------------


def _clip_actions(root: Path, bounds: dict) -> dict:
    """Clip `action` to the report's [low, high] in every data file; return clipped value counts per episode."""
    from lerobot.datasets.io_utils import write_table_one_row_group_per_episode

    low = np.array([-np.inf if v is None else v for v in bounds["low"]], dtype=np.float64)
    high = np.array([np.inf if v is None else v for v in bounds["high"]], dtype=np.float64)
    counts: dict[str, int] = {}
    for path in sorted((root / "data").glob("*/*.parquet")):
        table = pq.read_table(path)
        if ACTION not in table.column_names:
            continue
        field_ = table.schema.field(ACTION)
        col = table.column(ACTION).combine_chunks()
        values = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
        clipped = np.clip(values, low, high).astype(values.dtype)
        changed = (clipped != values) & np.isfinite(values)
        if not changed.any():
            continue
        ep_idx = table.column("episode_index").to_numpy()
        for e, c in zip(*np.unique(ep_idx[changed.any(1)], return_counts=True), strict=True):
            counts[str(int(e))] = counts.get(str(int(e)), 0) + int(c)
        flat = pa.array(clipped.reshape(-1), type=field_.type.value_type)
        new_col = pa.FixedSizeListArray.from_arrays(flat, values.shape[1]) if pa.types.is_fixed_size_list(field_.type) \
            else pa.ListArray.from_arrays(pa.array(np.arange(0, clipped.size + 1, values.shape[1], dtype=np.int32)), flat)
        table = table.set_column(table.column_names.index(ACTION), field_, new_col)
        write_table_one_row_group_per_episode(table, path)
    return counts


def _recompute_stats(root: Path) -> None:
    """Recompute numeric stats per episode (meta/episodes) and overall (meta/stats.json)."""
    import pandas as pd
    from lerobot.datasets.compute_stats import aggregate_stats
    from lerobot.datasets.io_utils import load_stats, write_stats

    view = open_dataset(root)
    new: dict[int, dict] = {}
    for idx, stats, error in iter_episode_stats(view):
        if stats is None:
            raise LabVLAError(f"cleaned dataset {root} has an unreadable episode {idx} ({error}); please report this bug")
        new[idx] = stats
    keys = sorted({k for s in new.values() for k in s})
    for path in sorted((root / "meta" / "episodes").glob("*/*.parquet")):
        df = pd.read_parquet(path)
        for key in keys:
            for stat in next(iter(new.values()))[key]:
                df[f"stats/{key}/{stat}"] = [np.asarray(new[int(i)][key][stat]).tolist() for i in df["episode_index"]]
        df.to_parquet(path, index=False)
    overall = aggregate_stats(list(new.values()))
    old = load_stats(root) or {}
    for key, value in old.items():  # image/video stats are not recomputed (as LeRobot's recompute_stats)
        overall.setdefault(key, value)
    write_stats(overall, root)
