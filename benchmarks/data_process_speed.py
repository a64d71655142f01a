"""Speed and memory of `labvla-data scan` / `stats` next to LeRobot's own loading and stats.

    .venv/bin/python benchmarks/data_process_speed.py [--episodes 1000 --frames 300]

Builds (once, cached under .cache/benchmarks/) a synthetic state+action v3.0 dataset with
LeRobot's writer, then runs each measurement in a fresh subprocess so that its peak RSS
(`ru_maxrss`) is its own, and prints a table + writes benchmarks/results/data_process_speed.json.

Measurements (same dataset, same machine, one process each):
- labvla scan:           `scan_dataset(root)` (both passes, every check)
- labvla stats:          `compute_stats(root)` (LeRobot's compute_episode_stats + aggregate_stats)
- labvla-data scan CLI:  the console script end to end, imports included
- lerobot load:          `LeRobotDataset(root=...)` + reading every state/action value
- lerobot recompute_stats: `dataset_tools.recompute_stats` (on a copy: it rewrites stats.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _offline import offline_env

ROOT = Path(__file__).resolve().parents[1]
ENV = offline_env(TQDM_DISABLE="1")

# Each measurement: code run in a fresh interpreter after the imports; `root` is the dataset.
MEASURES = {
    "labvla_scan": (
        "from lerobot_labvla.data_process.scan import scan_dataset",
        "r = scan_dataset(root); assert r['summary']['episodes_with_errors'] == 0, r['summary']",
    ),
    "labvla_stats": (
        # compute_stats imports LeRobot's stats code on first use; import it up front so that, as in
        # the LeRobot rows, the timed part is the work and not the imports.
        "from lerobot_labvla.data_process.stats import compute_stats\nimport lerobot.datasets.compute_stats",
        "r = compute_stats(root); assert len(r['per_episode']) == n_episodes",
    ),
    "lerobot_load": (
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset",
        "ds = LeRobotDataset('local/bench', root=root); d = ds.hf_dataset.with_format('numpy');"
        " a = d['action']; s = d['observation.state']; assert len(a) == n_episodes * frames",
    ),
    "lerobot_recompute_stats": (
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset\n"
        "from lerobot.datasets.dataset_tools import recompute_stats",
        "recompute_stats(LeRobotDataset('local/bench', root=root))",
    ),
}

CHILD = """
import resource, sys, time, json, logging
logging.disable(logging.WARNING)
root, n_episodes, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t_import = time.perf_counter()
{imports}
t_import = time.perf_counter() - t_import
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
{body}
dt = time.perf_counter() - t0
print(json.dumps({{"seconds": dt, "import_seconds": t_import, "rss_after_import_mb": rss_import / 1024,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def build_dataset(root: Path, episodes: int, frames: int) -> float:
    if (root / "meta" / "info.json").is_file():
        info = json.loads((root / "meta" / "info.json").read_text())
        if info.get("total_episodes") == episodes and info.get("total_frames") == episodes * frames:
            return 0.0
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    code = (
        "import sys, logging; logging.disable(logging.WARNING)\n"
        "from lerobot_labvla.data_process.synthetic import make_state_action_dataset\n"
        "make_state_action_dataset(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))"
    )
    subprocess.run([sys.executable, "-c", code, str(root), str(episodes), str(frames)], check=True,
                   env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(name: str, root: Path, episodes: int, frames: int) -> dict:
    imports, body = MEASURES[name]
    code = CHILD.format(imports=imports, body=body)
    proc = subprocess.run([sys.executable, "-c", code, str(root), str(episodes), str(frames)], capture_output=True,
                          text=True, env=ENV, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["episodes_per_s"] = episodes / out["seconds"]
    return out


def measure_cli(root: Path, episodes: int, report: Path) -> dict:
    exe = Path(sys.executable).parent / "labvla-data"
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([str(exe), "scan", "--root", str(root), "--out", str(report), "--quiet"],
                          capture_output=True, text=True, env=ENV, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"labvla-data scan failed: {proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # RUSAGE_CHILDREN is the max over all children so far: only meaningful if this child is the largest.
    return {"seconds": dt, "episodes_per_s": episodes / dt, "peak_rss_mb": peak / 1024 if peak > before else None}


def _git_commit() -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src/lerobot_labvla/data_process"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    return (proc.stdout.strip() + ("+dirty" if dirty else "")) if proc.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data_process_speed.json")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "benchmarks")
    args = parser.parse_args()

    root = args.cache / f"data_process_{args.episodes}x{args.frames}"
    build_s = build_dataset(root, args.episodes, args.frames)
    # The machine is shared: say how busy it was, so a slow number can be read (and re-run) as such.
    load_at_start = os.getloadavg()
    results = {"labvla_scan_cli": measure_cli(root, args.episodes, args.cache / "report.json")}
    for name in ("labvla_scan", "labvla_stats", "lerobot_load"):
        results[name] = measure(name, root, args.episodes, args.frames)
    copy = args.cache / "recompute_copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    results["lerobot_recompute_stats"] = measure("lerobot_recompute_stats", copy, args.episodes, args.frames)
    shutil.rmtree(copy, ignore_errors=True)

    from importlib.metadata import version

    doc = {
        "benchmark": "data_process_speed",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": {"episodes": args.episodes, "frames_per_episode": args.frames, "state_dim": 8, "action_dim": 7,
                    "cameras": 0, "fps": 10, "build_seconds": round(build_s, 1) if build_s else "cached"},
        "git_commit": _git_commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "lerobot": version("lerobot"), "pyarrow": version("pyarrow"),
                    "load_avg_at_start": [round(x, 2) for x in load_at_start],
                    "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "notes": [
            "seconds exclude imports, except labvla_scan_cli (the console script end to end)",
            "peak_rss_mb: ru_maxrss read inside the process when the work is done; it includes the imports "
            "(torch, via LeRobot and the plugin's policy registration); rss_after_import_mb is that baseline "
            "(taken before lerobot.datasets is imported for the labvla_* rows, after it for lerobot_*)",
            "labvla_scan_cli peak_rss_mb is what the parent sees (wait4 rusage): the whole process lifetime, "
            "interpreter teardown included, which adds ~150 MB once torch is imported",
        ],
        "results": {k: {m: (round(v, 3) if isinstance(v, float) else v) for m, v in r.items()} for k, r in results.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{args.episodes} episodes x {args.frames} frames (state 8 + action 7), {os.cpu_count()} cpus")
    print(f"{'measure':<26}{'seconds':>9}{'episodes/s':>12}{'peak RSS MB':>13}{'after import':>14}")
    for name, r in doc["results"].items():
        peak = r.get("peak_rss_mb")
        base = r.get("rss_after_import_mb")
        print(f"{name:<26}{r['seconds']:>9.2f}{r['episodes_per_s']:>12.0f}{peak if peak else '-':>13}{base if base else '-':>14}")
    print(f"load average {doc['machine']['load_avg_at_start']} at start, {doc['machine']['load_avg_at_end']} at end")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
