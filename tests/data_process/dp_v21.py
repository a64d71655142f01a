"""Write a LeRobot v2.1 dataset by hand (LeRobot 0.6 can no longer write one).

The layout is what `lerobot.scripts.convert_dataset_v21_to_v30` reads: one parquet per episode
under data/chunk-000/, one mp4 per episode and camera under videos/chunk-000/<key>/, and
meta/{info.json, episodes.jsonl, tasks.jsonl, episodes_stats.jsonl}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FRONT = "observation.images.front"


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_v21_dataset(
    root: Path,
    *,
    n_episodes: int = 10,
    frames: int = 40,
    fps: int = 10,
    state_dim: int = 8,
    action_dim: int = 7,
    video: bool = True,
    image_size: int = 32,
    tasks: tuple[str, ...] = ("pick up the beaker", "press the button"),
    seed: int = 0,
) -> Path:
    from lerobot.datasets.compute_stats import compute_episode_stats, get_feature_stats
    from lerobot.datasets.feature_utils import get_hf_features_from_features
    import datasets

    root = Path(root)
    features = {
        "observation.state": {"dtype": "float32", "shape": [state_dim], "names": [f"s{i}" for i in range(state_dim)]},
        "action": {"dtype": "float32", "shape": [action_dim], "names": [f"a{i}" for i in range(action_dim)]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    if video:
        features = {
            FRONT: {
                "dtype": "video",
                "shape": [image_size, image_size, 3],
                "names": ["height", "width", "channels"],
                "info": {"video.fps": fps, "video.height": image_size, "video.width": image_size,
                         "video.channels": 3, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                         "video.is_depth_map": False, "has_audio": False},
            },
            **features,
        }
    hf_features = get_hf_features_from_features(
        {k: {**v, "shape": tuple(v["shape"])} for k, v in features.items() if v["dtype"] != "video"}
    )
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    episodes, stats_lines = [], []
    for ep in range(n_episodes):
        phase = rng.uniform(0, np.pi)
        amp = rng.uniform(0.5, 1.0, size=action_dim).astype(np.float32)
        action = (amp[None] * np.sin(2 * np.pi * t[:, None] + phase + np.arange(action_dim)[None])).astype(np.float32)
        state = np.zeros((frames, state_dim), np.float32)
        state[:, : min(state_dim, action_dim)] = action[:, : min(state_dim, action_dim)] * 0.9
        task_index = ep % len(tasks)
        cols = {
            "observation.state": state,
            "action": action,
            "timestamp": (np.arange(frames) / fps).astype(np.float32),
            "frame_index": np.arange(frames, dtype=np.int64),
            "episode_index": np.full(frames, ep, dtype=np.int64),
            "index": np.arange(ep * frames, (ep + 1) * frames, dtype=np.int64),
            "task_index": np.full(frames, task_index, dtype=np.int64),
        }
        path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict({k: list(v) for k, v in cols.items()}, features=hf_features).to_parquet(path)
        stats = compute_episode_stats(cols, {k: v for k, v in features.items() if k in cols})
        if video:
            img = np.zeros((frames, image_size, image_size, 3), np.uint8)
            img[...] = rng.integers(0, 255, size=3, dtype=np.uint8)
            for i in range(frames):
                img[i, :, int(i / max(frames - 1, 1) * (image_size - 1)), 0] = 255
            _write_video(root / f"videos/chunk-000/{FRONT}/episode_{ep:06d}.mp4", img, fps)
            s = get_feature_stats(img.transpose(0, 3, 1, 2), axis=(0, 2, 3), keepdims=True)
            stats[FRONT] = {k: v if k == "count" else np.squeeze(v / 255.0, axis=0) for k, v in s.items()}
        stats_lines.append({"episode_index": ep, "stats": {k: {s: np.asarray(v).tolist() for s, v in ft.items()}
                                                            for k, ft in stats.items()}})
        episodes.append({"episode_index": ep, "tasks": [tasks[task_index]], "length": frames})

    def jsonl(name, items):
        (root / "meta" / name).write_text("".join(json.dumps(i) + "\n" for i in items))

    jsonl("episodes.jsonl", episodes)
    jsonl("episodes_stats.jsonl", stats_lines)
    jsonl("tasks.jsonl", [{"task_index": i, "task": task} for i, task in enumerate(tasks)])
    info = {
        "codebase_version": "v2.1",
        "robot_type": "franka",
        "total_episodes": n_episodes,
        "total_frames": n_episodes * frames,
        "total_tasks": len(tasks),
        "total_videos": n_episodes if video else 0,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{n_episodes}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4" if video else None,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return root
