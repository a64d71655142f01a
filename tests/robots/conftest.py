"""franky-sim (the libfranka protocol on loopback) and ZMQ test cameras, as subprocess fixtures."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest


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


@pytest.fixture
def franky_sim() -> Iterator:
    """Factory: `franky_sim(reflex_after=None, reflexes=1) -> hostname` of a fresh franky-sim FR3."""
    procs = []

    def start(reflex_after: float | None = None, reflexes: int = 1) -> str:
        args = ["robot"] + ([f"--reflex-after={reflex_after}", f"--reflexes={reflexes}"] if reflex_after else [])
        proc, host = _start(args)
        procs.append(proc)
        return host

    yield start
    for proc in procs:
        _stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def zmq_cameras() -> Iterator:
    """Factory: `zmq_cameras(names) -> port` of a publisher LeRobot's ZMQ camera reads (96x64 @ 30 fps)."""
    procs = []

    def start(names: tuple[str, ...] = ("front",)) -> int:
        port = free_port()
        proc, _ = _start(["cameras", f"--port={port}", f"--names={','.join(names)}", "--size=96x64"])
        procs.append(proc)
        return port

    yield start
    for proc in procs:
        _stop(proc)
