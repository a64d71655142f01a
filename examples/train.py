"""Train labvla on a LeRobot dataset with LeRobot's own `lerobot-train` (log shown live).

    python examples/train.py --root data/pick_up_clean --out outputs/train_pick_up --steps 2000

The tiny config (`configs/policy/tiny.yaml`: random-weight Qwen3-VL, CPU) by default; pass
`--config configs/policy/4b-ki.yaml` (and a GPU) for the real model.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="dataset folder (meta/info.json)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "policy" / "tiny.yaml")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=None, help="resize images to this (default: the config's)")
    args, extra = p.parse_known_args()  # anything else goes to lerobot-train, e.g. --policy.mode=finetune
    json.loads((args.root / "meta" / "info.json").read_text())  # fails early on a wrong --root
    cmd = [Path(sys.executable).parent / "lerobot-train", f"--config_path={args.config}",
           f"--dataset.repo_id=local/{args.root.name}", f"--dataset.root={args.root}", f"--output_dir={args.out}",
           f"--steps={args.steps}", f"--save_freq={args.steps}", f"--batch_size={args.batch_size}", *extra]
    if args.image_size:
        cmd.append(f"--policy.image_size={args.image_size}")
    rc = subprocess.run([str(c) for c in cmd], check=False).returncode
    if rc == 0:
        print(f"checkpoint: {args.out / 'checkpoints' / 'last' / 'pretrained_model'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
