"""`make demo`: train the tiny labvla policy with LeRobot's own `lerobot-train` on a synthetic dataset.

Everything is embedded: the dataset is written with `LeRobotDataset.create`, the model is the
random-weight tiny Qwen3-VL (`configs/policy/tiny.yaml`), nothing touches the network. Prints the
loss curve, writes it as a PNG, and says where the checkpoint is.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lerobot_labvla.errors import LabVLAError, cli_errors

REPO = Path(__file__).resolve().parents[2]
LOSS = re.compile(r"step:(\d+) .*? loss:([-\d.]+)")


def ascii_curve(points: list[tuple[int, float]], width: int = 60, height: int = 12) -> str:
    """A terminal plot of (step, loss)."""
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    grid = [[" "] * width for _ in range(height)]
    for s, v in points:
        x = round((s - steps[0]) / max(steps[-1] - steps[0], 1) * (width - 1))
        y = round((hi - v) / span * (height - 1))
        grid[y][x] = "*"
    rows = [f"{hi - i * span / (height - 1):8.3f} |" + "".join(r) for i, r in enumerate(grid)]
    rows.append(" " * 9 + "+" + "-" * width)
    rows.append(" " * 10 + f"step {steps[0]}".ljust(width - 10) + f"step {steps[-1]}")
    return "\n".join(rows)


def save_png(points: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([s for s, _ in points], [v for _, v in points])
    ax.set_xlabel("step")
    ax.set_ylabel("loss (10*FM + FAST CE)")
    ax.set_title("labvla tiny, mode=ki")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lerobot_labvla.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "demo", help="where data, checkpoint and plot go")
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100, about a minute on 2 cores)")
    args = parser.parse_args(argv)

    import logging

    # LeRobot warns with a page of traceback at import when FFmpeg's shared libraries are missing
    # (it then decodes with PyAV, which is all the demo needs); keep the demo's output readable.
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
    from lerobot_labvla.synthetic import make_dataset

    data = args.out / "data"
    if not (data / "meta" / "info.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        print(f"writing a synthetic LeRobot v3 dataset (2 cameras, state 8, action 7) to {data}")
        make_dataset(data, repo_id="local/labvla_demo", n_episodes=4, frames=30)
    train_dir = args.out / "train"
    shutil.rmtree(train_dir, ignore_errors=True)
    cmd = [
        str(Path(sys.executable).parent / "lerobot-train"),
        f"--config_path={REPO / 'configs' / 'policy' / 'tiny.yaml'}",
        "--dataset.repo_id=local/labvla_demo",
        f"--dataset.root={data}",
        f"--output_dir={train_dir}",
        f"--steps={args.steps}",
        "--log_freq=5",
        f"--save_freq={args.steps}",
    ]
    print("running:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    log = proc.stdout + proc.stderr
    (args.out / "train.log").write_text(log)
    if proc.returncode != 0:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise LabVLAError(f"lerobot-train failed (full log: {args.out / 'train.log'}):\n{tail}")
    points = [(int(m.group(1)), float(m.group(2))) for m in LOSS.finditer(log)]
    if not points:
        raise LabVLAError(f"lerobot-train logged no loss (log: {args.out / 'train.log'})")
    print("\nloss curve (10*FM + FAST CE):")
    print(ascii_curve(points))
    png = args.out / "loss.png"
    save_png(points, png)
    ckpt = train_dir / "checkpoints" / "last" / "pretrained_model"
    print(f"\nloss {points[0][1]:.3f} (step {points[0][0]}) -> {points[-1][1]:.3f} (step {points[-1][0]})")
    print(f"plot:       {png}")
    print(f"checkpoint: {ckpt}")
    print(f"load it:    LabVLAPolicy.from_pretrained('{ckpt}')  or  --policy.path={ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
