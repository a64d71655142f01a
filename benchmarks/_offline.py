"""The environment benchmark subprocesses run in: offline, caches in the build dir (the Makefile's exports)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def offline_env(**extra: str) -> dict[str, str]:
    """`os.environ` plus the offline settings, plus `extra`."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(ROOT / ".cache" / "hf"),
        "HF_LEROBOT_HOME": str(ROOT / ".cache" / "lerobot"),
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
