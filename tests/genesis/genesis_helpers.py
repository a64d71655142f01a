"""Helpers for the RoboGenesis tests: run a console script (or its main in-process), write a workflow file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "workflows"


def run_cli(name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    exe = BIN / name
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "lerobot_labvla.genesis.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """`labvla-genesis ARGS` in this process (no interpreter start-up): exit code, stdout, stderr."""
    from lerobot_labvla.genesis.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p
