"""Helpers for the Franka tests: flags for LeRobot's CLIs against the loopback sim and cameras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run one of LeRobot's console scripts from this venv, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, env=env, timeout=timeout)


def zmq_camera_arg(port: int, names: tuple[str, ...]) -> str:
    """`--robot.cameras=...` for LeRobot's ZMQ cameras on the test publisher."""
    cams = ", ".join(
        f"{n}: {{type: zmq, server_address: 127.0.0.1, port: {port}, camera_name: {n}, width: 96, height: 64, fps: 30}}"
        for n in names
    )
    return f"--robot.cameras={{{cams}}}"
