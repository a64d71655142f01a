"""LabUtopia adversaries: can a task be passed without looking? Expert success next to the attacks'.

For every task and split, on seeds the tests never use:
  expert         the scripted expert (reads the true state), `--experts` episodes (seeds 1000..)
  zero / random / sticky_random   blind action streams (`--seeds` episodes each, seeds 3000..)
  press_down     gripper closed, straight down from the start pose (the press tasks' push-through)
  replay         `--replays` recorded expert episodes (seeds 2000..) each replayed open loop on the
                 `--seeds` attack seeds: the rate over all replay x seed pairs
  poke_rim       pour_liquid only: closed fingertips on the source's rim, then the pour path (the weld
                 must not engage without an enclosing grasp)
Target (issue 10): every attack <= 10 % on every task and split, zero/random 0; expert >= 95 % id, >= 90 % ood.

    python benchmarks/labutopia_attacks.py [--experts 50] [--replays 3] [--seeds 10] [--workers 2]
        [--tasks pick_up,...] [--out benchmarks/results/labutopia_attacks.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

ATTACKS = ("zero", "random", "sticky_random", "press_down", "replay", "poke_rim")
EXPERT_SEED, RECORD_SEED, ATTACK_SEED = 1000, 2000, 3000


def _env(task: str, split: str):
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    return LabUtopiaEnv(task, split, obs_type="agent_pos", render_mode=None)


def job(kind: str, task: str, split: str, seed: int, actions=None):
    """One episode in a worker: (kind, task, split, seed, success, max_progress) or recorded actions."""
    from lerobot_labvla.envs.labutopia import attacks as A
    from lerobot_labvla.envs.labutopia.expert import rollout

    env = _env(task, split)
    try:
        if kind == "record":
            acts, ok = A.record_expert(env, seed)
            return kind, task, split, seed, ok, acts
        if kind == "expert":
            r = rollout(env, seed)
        elif kind == "replay":
            r = A.run(env, seed, A.replay(actions))
        elif kind == "poke_rim":
            r = A.run(env, seed, A.SCRIPTED["poke_rim"][1])
        else:
            r = A.run(env, seed, A.blind(kind, seed))
        return kind, task, split, seed, r.success, r.max_progress
    finally:
        env.close()


def main() -> None:
    from lerobot_labvla.envs.labutopia import GYM_IDS, SPLIT_NAMES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experts", type=int, default=50)
    p.add_argument("--replays", type=int, default=3)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tasks", default=",".join(GYM_IDS))
    p.add_argument("--attacks", default=",".join(("expert",) + ATTACKS), help="which rows to (re-)measure")
    p.add_argument("--out", default="benchmarks/results/labutopia_attacks.json")
    args = p.parse_args()
    tasks, wanted = args.tasks.split(","), set(args.attacks.split(","))
    load = os.getloadavg()
    t0 = time.time()
    attack_seeds = range(ATTACK_SEED, ATTACK_SEED + args.seeds)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [("record", t, s, RECORD_SEED + k) for t in tasks for s in SPLIT_NAMES for k in range(args.replays)
                if "replay" in wanted]
        jobs += [("expert", t, s, EXPERT_SEED + k) for t in tasks for s in SPLIT_NAMES for k in range(args.experts)
                 if "expert" in wanted]
        jobs += [(a, t, s, k) for t in tasks for s in SPLIT_NAMES for a in ("zero", "random", "sticky_random", "press_down")
                 for k in attack_seeds if a in wanted]
        jobs += [("poke_rim", "pour_liquid", s, k) for s in SPLIT_NAMES for k in attack_seeds
                 if "pour_liquid" in tasks and "poke_rim" in wanted]
        done = list(pool.map(job, *zip(*jobs)))
        records = [d for d in done if d[0] == "record"]
        replay_jobs = [("replay", t, s, k, acts) for _, t, s, _, ok, acts in records for k in attack_seeds]
        if replay_jobs:
            done += list(pool.map(job, *zip(*replay_jobs)))
    results: dict = {t: {s: {} for s in SPLIT_NAMES} for t in tasks}
    for kind, task, split, seed, ok, prog in done:
        cell = results[task][split].setdefault(kind, {"episodes": 0, "successes": 0, "progress": 0.0})
        cell["episodes"] += 1
        cell["successes"] += int(ok)
        if kind != "record":
            cell["progress"] += float(prog)
    for t in tasks:
        for s in SPLIT_NAMES:
            for kind, cell in results[t][s].items():
                cell["success_rate"] = cell["successes"] / cell["episodes"]
                progress = cell.pop("progress")
                cell["mean_progress"] = round(progress / cell["episodes"], 4) if kind != "record" else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    run = {"tasks": tasks, "attacks": sorted(wanted), "commit": commit, "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "load_avg_at_start": load, "load_avg_at_end": os.getloadavg(),
           "wall_s": round(time.time() - t0, 1),
           "settings": {"experts": args.experts, "replays": args.replays, "seeds": args.seeds,
                        "expert_seeds": f"{EXPERT_SEED}..{EXPERT_SEED + args.experts - 1}",
                        "record_seeds": f"{RECORD_SEED}..{RECORD_SEED + args.replays - 1}",
                        "attack_seeds": f"{ATTACK_SEED}..{ATTACK_SEED + args.seeds - 1}"}}
    path = Path(args.out)
    # Runs over a subset of tasks update those tasks in an existing file (each run keeps its own metadata).
    out = json.loads(path.read_text()) if path.exists() else {"runs": [], "results": {}}
    out["runs"].append(run)
    for t in tasks:  # replace only the cells this run measured
        for s in SPLIT_NAMES:
            out["results"].setdefault(t, {}).setdefault(s, {}).update(results[t][s])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(path)

    cols = ("expert",) + ATTACKS
    print("| task | split | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for t in [t for t in GYM_IDS if t in out["results"]]:  # every task in the file, not only this run's
        for s in SPLIT_NAMES:
            r = out["results"][t][s]
            cells = [f"{r[c]['success_rate']:.2f}" if c in r else "–" for c in cols]
            print(f"| `{t}` | {s} | " + " | ".join(cells) + " |")
    print(f"wrote {path} ({run['wall_s']} s, load {load[0]:.1f} at start)")


if __name__ == "__main__":
    main()
