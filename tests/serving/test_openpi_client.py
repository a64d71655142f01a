"""Interop with the real `openpi-client` package (numpy<2, so it lives in its own venv), Api-Key access,
and SIGTERM draining."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import websockets
from websockets.sync.client import connect

from lerobot_labvla.serving import msgpack_numpy

OPENPI_CLIENT = "openpi-client>=0.1,<0.2"
# openpi-client 0.1.2 imports typing_extensions without declaring it.
OPENPI_CLIENT_EXTRA = "typing_extensions>=4"


@pytest.fixture(scope="session")
def openpi_python(tmp_path_factory) -> Path:
    """A fresh venv with openpi-client from PyPI; skip (with pip's reason) only if it cannot be installed."""
    venv = tmp_path_factory.mktemp("openpi_client_venv")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", OPENPI_CLIENT, OPENPI_CLIENT_EXTRA],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        pytest.skip(f"could not install {OPENPI_CLIENT}: {proc.stderr.strip().splitlines()[-1:]}")
    return py


CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from openpi_client import websocket_client_policy as wcp
    url, api_key = sys.argv[1], (sys.argv[2] or None)
    policy = wcp.WebsocketClientPolicy(url, api_key=api_key)
    out = {"numpy": np.__version__, "metadata": policy.get_server_metadata()}
    obs = {
        "observation/image": np.random.randint(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": np.random.randint(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": np.zeros(8, np.float32),
        "prompt": "pick up the beaker",
    }
    r = policy.infer(obs)
    out["shape"], out["dtype"], out["timing"] = list(r["actions"].shape), str(r["actions"].dtype), r["server_timing"]
    bad = dict(obs, **{"observation/state": np.full(8, np.nan, np.float32)})
    try:
        policy.infer(bad)
    except RuntimeError as exc:
        out["error"] = str(exc)
    out["after_error_shape"] = list(policy.infer(obs)["actions"].shape)
    print("RESULT " + json.dumps(out, default=str))
    """
)


def run_openpi_client(py: Path, url: str, api_key: str = "") -> dict:
    proc = subprocess.run([str(py), "-c", CLIENT_SCRIPT, url, api_key], capture_output=True, text=True, timeout=120)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    return json.loads(line[-1][len("RESULT "):])


def test_openpi_client_talks_to_labvla_serve(server, openpi_python):
    out = run_openpi_client(openpi_python, server.url)
    assert out["numpy"].startswith("1.")  # really openpi-client's own numpy<2 environment
    assert out["metadata"]["policy_type"] == "labvla"
    assert out["shape"] == [8, 8] and out["dtype"] == "float32"  # 7 dims zero-padded to 8, as the official server
    assert out["timing"]["infer_ms"] > 0
    assert "Error in inference server" in out["error"] and "NaN" in out["error"]
    assert out["after_error_shape"] == [8, 8]


# A real server whose model is slowed down after warm-up, so a request is surely in flight at SIGTERM.
SLOW_SERVER = textwrap.dedent(
    """
    import sys, time
    from lerobot_labvla.serving import runner, websocket_server
    fast = runner.PolicyRunner.infer
    def slow(self, obs):
        if hasattr(self, "chunk_size"):
            time.sleep(2.0)
        return fast(self, obs)
    runner.PolicyRunner.infer = slow
    websocket_server.main(sys.argv[1:])
    """
)


@pytest.mark.slow
def test_api_key_and_sigterm_drain(checkpoint, openpi_python, tmp_path, start_server):
    srv = start_server(
        [f"--policy.path={checkpoint}", "--port=0", "--device=cpu", "--api-key=s3cret"],
        tmp_path / "serve.log",
        python_code=SLOW_SERVER,
    )
    try:
        with pytest.raises(websockets.InvalidStatus) as exc:
            connect(srv.url, open_timeout=30)
        assert exc.value.response.status_code == 401
        with pytest.raises(websockets.InvalidStatus):
            connect(srv.url, open_timeout=30, additional_headers={"Authorization": "Api-Key wrong"})
        out = run_openpi_client(openpi_python, srv.url, api_key="s3cret")
        assert out["shape"] == [10, 8]  # 7 dims + the official server's zero padding to 8

        ws = connect(srv.url, open_timeout=30, additional_headers={"Authorization": "Api-Key s3cret"})
        msgpack_numpy.unpackb(ws.recv(30))
        obs = {
            "observation/image": np.zeros((32, 32, 3), np.uint8),
            "observation/wrist_image": np.zeros((32, 32, 3), np.uint8),
            "observation/state": np.zeros(8, np.float32),
            "prompt": "pick up the beaker",
        }
        replies: list = []
        t = threading.Thread(target=lambda: replies.append(_send_recv(ws, obs)))
        t.start()
        time.sleep(0.7)  # the request is now inside the 2 s model call
        srv.proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert replies and not isinstance(replies[0], str), replies
        assert replies[0]["actions"].shape == (10, 8)  # the in-flight request was answered
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(30)
        assert closed.value.rcvd.code == 1001
        assert srv.proc.wait(30) == 0
        assert "draining: 1 request(s) in flight" in srv.log()
    finally:
        srv.stop()


def _send_recv(ws, obs):
    ws.send(msgpack_numpy.packb(obs))
    reply = ws.recv(30)
    return reply if isinstance(reply, str) else msgpack_numpy.unpackb(reply)
