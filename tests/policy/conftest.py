"""Fixtures for the policy tests: tiny datasets, the tiny-policy CLI flags, a CLI runner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic import make_dataset

BIN = Path(sys.executable).parent
# The debug model (configs/policy/tiny.yaml): tiny Qwen3-VL, a 2-layer 64-wide expert, 64x64 images.
TINY_POLICY = [
    "--policy.type=labvla",
    "--policy.backbone=tiny",
    "--policy.device=cpu",
    "--policy.image_size=64",
    "--policy.expert_layers=2",
    "--policy.expert_width=64",
    "--policy.expert_heads=4",
    "--policy.fast_vocab_size=512",
]
STEP_LINE = re.compile(r"step:(\d+) .*? loss:([-\d.]+)")
# LeRobot prints this torchcodec block at import on machines without FFmpeg's shared libraries
# (this one): it is LeRobot's, not ours, and the error-format tests look past it.
TORCHCODEC_NOISE = re.compile(r"WARNING:lerobot\.utils\.import_utils:Could not load libtorchcodec.*?Falling back to 'pyav' as a default decoder\.\n", re.S)


def run_cli(name: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of LeRobot's console scripts from this venv, offline."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(
        [str(BIN / name), *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def train_args(dataset, out: Path, *extra: str, steps: int = 5) -> list[str]:
    return [
        f"--dataset.repo_id={dataset.repo_id}",
        f"--dataset.root={dataset.root}",
        f"--output_dir={out}",
        f"--steps={steps}",
        "--batch_size=4",
        "--num_workers=0",
        "--log_freq=1",
        f"--save_freq={steps}",
        "--wandb.enable=false",
        *extra,
    ]


def losses(proc: subprocess.CompletedProcess) -> list[float]:
    return [float(m.group(2)) for m in STEP_LINE.finditer(proc.stdout + proc.stderr)]


def stderr_without_noise(proc: subprocess.CompletedProcess) -> str:
    return TORCHCODEC_NOISE.sub("", proc.stderr)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{stderr_without_noise(proc)[-4000:]}"


@pytest.fixture(scope="session")
def ds7(tmp_path_factory):
    """Two cameras, state 8, action 7: a memorizable Franka-like dataset."""
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds7", repo_id="local/ds7", n_episodes=2, frames=20)


@pytest.fixture(scope="session")
def ds14(tmp_path_factory):
    """Another embodiment: state 16, action 14 (bimanual-like), same cameras."""
    return make_dataset(
        tmp_path_factory.mktemp("ds") / "ds14", repo_id="local/ds14", n_episodes=2, frames=20, state_dim=16, action_dim=14, seed=1
    )
