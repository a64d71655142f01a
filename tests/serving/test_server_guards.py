"""`labvla-serve`'s front door and shutdown, on the fake-model server: handshake errors, API keys,
SIGTERM draining with `/healthz` at 503 and every request already sent answered."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import websockets
from fake_server import expected_actions
from websockets.sync.client import connect

from lerobot_labvla.serving import msgpack_numpy

TIMEOUT = 30


def obs(state_value: float = 0.0, prompt: str = "pick up the beaker") -> dict:
    return {
        "observation/image": np.zeros((64, 64, 3), np.uint8),
        "observation/wrist_image": np.zeros((64, 64, 3), np.uint8),
        "observation/state": np.full(8, state_value, np.float32),
        "prompt": prompt,
    }


def raw_handshake(port: int, headers: list[bytes]) -> int:
    """Send an HTTP upgrade request with these exact header lines; → the response's status code."""
    lines = [b"GET / HTTP/1.1", b"Host: 127.0.0.1", b"Upgrade: websocket", b"Connection: Upgrade",
             b"Sec-WebSocket-Version: 13", *headers]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        return int(s.recv(4096).split(b" ", 2)[1])


KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="


def test_handshake_errors_are_400_or_401_with_one_log_line_each(start_fake_server):
    srv = start_fake_server(cost_ms=1, api_key="s3cret")
    attempts = {
        "no key": ([KEY], 401),
        "wrong key": ([KEY, b"Authorization: Api-Key nope"], 401),
        "two Authorization headers": ([KEY, b"Authorization: Api-Key s3cret", b"Authorization: Api-Key s3cret"], 400),
        "non-ASCII key": ([KEY, "Authorization: Api-Key s3crét".encode()], 401),
        "unknown scheme": ([KEY, b"Authorization: Basic s3cret"], 401),
        "no Sec-WebSocket-Key": ([b"Authorization: Api-Key s3cret"], 400),
    }
    for name, (headers, status) in attempts.items():
        assert raw_handshake(srv.port, headers) == status, name
    # Auth schemes are case-insensitive (RFC 9110); the official LabVLA client sends Bearer.
    for header in ("api-key s3cret", "API-KEY s3cret", "Bearer s3cret", "bearer s3cret"):
        with connect(srv.url, open_timeout=TIMEOUT, additional_headers={"Authorization": header}) as ws:
            msgpack_numpy.unpackb(ws.recv(TIMEOUT))
    time.sleep(0.3)  # the log writer flushes every 0.1 s
    log = srv.log()
    assert "Traceback" not in log and " 500" not in log
    refused = [ln for ln in log.splitlines() if "refused" in ln or "handshake failed" in ln]
    assert len(refused) == len(attempts), refused


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_empty_api_key_refuses_to_start(how, tmp_path):
    # It used to disable authentication silently.
    args = ["--api-key="] if how == "flag" else []
    env = {**__import__("os").environ, "LABVLA_API_KEY": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "lerobot_labvla.serving.websocket_server", f"--policy.path={tmp_path}", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: LabVLAError: --api-key (or $LABVLA_API_KEY) is empty")


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_sigterm_drains_every_request_already_sent_while_healthz_says_503(start_fake_server):
    srv = start_fake_server(cost_ms=400, max_batch=1)
    a = connect(srv.url, open_timeout=TIMEOUT, max_size=None)
    b = connect(srv.url, open_timeout=TIMEOUT, max_size=None)
    for ws in (a, b):
        msgpack_numpy.unpackb(ws.recv(TIMEOUT))
    # a: one request; b: three back to back, so two wait in the socket buffers when SIGTERM arrives.
    a.send(msgpack_numpy.packb(obs(1.0)))
    for i in range(3):
        b.send(msgpack_numpy.packb(obs(2.0 + i)))
    time.sleep(0.2)
    assert health(srv.port) == 200
    srv.proc.send_signal(signal.SIGTERM)
    statuses: list[int] = []
    poller = threading.Thread(target=lambda: statuses.extend(health(srv.port) for _ in range(5)))
    poller.start()
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(srv.url, open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 503

    replies = {"a": [a.recv(TIMEOUT)], "b": [b.recv(TIMEOUT) for _ in range(3)]}
    poller.join(TIMEOUT)
    assert statuses and set(statuses) == {503}  # the listener stays up during the drain
    for ws in (a, b):
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(TIMEOUT)
        assert closed.value.rcvd.code == 1001
    got = {k: [msgpack_numpy.unpackb(r) for r in v] for k, v in replies.items()}
    np.testing.assert_allclose(got["a"][0]["actions"], expected_actions(np.full(8, 1.0, np.float32), "pick up the beaker"))
    for i, r in enumerate(got["b"]):
        np.testing.assert_allclose(r["actions"], expected_actions(np.full(8, 2.0 + i, np.float32), "pick up the beaker"))
    assert srv.proc.wait(TIMEOUT) == 0
    assert "draining" in srv.log() and "drain timeout" not in srv.log()
