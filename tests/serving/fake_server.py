"""`labvla-serve`'s server around a fake model with a fixed cost and checkable answers.

    python fake_server.py '{"cost_ms": 20, "max_batch": 8, "api_key": null, "max_message_mb": 8, "action_dim": 8}'

The model's actions are a function of the request alone (row t = state + t / 100 + len(prompt)), so
a client can check that the reply it got is the one for what it sent; it costs `cost_ms` per
batch whatever the batch size (a GPU-like model); a prompt containing "poison" makes it raise,
as a request that passes validation but fails inside the model would. No torch, starts in ~1 s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np

from lerobot_labvla.serving.observations import Observation, ObservationSpec
from lerobot_labvla.serving.websocket_server import InferenceServer, prepare_process

CHUNK, ACTION_DIM = 10, 8
SPEC = ObservationSpec(
    cameras={"observation.images.front": (3, 64, 64), "observation.images.wrist": (3, 64, 64)},
    vectors={"observation.state": (8,)},
    needs_task=True,
)


def expected_actions(state: np.ndarray, prompt: str) -> np.ndarray:
    """(CHUNK, ACTION_DIM): what the fake model answers for this state and prompt."""
    return (state[None, :ACTION_DIM] + np.arange(CHUNK, dtype=np.float32)[:, None] / 100 + len(prompt)).astype(np.float32)


class FakeRunner:
    spec = SPEC

    def __init__(self, cost_ms: float, action_dim: int = ACTION_DIM):
        self.cost_s = cost_ms / 1000
        self.action_dim = action_dim

    def metadata(self) -> dict:
        return {"policy_type": "fake", "chunk_size": CHUNK, "action_dim": self.action_dim}

    def infer(self, obs: list[Observation]) -> np.ndarray:
        time.sleep(self.cost_s)
        for o in obs:
            if "poison" in o.task:
                raise RuntimeError("the model cannot digest this request")
        return np.stack([expected_actions(o.vectors["observation.state"], o.task)[:, : self.action_dim] for o in obs])


def main() -> None:
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    prepare_process("INFO")
    server = InferenceServer(
        FakeRunner(cfg.get("cost_ms", 20), cfg.get("action_dim", ACTION_DIM)), "127.0.0.1", 0,
        max_batch=cfg.get("max_batch", 8), api_key=cfg.get("api_key"),
        max_message_bytes=int(cfg.get("max_message_mb", 8) * (1 << 20)),
        drain_timeout_s=cfg.get("drain_timeout_s", 30.0), max_prompt_chars=cfg.get("max_prompt_chars", 2048),
        pad_action_dim=cfg.get("pad_action_dim", 8), zero_actions_without_cameras=cfg.get("zero_actions_without_cameras", False),
    )
    asyncio.run(server.run())


if __name__ == "__main__":
    main()
