"""RoboGenesis throughput: kept episodes per hour with 1 and 2 workers, and where the time goes.

    python benchmarks/genesis_throughput.py [--workflow examples/workflows/labutopia_pick_up.yaml]
        [--episodes 6] [--image-size 128] [--flush-every 2] [--out benchmarks/results/genesis_throughput.json]

Each worker count runs `labvla-genesis generate` (in process, same code) into a fresh directory.
Time split: physics = env steps + IK + skills + checkers, render = cameras + depth + annotation
streams, stage = writing the kept episode's .npz; these three are CPU-seconds summed over workers.
encode = LeRobot's add_frame (its streaming video encoder), write = save_episode (encoder flush,
parquet, episode stats) + finalize, copy = copying the previous dataset for an atomic append; these
run in a background thread of the main process, overlapping the rollouts. The machine load (os.getloadavg) is
recorded: numbers taken on a shared box are not the machine's capacity.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _offline import offline_env  # noqa: E402

os.environ.update(offline_env(MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"),
                              PYOPENGL_PLATFORM=os.environ.get("PYOPENGL_PLATFORM", "egl")))


def run(workflow: Path, episodes: int, workers: int, image_size: int, seed: int, flush_every: int) -> dict:
    from lerobot_labvla.genesis.generate import generate
    from lerobot_labvla.genesis.workflow import load_workflow

    out = Path(tempfile.mkdtemp(prefix="genesis_bench_")) / "ds"
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    report = generate(load_workflow(workflow), out, episodes=episodes, workers=workers, seed=seed,
                      image_size=image_size, flush_every=flush_every, progress=False)
    wall = time.perf_counter() - t0
    shutil.rmtree(out.parent, ignore_errors=True)
    t = report["timings_s"]
    parts = {k: t.get(k, 0.0) for k in ("physics", "render", "stage", "encode", "write", "copy")}
    total = sum(parts.values()) or 1.0
    return {"workers": workers, "episodes": report["kept"], "tried": report["tried"], "wall_s": round(wall, 2),
            "episodes_per_hour": round(3600 * report["kept"] / wall, 1),
            "seconds_s": {k: round(v, 2) for k, v in parts.items()},
            "share": {k: round(v / total, 3) for k, v in parts.items()},
            # Wall time the run waited for publishing (the last batch; earlier ones overlap the rollouts).
            "encode_write_share_of_wall": round(t.get("publish_wait", 0.0) / wall, 3),
            "publish_busy_share_of_wall": round((parts["encode"] + parts["write"] + parts["copy"]) / wall, 3),
            "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workflow", type=Path, default=ROOT / "examples/workflows/labutopia_pick_up.yaml")
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flush-every", type=int, default=2, help="publish every N kept episodes (in the background)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/genesis_throughput.json")
    args = p.parse_args()
    rows = [run(args.workflow, args.episodes, w, args.image_size, args.seed, args.flush_every) for w in (1, 2)]
    eff = rows[1]["episodes_per_hour"] / (2 * rows[0]["episodes_per_hour"]) if rows[0]["episodes_per_hour"] else 0.0
    print(f"{'workers':>7} {'kept':>5} {'tried':>5} {'wall s':>7} {'ep/h':>7} {'physics':>8} {'render':>7} "
          f"{'stage':>6} {'encode':>7} {'write':>6} {'copy':>5} {'load':>10}")
    for r in rows:
        s = r["share"]
        print(f"{r['workers']:>7} {r['episodes']:>5} {r['tried']:>5} {r['wall_s']:>7} {r['episodes_per_hour']:>7} "
              f"{s['physics']:>8.0%} {s['render']:>7.0%} {s['stage']:>6.0%} {s['encode']:>7.0%} {s['write']:>6.0%} "
              f"{s['copy']:>5.0%} "
              f"{'/'.join(map(str, r['loadavg_1min'])):>10}")
    share = rows[1]["share"]["encode"] + rows[1]["share"]["write"]
    print(f"scaling efficiency 1 -> 2 workers: {eff:.2f} (target >= 0.85); encode + write (2 workers): "
          f"{rows[1]['encode_write_share_of_wall']:.0%} of the wall waited on it (target < 25%), {share:.0%} of the time "
          f"spent; the publishing thread was busy {rows[1]['publish_busy_share_of_wall']:.0%} of the wall")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"benchmark": "genesis_throughput", "git_commit": commit, "workflow": str(args.workflow.relative_to(ROOT)
              if args.workflow.is_absolute() and ROOT in args.workflow.parents else args.workflow),
              "image_size": args.image_size, "flush_every": args.flush_every, "cpu_count": os.cpu_count(), "rows": rows,
              "scaling_efficiency": round(eff, 3),
              "note": "measured on a machine shared with other jobs; see loadavg_1min (start/end of each row)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
