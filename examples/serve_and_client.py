"""Serve a checkpoint with `labvla-serve` (OpenPI's WebSocket protocol) and drive LabUtopia through it.

    python examples/serve_and_client.py --policy outputs/train_pick_up/checkpoints/last/pretrained_model \
        --task pick_up --steps 40

Starts the server on a free port, waits for /healthz, then a client in this process sends the
LabUtopia env's observations (`camera_1_rgb`..., `state`, `prompt`, the official evaluator's keys)
and steps the env with the returned action chunks. Stops the server at the end.
"""

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

from lerobot_labvla.envs.labutopia import CAMERAS
from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
from lerobot_labvla.serving import msgpack_numpy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"labvla-serve exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"labvla-serve not healthy after {timeout:.0f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, required=True)
    p.add_argument("--task", default="pick_up")
    p.add_argument("--image-size", type=int, default=64, help="must match the checkpoint's training data")
    p.add_argument("--steps", type=int, default=40, help="env steps to drive")
    p.add_argument("--seed", type=int, default=100_000)
    args = p.parse_args()

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "labvla-serve"), f"--policy.path={args.policy}",
                               "--port", str(port), "--device", "cpu", "--log-level", "WARNING"])
    env = LabUtopiaEnv(args.task, "id", image_size=args.image_size, episode_length=args.steps)
    try:
        wait_healthy(port, server)
        with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            metadata = msgpack_numpy.unpackb(ws.recv())
            print(f"server metadata: chunk {metadata.get('chunk_size')}, action dim {metadata.get('action_dim')}")
            obs, _ = env.reset(seed=args.seed)
            best, t, chunks = 0.0, 0, 0
            while t < args.steps:
                request = {f"camera_{i + 1}_rgb": obs["pixels"][c] for i, c in enumerate(CAMERAS)}
                request.update(state=obs["agent_pos"], prompt=env.task_description)
                ws.send(msgpack_numpy.packb(request))
                reply = ws.recv()
                if isinstance(reply, str):
                    raise SystemExit(f"server error: {reply}")
                # the OpenPI reply may be zero-padded to more columns (labvla-serve --pad-action-dim, as the
                # official server does): the robot's own dims are the first `action_dim`
                actions = np.asarray(msgpack_numpy.unpackb(reply)["actions"])[:, : metadata["action_dim"]]
                chunks += 1
                for a in actions:
                    obs, reward, term, trunc, info = env.step(np.clip(a, -1, 1).astype(np.float32))
                    best, t = max(best, reward), t + 1
                    if term or trunc or t >= args.steps:
                        break
                if term or trunc:
                    break
        print(f"drove {t} steps with {chunks} chunks from the server; success {info['is_success']}, "
              f"best progress {best:.2f}")
        return 0
    finally:
        env.close()
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
