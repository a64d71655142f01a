"""Serving fixtures: a tiny checkpoint and a `labvla-serve` subprocess on a free loopback port."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SERVE_START_TIMEOUT_S = 120
OUTPUT_CHUNK = 8  # the session server sends the first 8 of the checkpoint's 10 actions (--output-chunk-size)


# The debug labvla (tiny random Qwen3-VL, 2-layer 64-wide expert), trained for one step by LeRobot's own CLI.
TINY_LABVLA = [
    "--policy.type=labvla", "--policy.backbone=tiny", "--policy.device=cpu", "--policy.image_size=64",
    "--policy.expert_layers=2", "--policy.expert_width=64", "--policy.expert_heads=4", "--policy.fast_vocab_size=512",
    "--policy.push_to_hub=false",
]


def build_checkpoint(root: Path) -> Path:
    """A tiny labvla checkpoint dir (config, weights, processors, tokenizers) from `lerobot-train`."""
    from synthetic import make_dataset

    ds = make_dataset(root / "dataset", repo_id="local/serving", n_episodes=2, frames=12, image_size=32)
    out = root / "train"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lerobot-train"), *TINY_LABVLA, "--steps=1", "--batch_size=2",
         "--num_workers=0", "--save_freq=1", "--wandb.enable=false", f"--dataset.root={ds.root}",
         f"--dataset.repo_id={ds.repo_id}", f"--output_dir={out}"],
        capture_output=True, text=True, timeout=600, env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "checkpoints" / "last" / "pretrained_model"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("serving_ckpt"))


class ServerProcess:
    """A `labvla-serve` subprocess; `port` is read from its startup log line."""

    def __init__(self, args: list[str], log_path: Path, python_code: str | None = None):
        self.log_path = log_path
        self._log = open(log_path, "w")
        if python_code is None:
            cmd = [sys.executable, "-m", "lerobot_labvla.serving.websocket_server", *args]
        else:
            cmd = [sys.executable, "-c", python_code, *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log_path.read_text()
            m = re.search(r"on ws://[\d.]+:(\d+)", text)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"labvla-serve exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"labvla-serve did not start in {SERVE_START_TIMEOUT_S} s:\n{self.log_path.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server(checkpoint, tmp_path_factory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    srv = ServerProcess(
        [f"--policy.path={checkpoint}", "--port=0", "--device=cpu", "--max-batch=8", "--max-message-mb=1",
         f"--output-chunk-size={OUTPUT_CHUNK}"], log
    )
    yield srv
    srv.stop()


# `fake_server.py`'s server (fixed-cost fake model, checkable answers) in a subprocess.
FAKE_SERVER = f"import sys; sys.path.insert(0, {str(HERE)!r}); import fake_server; fake_server.main()"


@pytest.fixture
def start_fake_server(start_server, tmp_path):
    """`start_fake_server(cost_ms=20, api_key=..., ...)` → a running fake-model `ServerProcess`."""
    counter = itertools.count()

    def start(**cfg) -> ServerProcess:
        return start_server([json.dumps(cfg)], tmp_path / f"fake_server_{next(counter)}.log", python_code=FAKE_SERVER)

    return start


@pytest.fixture
def start_server():
    """Factory for extra server processes (own flags or a patched model); all stopped at test end."""
    started: list[ServerProcess] = []

    def start(args: list[str], log_path: Path, python_code: str | None = None) -> ServerProcess:
        srv = ServerProcess(args, log_path, python_code)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
