"""`labvla-serve` over real WebSockets: both protocols, error replies, many clients, health, CLI errors."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.sync.client import connect

from lerobot_labvla.serving import msgpack_numpy

TIMEOUT = 30


def openpi_obs(**over) -> dict:
    rng = np.random.default_rng(0)
    obs = {
        "observation/image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
        "observation/state": np.zeros(8, np.float32),
        "prompt": "pick up the beaker",
    }
    obs.update(over)
    return {k: v for k, v in obs.items() if v is not None}


def openpi_connect(server, path: str = "/"):
    ws = connect(server.url + path, compression=None, max_size=None, open_timeout=TIMEOUT)
    metadata = msgpack_numpy.unpackb(ws.recv(TIMEOUT))
    return ws, metadata


def infer(ws, obs: dict):
    ws.send(msgpack_numpy.packb(obs))
    reply = ws.recv(TIMEOUT)
    return reply if isinstance(reply, str) else msgpack_numpy.unpackb(reply)


def test_openpi_protocol_metadata_then_actions(server, checkpoint):
    ws, metadata = openpi_connect(server)
    with ws:
        assert metadata["policy_type"] == "labvla"
        assert metadata["inputs"]["observation.state"] == [8]
        # The official LabVLA server's fields (deployment/serve_labvla.py), and no filesystem path.
        assert {k: metadata[k] for k in OFFICIAL_METADATA} == {
            "policy_type": "labvla", "action_dim": 7, "chunk_size": 8, "model_chunk_size": 10, "output_chunk_size": 8,
            "state_dim": 8, "max_state_dim": 32, "max_action_dim": 32, "num_inference_steps": 10, "num_cameras": 2,
        }
        assert str(checkpoint) not in repr(metadata) and "/tmp" not in repr(metadata)
        reply = infer(ws, openpi_obs())
        # 7 action dims zero-padded to 8 columns, as the official server sends them (--pad-action-dim)
        assert reply["actions"].shape == (8, 8) and reply["actions"].dtype == np.float32
        assert np.isfinite(reply["actions"]).all() and not reply["actions"][:, 7].any() and reply["actions"][:, :7].any()
        np.testing.assert_array_equal(reply["action"], reply["actions"])  # the official client reads `action`
        assert reply["server_timing"]["infer_ms"] > 0 and reply["policy_timing"]["infer_ms"] > 0
        # LeRobot-style keys reach the same inputs (flow matching samples noise, so compare shapes).
        lerobot_style = {
            "observation.images.front": openpi_obs()["observation/image"],
            "observation.images.wrist": openpi_obs()["observation/wrist_image"],
            "observation.state": np.zeros(8, np.float32),
            "task": "pick up the beaker",
        }
        again = infer(ws, lerobot_style)
        assert again["actions"].shape == reply["actions"].shape
        assert "prev_total_ms" in again["server_timing"]


def test_official_labutopia_client_keys_work_without_a_key_map(server):
    # What LabUtopia's RemoteInferenceEngine sends through openpi-client: camera_<i>_rgb (256x256, a
    # third camera this checkpoint does not read), `state`, the instruction as `prompt` and
    # `language_instruction`, plus keys it ignores.
    rng = np.random.default_rng(1)
    msg = {f"camera_{i}_rgb": rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for i in (1, 2, 3)}
    msg |= {"state": np.linspace(-0.5, 0.5, 8).astype(np.float32), "prompt": "pour the liquid",
            "language_instruction": "pour the liquid", "episode_id": 3}
    ws, _ = openpi_connect(server)
    with ws:
        reply = infer(ws, msg)
        del msg["camera_2_rgb"]  # a missing camera is a masked slot, as in the official server
        partial = infer(ws, msg)
    for r in (reply, partial):
        assert not isinstance(r, str), r
        assert r["action"].shape == (8, 8) and np.isfinite(r["action"]).all()


OFFICIAL_METADATA = ("policy_type", "action_dim", "chunk_size", "model_chunk_size", "output_chunk_size", "state_dim",
                     "max_state_dim", "max_action_dim", "num_inference_steps", "num_cameras")


def test_simple_client_sends_first_and_gets_lists(server):
    img = np.zeros((32, 32, 3), np.uint8).tolist()
    with connect(server.url + "/simple", open_timeout=TIMEOUT) as ws:
        # No metadata on this path: the client speaks first.
        ws.send(msgpack_numpy.packb({"images": [img, img], "state": [0.0] * 8, "instruction": "pick up the beaker"}))
        reply = msgpack_numpy.unpackb(ws.recv(TIMEOUT))
        assert set(reply) == {"actions"}
        assert len(reply["actions"]) == 8 and all(len(a) == 7 for a in reply["actions"])
        ws.send(msgpack_numpy.packb({"images": [img], "state": [0.0] * 8, "instruction": "x"}))
        err = msgpack_numpy.unpackb(ws.recv(TIMEOUT))
        assert "got 1 image(s)" in err["error"]


BAD_MESSAGES = {
    "missing key": (msgpack_numpy.packb(openpi_obs(**{"observation/state": None})), "missing observation key"),
    "image shape": (msgpack_numpy.packb(openpi_obs(**{"observation/image": np.zeros((224, 224), np.uint8)})), "image shape (224, 224)"),
    "image dtype": (msgpack_numpy.packb(openpi_obs(**{"observation/image": np.zeros((8, 8, 3), np.int32)})), "dtype int32"),
    "nan state": (msgpack_numpy.packb(openpi_obs(**{"observation/state": np.full(8, np.nan, np.float32)})), "NaN"),
    "malformed": (b"\xc1\xc1 not msgpack", "malformed msgpack"),
    "oversized": (msgpack_numpy.packb(openpi_obs(pad=np.zeros(2 << 20, np.uint8))), "over the server's limit"),
    "text frame": ("hello", "expected a binary msgpack frame"),
}


def test_bad_input_gets_error_text_and_connection_stays_up(server):
    ws, _ = openpi_connect(server)
    with ws:
        for name, (payload, expected) in BAD_MESSAGES.items():
            ws.send(payload)
            reply = ws.recv(TIMEOUT)
            assert isinstance(reply, str), name
            assert expected in reply, (name, reply)
        assert infer(ws, openpi_obs())["actions"].shape == (8, 8)  # same connection still serves


def test_many_clients_are_batched_and_isolated(server):
    n_clients, n_requests = 12, 4
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_clients + 1, timeout=TIMEOUT)

    def good_client(i: int) -> None:
        try:
            ws, _ = openpi_connect(server)
            with ws:
                barrier.wait()
                results[i] = [infer(ws, openpi_obs()) for _ in range(n_requests)]
        except BaseException as exc:  # reported below
            errors.append(exc)

    def bad_client() -> None:
        ws, _ = openpi_connect(server)
        barrier.wait()
        ws.send(b"\xc1 broken")
        ws.send(msgpack_numpy.packb(openpi_obs()))
        ws.close()  # hang up with a request in flight

    threads = [threading.Thread(target=good_client, args=(i,)) for i in range(n_clients - 1)]
    threads.append(threading.Thread(target=bad_client))
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert not errors, errors
    assert len(results) == n_clients - 1
    replies = [r for rs in results.values() for r in rs]
    assert all(not isinstance(r, str) and r["actions"].shape == (8, 8) for r in replies)
    assert max(r["server_timing"]["batch_size"] for r in replies) > 1, "concurrent requests were never batched"
    assert server.proc.poll() is None


def test_healthz_and_unknown_path(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=TIMEOUT) as resp:
        assert resp.status == 200 and resp.read() == b"OK\n"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/nope", timeout=TIMEOUT)
    assert exc.value.code == 404


def test_request_log_line_has_latency(server):
    ws, _ = openpi_connect(server)
    with ws:
        infer(ws, openpi_obs())
    assert "infer_ms=" in server.log() and "total_ms=" in server.log()


@pytest.mark.slow
def test_cli_bad_checkpoint_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lerobot_labvla.serving.websocket_server", f"--policy.path={tmp_path}", "--port=0"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: LabVLAError:")
    assert "config.json" in proc.stderr


def test_fast_request_log_line_is_what_logging_would_print(monkeypatch):
    # labvla-serve formats its per-request line itself (cheaper than a LogRecord); it must read exactly
    # like the rest of the server's log, so log tooling can parse one format.
    import logging
    import queue

    from lerobot_labvla.serving import websocket_server as ws_mod
    from lerobot_labvla.serving.batching import Result

    t = 1_790_000_123.4567
    monkeypatch.setattr(ws_mod.time, "time", lambda: t)
    records: queue.SimpleQueue = queue.SimpleQueue()
    formatter = logging.Formatter(ws_mod.LOG_FORMAT)
    writer = ws_mod._LogWriter(records, formatter)
    result = Result(np.zeros((10, 7), np.float32), infer_ms=12.345, queue_ms=0.25, batch_size=3)
    writer.access("127.0.0.1:5555", "/", 7, result, 14.06)
    fast = records.get_nowait()

    record = logging.LogRecord("lerobot_labvla.serving.server", logging.INFO, "", 0, ws_mod.ACCESS_FORMAT,
                               ("127.0.0.1:5555", "/", 7, 3, 0.25, 12.345, 14.06), None)
    record.created, record.msecs = t, (t - int(t)) * 1000
    assert fast == formatter.format(record)
    assert fast.endswith("127.0.0.1:5555 / #7 ok batch=3 queue_ms=0.2 infer_ms=12.3 total_ms=14.1")


def test_a_lone_client_is_answered_on_the_event_loop_until_a_second_one_connects():
    # The server tells the batcher when one client is connected: its model calls then run on the event
    # loop (no thread hop); with two connected, even one idle, they go back to the worker thread so
    # the loop stays free for the other. Answers stay right either way.
    import asyncio
    import gc
    import time

    from fake_server import FakeRunner, expected_actions

    from lerobot_labvla.serving.websocket_server import InferenceServer

    threads: list[str] = []

    class Recording(FakeRunner):
        def infer(self, obs):
            threads.append(threading.current_thread().name)
            return super().infer(obs)

    srv = InferenceServer(Recording(cost_ms=2), "127.0.0.1", 0, pad_action_dim=0)
    ready, loops = threading.Event(), []

    def on_ready(port: int) -> None:
        loops.append(asyncio.get_running_loop())
        ready.set()

    loop_thread = threading.Thread(target=lambda: asyncio.run(srv.run(on_ready=on_ready)), name="server-loop", daemon=True)
    loop_thread.start()
    try:
        assert ready.wait(TIMEOUT)
        url = f"ws://127.0.0.1:{srv.port}"
        cams = {"observation/image": np.zeros((64, 64, 3), np.uint8), "observation/wrist_image": np.zeros((64, 64, 3), np.uint8)}

        def ask(ws, i: int) -> str:
            state = np.full(8, i, np.float32)
            reply = infer(ws, {**cams, "observation/state": state, "prompt": "go"})
            np.testing.assert_array_equal(reply["actions"], expected_actions(state, "go"))
            return threads[-1]

        with connect(url, compression=None, max_size=None, open_timeout=TIMEOUT) as a:
            a.recv(TIMEOUT)  # metadata
            alone = [ask(a, i) for i in range(4)]
            assert alone[0] != "server-loop" and alone[1:] == ["server-loop"] * 3, alone
            with connect(url, compression=None, max_size=None, open_timeout=TIMEOUT) as b:
                b.recv(TIMEOUT)
                assert "server-loop" not in [ask(a, i) for i in range(3)], threads
                assert ask(b, 9) != "server-loop"
            deadline = time.monotonic() + TIMEOUT  # the server sees b leave a moment later
            while ask(a, 0) != "server-loop":
                assert time.monotonic() < deadline, threads
    finally:
        if loops:
            loops[0].call_soon_threadsafe(srv.request_stop)
        loop_thread.join(TIMEOUT)
        assert not loop_thread.is_alive()
        gc.unfreeze()  # `run` froze this test process's objects
