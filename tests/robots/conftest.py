"""franky-sim (the libfranka protocol on loopback) and ZMQ test cameras, as subprocess fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from franka_helpers import _start, _stop, free_port


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
