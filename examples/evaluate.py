"""Evaluate a checkpoint on LabUtopia with LeRobot's own `lerobot-eval`, beside the scripted expert.

    python examples/evaluate.py --policy outputs/train_pick_up/checkpoints/last/pretrained_model \
        --task pick_up --split id --episodes 20

Prints the policy's success rate and mean progress (`avg_max_reward`) and, on the same seeds, the
scripted expert's; videos land in `<out>/videos/`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, required=True, help="checkpoint dir (pretrained_model)")
    p.add_argument("--task", default="pick_up")
    p.add_argument("--split", default="id", choices=["id", "ood"])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=100_000, help="first episode seed (keep it away from the data's)")
    p.add_argument("--image-size", type=int, default=64, help="must match the training data")
    p.add_argument("--episode-length", type=int, default=None, help="default: the task's limit")
    p.add_argument("--out", type=Path, default=Path("outputs/eval"))
    args = p.parse_args()
    cmd = [Path(sys.executable).parent / "lerobot-eval", f"--policy.path={args.policy}", "--env.type=labutopia",
           f"--env.task={args.task}", f"--env.split={args.split}", f"--env.image_size={args.image_size}",
           f"--eval.n_episodes={args.episodes}", "--eval.batch_size=1", f"--seed={args.seed}",
           f"--output_dir={args.out}"]
    if args.episode_length:
        cmd.append(f"--env.episode_length={args.episode_length}")
    if rc := subprocess.run([str(c) for c in cmd], check=False).returncode:
        return rc
    agg = json.loads((args.out / "eval_info.json").read_text())["overall"]

    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.envs.labutopia.expert import rollout

    env = LabUtopiaEnv(args.task, args.split, obs_type="agent_pos", episode_length=args.episode_length,
                       render_mode=None)
    expert = [rollout(env, args.seed + i) for i in range(args.episodes)]
    env.close()
    print(f"{'policy':>8}  success  progress   ({args.task}, {args.split}, {args.episodes} episodes)")
    print(f"{'yours':>8}  {agg['pc_success'] / 100:7.2f}  {agg['avg_max_reward']:8.2f}")
    print(f"{'expert':>8}  {sum(r.success for r in expert) / len(expert):7.2f}  "
          f"{sum(r.max_progress for r in expert) / len(expert):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
