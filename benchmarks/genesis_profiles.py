"""Generation success per robot profile: N rollouts of one workflow on each single-arm profile, judged by the same
checkers and safety filter as `labvla-genesis generate` (cameras off: success does not depend on rendering), with
every rejection's reason; and the ALOHA bimanual pick -> hand-over -> place in the sim core (no dataset path yet).

    python benchmarks/genesis_profiles.py --episodes 50

Prints a table and writes benchmarks/results/genesis_profiles.json (git commit, load average).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import subprocess
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lerobot_labvla.genesis.runner import EpisodeJob, episode_seed, run_episode

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples/workflows/robots/pick_place.yaml"


def aloha_handover(seed: int) -> tuple[bool, str]:
    """Left arm picks a bottle, hands it to the right arm, which sets it down (sim core skills, fixed seed)."""
    import numpy as np

    from lerobot_labvla.sim import assets as A
    from lerobot_labvla.sim.control import ArmController
    from lerobot_labvla.sim.scene import SceneBuilder
    from lerobot_labvla.sim.skills import Motion, lifted_and_held, pick, place, resting_in_region
    from lerobot_labvla.sim.skills.bimanual import _alone, handed_over, handover

    rng = np.random.default_rng(seed)
    src = np.array([0.40, 0.14]) + rng.uniform(-0.03, 0.03, 2)
    dst = np.array([0.42, 0.0]) + rng.uniform(-0.03, 0.03, 2)
    b = SceneBuilder()
    b.add_robot(robot="aloha")
    b.add(A.reagent_bottle, "bottle", [*src, 0.0], radius=0.02, height=0.15)
    sim = b.build()
    sim.reset(np.asarray(sim.profile.arms[0].home))
    views = {a: sim.for_arm(a) for a in ("left", "right")}
    ctls = {a: ArmController(v) for a, v in views.items()}
    ms = {a: Motion(v) for a, v in views.items()}

    def drive(gen):
        for targets in gen:
            for arm, t in targets.items():
                views[arm].set_gripper(t.gripper)
                views[arm].command(ctls[arm].set_pose_target(t.pos, t.quat))
            sim.advance()

    z0 = sim.body_pos("bottle")[2]
    drive(_alone("left", pick(ms["left"], "bottle", lift=0.12), {"right": ms["right"]}))
    if not lifted_and_held(views["left"], "bottle", z0, 0.05):
        return False, "pick"
    drive(handover(("left", ms["left"]), ("right", ms["right"]), "bottle", (0.42, 0.0)))
    if not handed_over(views["right"], views["left"], "bottle"):
        return False, "handover"
    drive(_alone("right", place(ms["right"], "bottle", dst), {"left": ms["left"]}))
    for _ in range(10):
        sim.advance()
    return (True, "success") if resting_in_region(sim, "bottle", dst, [0.03, 0.03], 0.0, z_tol=0.012) else (False, "place")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--robots", default="fr3,ur5e,xarm7,kinova3")
    p.add_argument("--bimanual-episodes", type=int, default=None, help="ALOHA hand-over runs (default: --episodes)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(ROOT / "benchmarks/results/genesis_profiles.json"))
    args = p.parse_args()
    load_start = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    template = WORKFLOW.read_text()
    rows = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("forkserver")) as pool:
        for robot in args.robots.split(","):
            text = re.sub(r"^robot: \w+", f"robot: {robot}", template, flags=re.M)
            jobs = [EpisodeJob(text, str(WORKFLOW), k, episode_seed(args.seed, k), 64, "/nonexistent", record=False)
                    for k in range(args.episodes)]
            t = time.perf_counter()
            results = list(pool.map(run_episode, jobs))
            reasons = Counter(r.reason for r in results if not r.kept)
            kept = sum(r.kept for r in results)
            rows.append({"robot": robot, "workflow": WORKFLOW.name, "episodes": len(results), "kept": kept,
                         "success_rate": round(kept / len(results), 3), "filtered": dict(reasons.most_common()),
                         "examples": {k: next(r.detail for r in results if r.reason == k)[:160] for k in reasons},
                         "seconds": round(time.perf_counter() - t, 1)})
            print(f"{robot:8s} kept {kept:3d}/{len(results)}  filtered {dict(reasons)}", flush=True)
        n = args.bimanual_episodes if args.bimanual_episodes is not None else args.episodes
        if n:
            t = time.perf_counter()
            results = list(pool.map(aloha_handover, range(args.seed, args.seed + n)))
            reasons = Counter(r for ok, r in results if not ok)
            kept = sum(ok for ok, _ in results)
            rows.append({"robot": "aloha", "workflow": "sim core: pick (left) -> handover -> place (right)",
                         "episodes": n, "kept": kept, "success_rate": round(kept / n, 3),
                         "filtered": {f"failed_at:{k}": v for k, v in reasons.most_common()},
                         "seconds": round(time.perf_counter() - t, 1)})
            print(f"aloha    kept {kept:3d}/{n}  filtered {dict(reasons)}", flush=True)
    out = {"benchmark": "genesis_profiles", "git_commit": commit, "seed": args.seed, "rows": rows,
           "seconds": round(time.perf_counter() - t0, 1), "loadavg_1min": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
           "note": "rollouts without cameras (success and filtering do not depend on rendering); machine shared with other jobs"}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
