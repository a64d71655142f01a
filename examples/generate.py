"""Generate a LeRobot dataset of expert demonstrations from a written lab protocol (RoboGenesis).

    python examples/generate.py --task pick_up --episodes 20 --out data/pick_up

Compiles the protocol sentence to a workflow, moves it onto the LabUtopia task's own scene (`id`
split, so `lerobot-eval --env.type=labutopia` evaluates on the same observations/actions) and runs
`labvla-genesis generate` with its progress bar.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from lerobot_labvla.demo import PROTOCOLS, ground
from lerobot_labvla.genesis.protocol import check_compiled, compile_protocol


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pick_up", choices=sorted(PROTOCOLS))
    p.add_argument("--protocol", default=None, help="the sentence to compile (default: the task's own)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    sentence = args.protocol or PROTOCOLS[args.task][0]
    workflow = ground(compile_protocol(sentence, name=f"example_{args.task}"), args.task)
    check_compiled(workflow)
    wf_path = args.out.with_name(args.out.name + "_workflow.yaml")
    wf_path.parent.mkdir(parents=True, exist_ok=True)
    wf_path.write_text(workflow)
    print(workflow)
    cmd = [Path(sys.executable).parent / "labvla-genesis", "generate", wf_path, "--episodes", args.episodes,
           "--workers", args.workers, "--out", args.out, "--image-size", args.image_size,
           "--repo-id", f"local/{args.out.name}"]
    return subprocess.run([str(c) for c in cmd], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
