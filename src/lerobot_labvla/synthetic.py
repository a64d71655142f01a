"""Tiny LeRobot v3 datasets built on the fly with LeRobot's own writer (`LeRobotDataset.create`).

Used by `make demo` and by every test area (tests import it as `from synthetic import make_dataset`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_dataset(
    root: Path,
    *,
    repo_id: str = "local/synthetic",
    n_episodes: int = 2,
    frames: int = 20,
    state_dim: int = 8,
    action_dim: int = 7,
    cameras: tuple[str, ...] = ("front", "wrist"),
    image_size: int = 32,
    fps: int = 10,
    use_videos: bool = False,
    tasks: tuple[str, ...] = ("pick up the beaker", "press the button"),
    robot_type: str = "franka",
    seed: int = 0,
    nan_state_at: tuple[int, int] | None = None,
):
    """Write a memorizable dataset: each episode's actions are a fixed smooth trajectory.

    `nan_state_at=(frame, dim)` writes a NaN into episode 0's state (a corrupt recording).
    Returns the finalized `LeRobotDataset` (its `root` is `root`).
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        "observation.state": {"dtype": "float32", "shape": (state_dim,), "names": [f"s{i}" for i in range(state_dim)]},
        "action": {"dtype": "float32", "shape": (action_dim,), "names": [f"a{i}" for i in range(action_dim)]},
    }
    for cam in cameras:
        features[f"observation.images.{cam}"] = {
            "dtype": "video" if use_videos else "image",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channels"],
        }
    ds = LeRobotDataset.create(
        repo_id,
        fps,
        features,
        root=root,
        robot_type=robot_type,
        use_videos=use_videos,
        image_writer_threads=0,
    )
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    for ep in range(n_episodes):
        phase = rng.uniform(0, np.pi)
        amp = rng.uniform(0.5, 1.0, size=action_dim).astype(np.float32)
        actions = amp[None, :] * np.sin(2 * np.pi * t[:, None] + phase + np.arange(action_dim)[None, :])
        states = amp[None, : min(state_dim, action_dim)] * np.cos(2 * np.pi * t[:, None] + phase)
        states = np.pad(states, ((0, 0), (0, max(0, state_dim - states.shape[1]))))
        if nan_state_at is not None and ep == 0:
            states[nan_state_at] = np.nan
        color = rng.integers(0, 255, size=3, dtype=np.uint8)
        for i in range(frames):
            frame = {
                "observation.state": states[i].astype(np.float32),
                "action": actions[i].astype(np.float32),
                "task": tasks[ep % len(tasks)],
            }
            for k, cam in enumerate(cameras):
                img = np.zeros((image_size, image_size, 3), dtype=np.uint8)
                img[...] = color
                # A moving bar makes frames within an episode distinguishable.
                col = int(i / max(frames - 1, 1) * (image_size - 1))
                img[:, col, k % 3] = 255
                frame[f"observation.images.{cam}"] = img
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return ds


DEPTH_KEY = "observation.depth.front"


def make_depth_dataset(root: Path, *, repo_id: str = "local/depth", n_episodes: int = 4, frames: int = 20):
    """A dataset with a depth stream for `--policy.depth_distill`: state 8, action 7 (a sine per episode,
    memorizable), one camera `front` and its depth map `observation.depth.front` (float32 (16, 16, 1),
    a plane whose tilt follows the frame)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        "observation.state": {"dtype": "float32", "shape": (8,), "names": [f"s{i}" for i in range(8)]},
        "action": {"dtype": "float32", "shape": (7,), "names": [f"a{i}" for i in range(7)]},
        "observation.images.front": {"dtype": "image", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
        DEPTH_KEY: {"dtype": "float32", "shape": (16, 16, 1), "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create(repo_id, 10, features, root=root, robot_type="franka", use_videos=False, image_writer_threads=0)
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, 16, dtype=np.float32)
    for ep in range(n_episodes):
        phase = rng.uniform(0, np.pi)
        actions = np.sin(2 * np.pi * t[:, None] + phase + np.arange(7)[None, :]).astype(np.float32)
        color = rng.integers(0, 255, size=3, dtype=np.uint8)
        for i in range(frames):
            img = np.zeros((32, 32, 3), dtype=np.uint8)
            img[...] = color
            img[:, int(i / max(frames - 1, 1) * 31), 0] = 255
            tilt = i / frames
            depth = 0.5 + tilt * ramp[None, :] + (1 - tilt) * ramp[:, None]
            ds.add_frame({
                "observation.state": np.pad(np.cos(2 * np.pi * t[i] + phase) * np.ones(7, np.float32), (0, 1)).astype(np.float32),
                "action": actions[i],
                "observation.images.front": img,
                DEPTH_KEY: depth[..., None].astype(np.float32),
                "task": ("pick up the beaker", "press the button")[ep % 2],
            })
        ds.save_episode()
    ds.finalize()
    return ds
