"""Helpers for the Franka tests: flags for LeRobot's CLIs against the loopback sim and cameras."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
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


def _start(args: list[str], timeout_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start `python -m lerobot_labvla.robots.franka.sim ARGS`; return it and the address it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lerobot_labvla.robots.franka.sim", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not line or not line[0].startswith("ready "):
        proc.kill()
        raise RuntimeError(f"franka sim {args} did not start: {line} {proc.stderr.read()[-2000:]}")
    # Keep draining stdout (injected-reflex lines) so the pipe never fills.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, line[0].split()[1]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
