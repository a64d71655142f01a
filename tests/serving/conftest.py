"""Serving fixtures: a tiny checkpoint and a `labvla-serve` subprocess on a free loopback port."""

from __future__ import annotations

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


def build_act_checkpoint(root: Path) -> Path:
    """A tiny LeRobot `act` checkpoint (config + weights + processors) from a synthetic dataset."""
    from synthetic import make_dataset

    from lerobot.configs.types import FeatureType
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    ds = make_dataset(root / "dataset", repo_id="local/serving", n_episodes=1, frames=12, image_size=32)
    cfg = ACTConfig(
        chunk_size=10, n_action_steps=10, dim_model=32, n_heads=2, dim_feedforward=64,
        n_encoder_layers=1, n_decoder_layers=1, use_vae=False, pretrained_backbone_weights=None,
        device="cpu", push_to_hub=False,
    )
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    out = root / "pretrained_model"
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    assert any(f.type == FeatureType.VISUAL for f in cfg.input_features.values())
    return out


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return build_act_checkpoint(tmp_path_factory.mktemp("serving_ckpt"))


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
        [f"--policy.path={checkpoint}", "--port=0", "--device=cpu", "--max-batch=8", "--max-message-mb=1"], log
    )
    yield srv
    srv.stop()


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
