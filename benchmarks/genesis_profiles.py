"""Generation success per robot profile: N rollouts of one workflow on each single-arm profile, and of the bimanual
hand-over workflow on ALOHA, judged by the same checkers and safety filter as `labvla-genesis generate` (cameras
off: success does not depend on rendering), with every rejection's reason.

    python benchmarks/genesis_profiles.py --episodes 50 [--robots aloha]   # rows of the robots run are replaced

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

from lerobot_labvla.genesis.scene_survey import write_json
from lerobot_labvla.genesis.runner import EpisodeJob, episode_seed, run_episode

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples/workflows/robots/pick_place.yaml"
BIMANUAL = {"aloha": ROOT / "examples/workflows/robots/aloha_handover.yaml"}  # bimanual profiles: their own workflow


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--robots", default="fr3,ur5e,xarm7,kinova3,aloha")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(ROOT / "benchmarks/results/genesis_profiles.json"))
    args = p.parse_args()
    load_start = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    template = WORKFLOW.read_text()
    path = Path(args.json)
    old = json.loads(path.read_text()) if path.is_file() else {}
    rows = [{"git_commit": old.get("git_commit"), **r} for r in old.get("rows", []) if r["robot"] not in args.robots.split(",")]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("forkserver")) as pool:
        for robot in args.robots.split(","):
            wf = BIMANUAL.get(robot, WORKFLOW)
            text = wf.read_text() if robot in BIMANUAL else re.sub(r"^robot: \w+", f"robot: {robot}", template, flags=re.M)
            jobs = [EpisodeJob(text, str(wf), k, episode_seed(args.seed, k), 64, "/nonexistent", record=False)
                    for k in range(args.episodes)]
            t = time.perf_counter()
            results = list(pool.map(run_episode, jobs))
            reasons = Counter(r.reason for r in results if not r.kept)
            kept = sum(r.kept for r in results)
            rows.append({"robot": robot, "workflow": wf.name, "episodes": len(results), "kept": kept,
                         "success_rate": round(kept / len(results), 3), "filtered": dict(reasons.most_common()),
                         "examples": {k: next(r.detail for r in results if r.reason == k)[:160] for k in reasons},
                         "seconds": round(time.perf_counter() - t, 1), "git_commit": commit,
                         "loadavg_1min": round(os.getloadavg()[0], 2)})
            print(f"{robot:8s} kept {kept:3d}/{len(results)}  filtered {dict(reasons)}", flush=True)
    out = {"benchmark": "genesis_profiles", "git_commit": commit, "seed": args.seed, "rows": rows,
           "seconds": round(time.perf_counter() - t0, 1), "loadavg_1min": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
           "note": "rollouts without cameras (success and filtering do not depend on rendering); machine shared with other jobs"}
    write_json(out, path)  # temp file, then rename
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
