"""Fixtures for LabUtopia: a LeRobot dataset recorded from the scripted expert, and a tiny labvla
checkpoint trained on it with lerobot-train (so its input features match the env's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envs_helpers import TINY_LABVLA, record_expert_dataset, run_cli


@pytest.fixture(scope="session")
def expert_dataset(tmp_path_factory):
    return record_expert_dataset(tmp_path_factory.mktemp("labutopia") / "ds")


@pytest.fixture(scope="session")
def tiny_checkpoint(expert_dataset, tmp_path_factory) -> Path:
    """A 2-step lerobot-train run of the tiny labvla policy; returns its pretrained_model dir."""
    out = tmp_path_factory.mktemp("train") / "out"
    proc = run_cli("lerobot-train", *TINY_LABVLA, f"--dataset.repo_id={expert_dataset.repo_id}",
                   f"--dataset.root={expert_dataset.root}", f"--output_dir={out}", "--steps=2", "--batch_size=2",
                   "--num_workers=0", "--save_freq=2", "--wandb.enable=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    assert (ckpt / "config.json").exists()
    return ckpt
