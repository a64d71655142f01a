"""`labvla-policy-server` serves labvla to LeRobot's unchanged `robot_client` over gRPC (loopback)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

# robot_client itself, unchanged; the only addition is importing the test robot so its type is known.
ROBOT_CLIENT = (
    f"import sys; sys.path.insert(0, {str(HERE)!r}); import loopback_robot; "
    "from lerobot.utils.import_utils import register_third_party_plugins; register_third_party_plugins(); "
    "from lerobot.async_inference.robot_client import async_client; async_client()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: a process exited early with {p.returncode}")
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow  # imports all of LeRobot's policies in-process
def test_allow_list_gains_plugin_policies():
    from lerobot_labvla.serving.policy_server import allow_plugin_policies

    allowed = allow_plugin_policies()
    assert "labvla" in allowed and "act" in allowed
    from lerobot.async_inference import policy_server

    assert policy_server.SUPPORTED_POLICIES is allowed  # the list the server checks, extended in place


@pytest.mark.slow
def test_robot_client_runs_labvla_end_to_end(checkpoint, tmp_path):
    port = free_port()
    env = {**os.environ, "HF_LEROBOT_CALIBRATION": str(tmp_path / "calibration")}
    server_log, client_log, actions = tmp_path / "server.log", tmp_path / "client.log", tmp_path / "actions.jsonl"
    with open(server_log, "w") as slog, open(client_log, "w") as clog:
        server = subprocess.Popen(
            [str(BIN / "labvla-policy-server"), "--host=127.0.0.1", f"--port={port}", "--fps=10",
             "--inference_latency=0", "--obs_queue_timeout=2"],
            stdout=slog, stderr=subprocess.STDOUT, env=env,
        )
        client = None
        try:
            wait_for(lambda: "PolicyServer started" in server_log.read_text(), 120, "policy server start", [server])
            client = subprocess.Popen(
                [sys.executable, "-c", ROBOT_CLIENT, "--robot.type=labvla_loopback", "--robot.id=loop",
                 f"--robot.actions_log={actions}", "--task=pick up the beaker", f"--server_address=127.0.0.1:{port}",
                 "--policy_type=labvla", f"--pretrained_name_or_path={checkpoint}", "--policy_device=cpu",
                 "--actions_per_chunk=10", "--chunk_size_threshold=0.5", "--fps=10"],
                stdout=clog, stderr=subprocess.STDOUT, env=env,
            )
            n_wanted = 25  # more than two chunks: the client asked for a second chunk and got it
            wait_for(
                lambda: actions.exists() and len(actions.read_text().splitlines()) >= n_wanted, 150,
                "actions reaching the loopback robot", [server, client],
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server ---\n{server_log.read_text()[-2500:]}\n--- client ---\n"
                                 f"{client_log.read_text()[-2500:]}") from None
        finally:
            if client is not None:
                stop(client)
            stop(server)
    rows = [json.loads(line) for line in actions.read_text().splitlines() if line.strip()]
    assert all(len(r) == 7 and all(math.isfinite(v) for v in r) for r in rows)
    assert "not supported" not in server_log.read_text()
    assert server_log.read_text().count("Action chunk #") >= 2
