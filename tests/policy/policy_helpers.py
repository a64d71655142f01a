"""Helpers for the policy tests: the tiny-policy CLI flags and a runner for LeRobot's CLIs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
