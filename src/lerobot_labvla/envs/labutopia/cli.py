"""`labutopia list | expert | view | frame`: the benchmark's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lerobot_labvla.envs.labutopia import CAMERAS, GYM_IDS, SPLIT_NAMES
from lerobot_labvla.errors import LabVLAError, cli_errors


def _task(value: str) -> str:
    if value not in GYM_IDS:
        raise argparse.ArgumentTypeError(f"unknown task {value!r}; expected one of {list(GYM_IDS)}")
    return value


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return n


def cmd_list(args) -> None:
    from lerobot_labvla.envs.labutopia.splits import SPLITS
    from lerobot_labvla.envs.labutopia.tasks import TASKS

    print(f"{'task':<18} {'gymnasium id':<30} {'level':<36} {'steps':>5}  instruction")
    for t in TASKS.values():
        print(f"{t.name:<18} {t.gym_id:<30} {t.level:<36} {t.episode_length:>5}  {t.instruction}")
    print("\nsplits:")
    for s in SPLITS.values():
        print(f"  {s.name:<4} {s.description}")


def cmd_expert(args) -> None:
    from lerobot_labvla.envs.labutopia.expert import evaluate_expert

    report = evaluate_expert(args.task, args.split, args.episodes, args.seed, args.workers)
    print(f"{args.task} [{args.split}] expert: success_rate={report['success_rate']:.3f} "
          f"mean_progress={report['mean_progress']:.3f} over {args.episodes} episodes (seeds {args.seed}..{args.seed + args.episodes - 1})")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = {k: report[k] for k in ("task", "split", "episodes", "success_rate", "mean_progress")}
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")


def cmd_view(args) -> None:
    import av
    import numpy as np

    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    out = Path(args.out)
    if out.suffix != ".mp4":
        raise LabVLAError(f"--out {out} must end in .mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = LabUtopiaEnv(args.task, args.split, image_size=args.size)
    obs, _ = env.reset(seed=args.seed)
    expert = env.expert() if args.policy == "expert" else None
    container = av.open(str(out), mode="w")
    stream = container.add_stream("libx264", rate=env.metadata["render_fps"])
    stream.width, stream.height, stream.pix_fmt = len(CAMERAS) * args.size, args.size, "yuv420p"
    steps, info = 0, {"is_success": False}
    try:
        while True:
            frame = np.concatenate([obs["pixels"][c] for c in CAMERAS], axis=1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            action = expert.act() if expert else np.zeros(env.action_space.shape, np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            if terminated or truncated:
                break
        container.mux(stream.encode())
    finally:
        container.close()
        env.close()
    print(f"wrote {out}: {steps} steps, success={info['is_success']} ({args.policy} policy, seed {args.seed})")


def cmd_frame(args) -> None:
    import numpy as np
    from PIL import Image

    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    out = Path(args.out)
    if out.suffix != ".png":
        raise LabVLAError(f"--out {out} must end in .png")
    env = LabUtopiaEnv(args.task, args.split, image_size=args.size)
    try:
        obs, _ = env.reset(seed=args.seed)
        expert = env.expert()
        for _ in range(args.step):
            obs, _, terminated, truncated, _ = env.step(expert.act())
            if terminated or truncated:
                break
        frame = np.concatenate([obs["pixels"][c] for c in CAMERAS], axis=1)
    finally:
        env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    Image.fromarray(frame).save(tmp, format="PNG", optimize=True)
    tmp.replace(out)
    print(f"wrote {out}: {' | '.join(CAMERAS)} after {args.step} expert steps ({env.task_description!r})")


@cli_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="labutopia", description="LabUtopia benchmark (MuJoCo): tasks, experts, videos")
    parser.add_argument("--debug", action="store_true", help="full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the tasks and splits")

    p = sub.add_parser("expert", help="roll out the scripted expert and report success")
    p.add_argument("--task", type=_task, required=True)
    p.add_argument("--split", choices=SPLIT_NAMES, default="id")
    p.add_argument("--episodes", type=_positive, default=50)
    p.add_argument("--seed", type=int, default=0, help="first episode seed (episode i uses seed + i)")
    p.add_argument("--workers", type=_positive, default=1, help="parallel processes")
    p.add_argument("--json", help="write {task, split, episodes, success_rate, mean_progress} here")

    p = sub.add_parser("view", help="render one episode to an mp4 (front | side | wrist)")
    p.add_argument("--task", type=_task, required=True)
    p.add_argument("--split", choices=SPLIT_NAMES, default="id")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", choices=("expert", "zero"), default="expert")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--out", required=True)

    p = sub.add_parser("frame", help="save the three cameras side by side after N expert steps as a png")
    p.add_argument("--task", type=_task, required=True)
    p.add_argument("--split", choices=SPLIT_NAMES, default="id")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, default=0, help="expert steps before the frame")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--out", required=True)

    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    {"list": cmd_list, "expert": cmd_expert, "view": cmd_view, "frame": cmd_frame}[args.command](args)


if __name__ == "__main__":
    main()
