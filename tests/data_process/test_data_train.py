"""A v2.1 dataset, scanned and cleaned, trains with `lerobot-train --policy.type=labvla`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lerobot_labvla.data_process.clean import clean_dataset
from lerobot_labvla.data_process.scan import scan_dataset

pytestmark = pytest.mark.slow

# The team's debug model (tiny random Qwen3-VL, 2-layer expert), overridden to 2 steps of batch 2.
TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "policy" / "tiny.yaml"


def test_cleaned_v21_dataset_trains_with_labvla(v21_corrupted, tmp_path):
    clean = tmp_path / "clean"
    clean_dataset(v21_corrupted, clean, scan_dataset(v21_corrupted))
    out = tmp_path / "train"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lerobot-train"), f"--config_path={TINY_CONFIG}", "--policy.type=labvla",
         "--policy.backbone=tiny", "--policy.device=cpu", "--policy.push_to_hub=false", "--steps=2", "--batch_size=2",
         "--num_workers=0", "--save_freq=2", "--wandb.enable=false", f"--dataset.root={clean}",
         "--dataset.repo_id=local/clean", f"--output_dir={out}"],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
