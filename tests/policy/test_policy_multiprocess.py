"""`lerobot-train` under `accelerate launch` with 2 processes: DDP on CPU (gloo), FSDP on 2+ GPUs.

accelerate 1.x has no FSDP on CPU (its CPU path is MULTI_CPU/DDP only), so the accelerate FSDP run needs
GPUs; the shipped configs/accelerate/fsdp.yaml is what it launches with. Our FSDP shard units are tested
on CPU in test_policy_fsdp_cpu.py (torch's FSDP2, and FSDP1 wrapped as that yaml asks, 2 gloo ranks
under torchrun, without accelerate's `prepare` or lerobot-train).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from policy_helpers import BIN, TINY_POLICY, assert_ok, train_args
from synthetic import make_dataset

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: list[str], dataset, out: Path, *extra: str, device: str = "cpu", timeout: int = 420):
    """`accelerate launch` pinned to the loopback interface, in its own process group.

    A CI box hung here for 15 minutes: with nothing pinned, gloo picks the address the hostname resolves to
    and torchrun a rendezvous port of its own, either of which can be unreachable in a sandbox, and the
    process group then waits out its 30-minute timeout. Pinning both to 127.0.0.1 removes that, and the
    timeout (below pytest's 900 s) kills the whole tree and shows the ranks' output instead of a bare hang.
    """
    cmd = [
        str(BIN / "accelerate"),
        "launch",
        *launcher,
        "--num_processes=2",
        "--num_machines=1",
        "--main_process_ip=127.0.0.1",
        f"--main_process_port={free_port()}",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        str(BIN / "lerobot-train"),
        *[a for a in TINY_POLICY if not a.startswith("--policy.device=")],
        f"--policy.device={device}",
        *train_args(dataset, out, *extra, steps=3),
    ]
    done = finish_ranks(start_ranks(cmd), timeout)
    assert_ok(done)
    return done


def start_ranks(cmd: list[str]) -> subprocess.Popen:
    """A multi-process launcher (accelerate launch, torchrun) on the loopback interface, in its own process group."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def finish_ranks(proc: subprocess.Popen, timeout: int) -> subprocess.CompletedProcess:
    """Wait for `start_ranks`; past `timeout` kill the whole group and fail with the ranks' output."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(proc.args[:3])} ran past {timeout} s; its output:\n{(stdout + stderr)[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def loads_and_samples(checkpoint: Path) -> None:
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    policy = LabVLAPolicy.from_pretrained(checkpoint)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    obs = {
        "observation.images.front": torch.rand(3, 32, 32),
        "observation.images.wrist": torch.rand(3, 32, 32),
        "observation.state": torch.zeros(8),
        "task": "pick up the beaker",
    }
    policy.eval()
    chunk = post(policy.predict_action_chunk(pre(obs)))
    assert chunk.shape == (1, policy.config.chunk_size, 7) and torch.isfinite(chunk).all()


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_and_the_checkpoint_samples(tmp_path):
    ds = make_dataset(tmp_path / "ds", repo_id="local/ddp", n_episodes=2, frames=20)
    proc = launch(["--multi_gpu"], ds, tmp_path / "out", "--batch_size=2")
    text = proc.stdout + proc.stderr
    assert "Effective batch size: 2 x 2 = 4" in text, text[-3000:]
    assert "FAST tokenizer fitted on rank 0 and sent to 1 ranks" in text
    assert re.search(r"step:3 .*loss:", text)
    loads_and_samples(tmp_path / "out" / "checkpoints" / "last" / "pretrained_model")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP under accelerate needs 2 GPUs (no CPU FSDP in accelerate)")
def test_fsdp_two_gpus_train_with_the_shipped_config_and_the_checkpoint_samples(tmp_path):
    ds = make_dataset(tmp_path / "ds", repo_id="local/fsdp", n_episodes=2, frames=20)
    launch(["--config_file", str(REPO / "configs" / "accelerate" / "fsdp.yaml")], ds, tmp_path / "out", device="cuda")
    loads_and_samples(tmp_path / "out" / "checkpoints" / "last" / "pretrained_model")
