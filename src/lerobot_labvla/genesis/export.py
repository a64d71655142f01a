"""Staged episodes -> a LeRobot v3.0 dataset, written with LeRobot's own writer, published atomically.

The published dataset at `out` is only ever replaced whole: new episodes are appended to a copy
(`<out>.partial`, via `LeRobotDataset.resume`), finalized, then exchanged with `out` in one atomic
renameat2 call. A run killed at any moment leaves either the previous dataset or the new one at
`out`, and the staged episodes to retry.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from lerobot_labvla.genesis import annotate

REPORT = "generation_report.json"
# Encode video frames as they are added (LeRobot's streaming encoder) instead of writing PNGs and
# encoding them at save_episode: 3.5 s instead of 8.4 s per 97-frame, 3-camera episode at 128 px.
STREAMING = True
# LeRobot's streaming encoder is built for live recording: a frame that waits > 0.1 s for room in its queue
# (30 frames by default) is dropped, and on a busy machine whole episodes came out a frame short. Offline
# nothing is lost by waiting: a queue that holds any episode (drained at save_episode) never drops.
ENCODER_QUEUE = 100_000
TEXT_EPISODE_STREAMS = {"success_explanation"}  # stored as plain text; the other per-episode streams as JSON


def dataset_features(objects: list[str], cameras: tuple[str, ...], image_size: int,
                     depth_cameras: tuple[str, ...] = (), robot: str = "fr3") -> dict[str, dict]:
    """The dataset schema: LabUtopia's observation/action (same names as lerobot-eval sees) + annotations.

    `depth_cameras` (`generate --depth`) add LeRobot depth-map videos `observation.depth.<camera>` in metres
    (LeRobot's `is_depth_map` flag: `meta.depth_keys` lists them, its lossless 12-bit HEVC depth codec
    stores them; the key is what the policy's depth distillation reads).
    """
    from lerobot_labvla.envs.labutopia import ACTION_DIMS
    from lerobot_labvla.sim.robots import get_profile

    assert ACTION_DIMS["ee_delta"] == 7  # the names below describe exactly these
    profile = get_profile(robot)
    dof = profile.arms[0].dof
    # The state is the robot profile's own: per arm, its joint angles + gripper width; the action one ee_delta
    # block per arm. A bimanual profile prefixes the names with the arm ("left.q1", ..., "right.gripper").
    pre = [f"{a.name}." if profile.bimanual else "" for a in profile.arms]
    features = {
        "observation.state": {"dtype": "float32", "shape": (profile.state_dim,),
                               "names": [p + n for p, a in zip(pre, profile.arms, strict=True)
                                         for n in [f"q{i}" for i in range(1, a.dof + 1)] + ["gripper"]]},
        "action": {"dtype": "float32", "shape": (profile.action_dim,),
                   "names": [p + n for p in pre for n in ("dx", "dy", "dz", "rx", "ry", "rz", "gripper")]},
    }
    for cam in cameras:
        features[f"observation.images.{cam}"] = {"dtype": "video", "shape": (image_size, image_size, 3),
                                                 "names": ["height", "width", "channels"]}
    for cam in depth_cameras:
        features[depth_key(cam)] = {"dtype": "video", "shape": (image_size, image_size, 1),
                                    "names": ["height", "width", "channels"], "info": {"is_depth_map": True}}
    features.update(annotate.frame_features(objects, cameras, image_size, dof))
    return features


def depth_key(camera: str) -> str:
    return f"observation.depth.{camera}"


def recover(out: Path) -> None:
    """Finish a swap a kill interrupted (`out` missing but `<out>.old` or `<out>.partial` present)."""
    old, partial = _sibling(out, "old"), _sibling(out, "partial")
    if not out.exists() and old.exists():
        os.replace(old, out)
    if old.exists():
        shutil.rmtree(old)
    if partial.exists():
        shutil.rmtree(partial)


def _sibling(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.name}.{tag}")


def load_report(out: Path) -> dict | None:
    p = out / REPORT
    return json.loads(p.read_text()) if p.is_file() else None


def publish(out: Path, repo_id: str, staged: list[Path], report: dict, fps: int) -> dict:
    """Append `staged` episodes to the dataset at `out` (creating it), write the report, swap in atomically.

    Returns seconds spent {"encode": add_frame (streaming video encoder), "write": save_episode + finalize,
    "copy": copying the previous dataset}.
    """
    from lerobot.configs.video import DepthEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    # The encoders print banners per video per episode at their default level (info): SVT-AV1 (LeRobot's RGB
    # codec) reads SVT_LOG when an encoder opens (1 = errors only; a value the user set wins), x265 (depth) its
    # log-level parameter.
    os.environ.setdefault("SVT_LOG", "1")
    depth_encoder = DepthEncoderConfig(extra_options={"x265-params": "lossless=1:log-level=error"})
    recover(out)
    work = _sibling(out, "partial")
    t0 = time.perf_counter()
    if (out / "meta" / "info.json").is_file():
        shutil.copytree(out, work)
        t_copy = time.perf_counter() - t0
        ds = LeRobotDataset.resume(repo_id, root=work, depth_encoder=depth_encoder, streaming_encoding=STREAMING,
                                   encoder_queue_maxsize=ENCODER_QUEUE)
        first_index = ds.meta.total_episodes
    else:
        t_copy = 0.0
        objs, cams, size, depth_cams, robot = _schema_of(staged[0])
        # robot_type: the profile name (the FR3's stays "franka", what lerobot-record --robot.type=franka writes).
        ds = LeRobotDataset.create(repo_id, fps, dataset_features(objs, cams, size, depth_cams, robot), root=work,
                                   robot_type="franka" if robot == "fr3" else robot, use_videos=True,
                                   image_writer_threads=0, depth_encoder=depth_encoder, streaming_encoding=STREAMING,
                                   encoder_queue_maxsize=ENCODER_QUEUE)
        first_index = 0
    t_encode = t_write = 0.0
    columns: dict[int, dict[str, str]] = {}
    for k, path in enumerate(staged):
        with np.load(path) as z:
            frames = {key: z[key] for key in z.files}
        meta = json.loads(str(frames.pop("episode_meta")))
        task = str(frames.pop("task"))
        frames.pop("object_names", None)
        n = len(frames["state"])
        t1 = time.perf_counter()
        for t in range(n):
            frame = {"observation.state": frames["state"][t], "action": frames["action"][t], "task": task}
            for key, value in frames.items():
                if key.startswith("pixels."):
                    frame[f"observation.images.{key.removeprefix('pixels.')}"] = value[t]
                elif key.startswith("depth."):
                    frame[depth_key(key.removeprefix("depth."))] = value[t][..., None]  # (H, W, 1) float32 m
                elif key.startswith("annotation."):
                    frame[key] = str(value[t]) if value.dtype.kind == "U" else value[t]
            ds.add_frame(frame)  # the streaming encoder takes the images here
        t2 = time.perf_counter()
        ds.save_episode()  # waits for the encoder, writes parquet and the episode's stats
        t3 = time.perf_counter()
        t_encode, t_write = t_encode + t2 - t1, t_write + t3 - t2
        columns[first_index + k] = episode_columns(meta)
    t1 = time.perf_counter()
    ds.finalize()
    bad = video_mismatches(work, range(first_index, first_index + len(staged)))
    if bad:  # never publish an episode whose video and data disagree: drop it, write the batch again
        shutil.rmtree(work)
        keep = [p for k, p in enumerate(staged) if first_index + k not in bad]
        dropped = [p for k, p in enumerate(staged) if first_index + k in bad]
        timings = publish(out, repo_id, keep, report, fps) if keep else {"encode": 0.0, "write": 0.0, "copy": 0.0}
        timings["dropped"] = [str(p) for p in dropped] + timings.get("dropped", [])
        return timings
    _add_episode_columns(work, columns)
    (work / REPORT).write_text(json.dumps(report, indent=2))
    t_write += time.perf_counter() - t1
    _swap_in(work, out)
    return {"encode": t_encode, "write": t_write, "copy": t_copy}


def episode_columns(meta: dict) -> dict[str, str]:
    """Per-episode streams as `annotation.<stream>` columns of LeRobot's episode metadata: text as is, the rest JSON.

    Strings keep the meta/episodes schema the same for every episode (nested structs would not: object
    names and step counts differ), so LeRobot's loader, `lerobot-edit-dataset` merge and `labvla-data clean`
    carry them.
    """
    return {f"annotation.{k}": v if k in TEXT_EPISODE_STREAMS else json.dumps(v) for k, v in meta.items()}


def _add_episode_columns(root: Path, columns: dict[int, dict[str, str]]) -> None:
    """Write `columns` (episode index -> column -> value) into the rows of meta/episodes/*.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(next(iter(columns.values()))) if columns else []
    for path in sorted((root / "meta" / "episodes").rglob("*.parquet")):
        table = pq.read_table(path)
        index = table.column("episode_index").to_pylist()
        if not any(i in columns for i in index):
            continue  # an earlier publish's file: written whole then, never touched again
        for name in names:
            old = table.column(name).to_pylist() if name in table.column_names else [None] * len(index)
            values = pa.array([columns[i][name] if i in columns else v for i, v in zip(index, old)], pa.string())
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, values)
            else:
                table = table.append_column(name, values)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)


def episode_annotations(root: Path) -> list[dict]:
    """The per-episode annotation streams of a RoboGenesis dataset, decoded, one dict per episode in index order.

    The same values as `LeRobotDataset(...).meta.episodes[i]["annotation.<stream>"]` (JSON text there).
    """
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((Path(root) / "meta" / "episodes").rglob("*.parquet")):
        names = [n for n in pq.read_schema(path).names if n == "episode_index" or n.startswith("annotation.")]
        rows += pq.read_table(path, columns=names).to_pylist()
    out = []
    for row in sorted(rows, key=lambda r: r["episode_index"]):
        ann = {"episode_index": row["episode_index"]}
        for key, value in row.items():
            if key.startswith("annotation.") and value is not None:
                stream = key.removeprefix("annotation.")
                ann[stream] = value if stream in TEXT_EPISODE_STREAMS else json.loads(value)
        out.append(ann)
    return out


def video_mismatches(root: Path, episodes) -> dict[int, str]:
    """Episodes whose video segment (LeRobot's from/to timestamps) does not hold one frame per data row."""
    import pyarrow.parquet as pq

    info = json.loads((root / "meta" / "info.json").read_text())
    fps, wanted = info["fps"], set(episodes)
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    bad = {}
    for path in sorted((root / "meta" / "episodes").rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        for row in rows:
            if row["episode_index"] not in wanted:
                continue
            for key in video_keys:
                frames = round((row[f"videos/{key}/to_timestamp"] - row[f"videos/{key}/from_timestamp"]) * fps)
                if frames != row["length"]:
                    bad[row["episode_index"]] = f"{key}: {frames} video frames, {row['length']} rows"
    return bad


def _swap_in(new: Path, out: Path) -> None:
    """Make `new` the directory at `out`: one atomic exchange on Linux (renameat2), else two renames."""
    if out.exists() and _exchange(new, out):
        shutil.rmtree(new)  # now holds the previous dataset
        return
    old = _sibling(out, "old")
    if out.exists():
        os.replace(out, old)  # a kill right here leaves `<out>.old`, which recover() moves back
    os.replace(new, out)
    if old.exists():
        shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _schema_of(path: Path) -> tuple[list[str], tuple[str, ...], int, tuple[str, ...], str]:
    with np.load(path) as z:
        meta = json.loads(str(z["episode_meta"]))
        objects = json.loads(str(z["object_names"]))
    em = meta["episode_metadata"]
    return (objects, tuple(em["cameras"]), int(em["image_size"]), tuple(em.get("depth_cameras", ())),
            em.get("robot", "fr3"))


def write_report(out: Path, report: dict) -> None:
    """Rewrite only the report inside a published dataset (temp file, then rename)."""
    tmp = out / (REPORT + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / REPORT)
