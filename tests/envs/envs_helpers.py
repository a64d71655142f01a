"""Helpers for the LabUtopia tests: CLI runner, expert/zero rollouts, expert dataset recorder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


BIN = Path(sys.executable).parent
IMAGE = 64


def run_cli(name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)


def record_expert_dataset(root: Path, task: str = "pick_up", episodes: int = 2, frames: int = 24):
    """LeRobot v3 dataset of the scripted expert (first `frames` steps of each episode)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.envs.labutopia import CAMERAS
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    env = LabUtopiaEnv(task, "id", image_size=IMAGE)
    features = {
        "observation.state": {"dtype": "float32", "shape": (8,), "names": [f"q{i}" for i in range(7)] + ["gripper"]},
        "action": {"dtype": "float32", "shape": (7,), "names": ["dx", "dy", "dz", "rx", "ry", "rz", "gripper"]},
    }
    for cam in CAMERAS:
        features[f"observation.images.{cam}"] = {"dtype": "image", "shape": (IMAGE, IMAGE, 3),
                                                 "names": ["height", "width", "channels"]}
    ds = LeRobotDataset.create("local/labutopia_expert", 20, features, root=root, robot_type="franka",
                               use_videos=False, image_writer_threads=0)
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        expert = env.expert()
        for _ in range(frames):
            action = expert.act()
            ds.add_frame({"observation.state": obs["agent_pos"], "action": action, "task": env.task_description,
                          **{f"observation.images.{c}": obs["pixels"][c] for c in CAMERAS}})
            obs, *_ = env.step(action)
        ds.save_episode()
    ds.finalize()
    env.close()
    return ds


TINY_LABVLA = ["--policy.type=labvla", "--policy.backbone=tiny", "--policy.device=cpu", f"--policy.image_size={IMAGE}",
               "--policy.expert_layers=2", "--policy.expert_width=64", "--policy.expert_heads=4",
               "--policy.push_to_hub=false"]
