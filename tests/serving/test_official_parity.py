"""What the official LabVLA server (zjunlp/LabVLA `deployment/serve_labvla.py`) does that labvla-serve copies:
replies zero-padded to 8 action columns, zero actions for a request without any camera (opt-in here), and the
instruction's token budget (the official server cuts it silently; labvla-serve says so)."""

from __future__ import annotations

import time

import numpy as np
from fake_server import CHUNK, expected_actions
from test_websocket_server import infer, openpi_connect, openpi_obs
from websockets.sync.client import connect

from lerobot_labvla.serving import msgpack_numpy


def wait_for(cond, timeout: float = 10) -> bool:
    """The server's log lines are written by its log thread every 0.1 s."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


def fake_obs(state: np.ndarray, prompt: str = "pour the liquid", cameras: bool = True) -> dict:
    msg = {"state": state, "prompt": prompt, "language_instruction": prompt}
    if cameras:
        msg |= {f"camera_{i}_rgb": np.zeros((64, 64, 3), np.uint8) for i in (1, 2)}
    return msg


def test_actions_are_padded_to_8_and_camera_less_requests_get_zeros_only_when_asked(start_fake_server):
    state = np.linspace(-1, 1, 8).astype(np.float32)
    official = start_fake_server(cost_ms=1, action_dim=6, zero_actions_without_cameras=True)
    ws, meta = openpi_connect(official)
    with ws:
        assert meta["action_dim"] == 6 and meta["pad_action_dim"] == 8  # as official: the model's width, padded replies
        reply = infer(ws, fake_obs(state))
        want = np.zeros((CHUNK, 8), np.float32)
        want[:, :6] = expected_actions(state, "pour the liquid")[:, :6]
        np.testing.assert_array_equal(reply["actions"], want)
        np.testing.assert_array_equal(reply["action"], want)
        blind = infer(ws, fake_obs(state, cameras=False))
        assert not isinstance(blind, str), blind
        np.testing.assert_array_equal(blind["actions"], np.zeros((CHUNK, 8), np.float32))
        assert not isinstance(infer(ws, fake_obs(state)), str)  # the connection serves on
    assert wait_for(lambda: "no camera image in the request; answering zero actions" in official.log()), official.log()
    with connect(official.url + "/simple", open_timeout=30) as simple:  # not the official protocol: unpadded
        img = np.zeros((64, 64, 3), np.uint8).tolist()
        simple.send(msgpack_numpy.packb({"images": [img, img], "state": state.tolist(), "instruction": "x"}))
        assert all(len(row) == 6 for row in msgpack_numpy.unpackb(simple.recv(30))["actions"])

    ours = start_fake_server(cost_ms=1, action_dim=6, pad_action_dim=0)
    ws, _ = openpi_connect(ours)
    with ws:
        assert infer(ws, fake_obs(state))["actions"].shape == (CHUNK, 6)
        err = infer(ws, fake_obs(state, cameras=False))
        assert isinstance(err, str) and err.startswith("missing observation key(s): observation.images.front"), err


def test_prompt_is_capped_in_the_checkpoints_tokens(server):
    # The tiny checkpoint's byte-level tokenizer makes one token per ASCII character; its budget is 48.
    ws, meta = openpi_connect(server)
    with ws:
        assert meta["max_prompt_tokens"] == 48
        assert not isinstance(infer(ws, openpi_obs(prompt="p" * 48)), str)
        err = infer(ws, openpi_obs(prompt="p" * 49))
        assert isinstance(err, str) and "prompt/task: 49 tokens, over this checkpoint's limit of 48" in err, err
        err = infer(ws, openpi_obs(prompt="é" * 30))  # 30 characters, 60 byte tokens
        assert isinstance(err, str) and "60 tokens" in err, err
        assert not isinstance(infer(ws, openpi_obs()), str)
