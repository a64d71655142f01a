"""Generation success per randomization preset: N rollouts of a workflow under `--randomize none|light|full`,
judged by the same checkers and safety filter as `labvla-genesis generate` (cameras off: success does not
depend on rendering), with every rejection's reason.

    python benchmarks/genesis_randomize.py --workflow examples/workflows/heat_beaker_custom.yaml --episodes 50

Prints a table and writes benchmarks/results/genesis_randomize.json (git commit, load average).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lerobot_labvla.genesis.scene_survey import write_json
from lerobot_labvla.genesis.runner import EpisodeJob, episode_seed, run_episode

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workflow", action="append", help="workflow YAML (repeatable)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--presets", default="none,light,full")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(ROOT / "benchmarks/results/genesis_randomize.json"))
    args = p.parse_args()
    workflows = args.workflow or [str(ROOT / "examples/workflows/heat_beaker_custom.yaml")]
    load_start = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    rows = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("forkserver")) as pool:
        for wf in workflows:
            text = Path(wf).read_text()
            for preset in args.presets.split(","):
                jobs = [EpisodeJob(text, wf, k, episode_seed(args.seed, k), 64, "/nonexistent", record=False,
                                   randomize=preset) for k in range(args.episodes)]
                t = time.perf_counter()
                results = list(pool.map(run_episode, jobs))
                reasons = Counter(r.reason for r in results if not r.kept)
                rows.append({"workflow": Path(wf).name, "preset": preset, "episodes": len(results),
                             "kept": sum(r.kept for r in results), "success_rate": round(sum(r.kept for r in results) / len(results), 3),
                             "filtered": dict(reasons.most_common()),
                             "examples": {k: next(r.detail for r in results if r.reason == k)[:160] for k in reasons},
                             "seconds": round(time.perf_counter() - t, 1)})
                r = rows[-1]
                print(f"{r['workflow']:28s} {preset:5s} kept {r['kept']:3d}/{r['episodes']}  filtered {r['filtered']}", flush=True)
    out = {"benchmark": "genesis_randomize", "git_commit": commit, "seed": args.seed, "rows": rows,
           "seconds": round(time.perf_counter() - t0, 1), "loadavg_1min": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
           "note": "rollouts without cameras (success and filtering do not depend on rendering); machine shared with other jobs"}
    path = Path(args.json)
    write_json(out, path)  # temp file, then rename
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
