"""LingBot-VLA options vs the default labvla, on the same data and the same steps (tiny, CPU).

Rows: `default` (the official DiT cross-attention expert), `mot` (`--policy.expert_attention=mot`),
`depth` (default expert + `--policy.depth_distill=true`), `mot+depth`. Each row builds the tiny
policy with LeRobot's `make_policy` from the same seed, trains `--steps` AdamW steps in `ki` mode on
the same batches of one synthetic dataset with a depth stream (memorizable sine trajectories per
episode, a depth plane whose tilt follows the frame), then reports:

* params: the policy's parameters (backbone + expert + heads), and the expert's alone;
* train samples/s (forward + backward + AdamW at `--batch`) and chunk latency (batch 1, 10 Euler
  steps), timed after training, round-robin over the options (median and best of `--timing-rounds`);
* the FM loss (mean of the last 5 steps) and the action error of sampled chunks after training
  (MSE in normalized action space on 32 training frames, fixed noise), plus the depth loss first/last.

A baseline row that never trains (`untrained`) shows what the action error is worth. Tiny models and a
few dozen steps: the numbers say whether an option runs and what it costs, not how it learns at scale.
The machine load (os.getloadavg) is recorded: on a shared box the timings are upper bounds.

    python benchmarks/lingbot_options.py              # ~3 min on 2 busy cores
    python benchmarks/lingbot_options.py --steps 10   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROWS = {
    "untrained": dict(),
    "default": dict(),
    "mot": dict(expert_attention="mot"),
    "depth": dict(depth_distill=True),
    "mot+depth": dict(expert_attention="mot", depth_distill=True),
}


def run_row(name: str, ds, batches: list[dict], eval_raw: dict, steps: int) -> tuple[dict, object, object]:
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

    torch.manual_seed(0)
    cfg = LabVLAConfig(
        backbone="tiny", device="cpu", image_size=64, mode="ki", expert_layers=2, expert_width=64, expert_heads=4,
        fast_vocab_size=512, depth_grid=2, scheduler_warmup_steps=0, **ROWS[name],
    )
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    optim = torch.optim.AdamW(policy.get_optim_params(), lr=3e-4)
    row = {
        "option": name,
        "params_total": sum(p.numel() for p in policy.parameters()),
        "params_expert": sum(p.numel() for p in policy.expert.parameters()),
        "params_depth": 0 if policy.depth is None else sum(p.numel() for p in policy.depth.parameters()),
    }
    fm, depth = [], []
    policy.train()
    for i in range(steps if name != "untrained" else 0):
        batch = pre(dict(batches[i % len(batches)]))
        torch.manual_seed(1000 + i)  # the same flow times and noise for every row
        metrics = train_step(policy, optim, batch)
        fm.append(metrics["fm_loss"])
        if "depth_loss" in metrics:
            depth.append(metrics["depth_loss"])
    policy.eval()
    batch = pre(dict(eval_raw))
    noise = torch.randn(batch["action"].shape[0], cfg.chunk_size, cfg.max_action_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        chunk = policy.predict_action_chunk(batch, noise=noise)
    row["action_mse"] = float(((chunk - batch["action"]) ** 2).mean())
    if fm:
        row["fm_loss_last5"] = float(np.mean(fm[-5:]))
        row["fm_loss_first"] = fm[0]
    if depth:
        row["depth_loss_first"], row["depth_loss_last5"] = depth[0], float(np.mean(depth[-5:]))
    return row, policy, (pre, optim)


def train_step(policy, optim, batch: dict) -> dict:
    loss, metrics = policy.forward(batch)
    optim.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optim.step()
    return metrics


def time_interleaved(built: dict, batch_raw: dict, eval_raw: dict, rounds: int) -> dict[str, dict]:
    """Train-step and chunk times, one call of each option in turn (round-robin), so all share the
    same machine noise; median and best over `rounds`."""
    steps: dict[str, list[float]] = {name: [] for name in built}
    chunks: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, (policy, (pre, optim)) in built.items():
            batch = pre(dict(batch_raw))
            policy.train()
            start = time.perf_counter()
            train_step(policy, optim, batch)
            steps[name].append(time.perf_counter() - start)
            one = pre({k: v[:1] for k, v in eval_raw.items()})
            policy.eval()
            with torch.no_grad():
                start = time.perf_counter()
                policy.predict_action_chunk(one)
                chunks[name].append(time.perf_counter() - start)
    bsz = batch_raw["action"].shape[0]
    return {
        name: {
            "train_samples_per_s": bsz / statistics.median(steps[name]),
            "train_samples_per_s_best": bsz / min(steps[name]),
            "chunk_latency_ms": 1000 * statistics.median(chunks[name]),
            "chunk_latency_ms_min": 1000 * min(chunks[name]),
        }
        for name in built
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--timing-rounds", type=int, default=8, help="round-robin rounds for the speed columns")
    parser.add_argument("--out", type=Path, default=RESULTS / "lingbot_options.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    load_before = os.getloadavg()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    with tempfile.TemporaryDirectory() as tmp:
        from lerobot_labvla.synthetic import make_depth_dataset

        ds = make_depth_dataset(Path(tmp) / "ds", repo_id="local/lingbot_bench")
        data = LeRobotDataset(ds.repo_id, root=ds.root, delta_timestamps={"action": [i / ds.fps for i in range(10)]})
        loader = torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(0))
        batches = [b for _, b in zip(range(args.steps), loader)]
        while len(batches) < min(args.steps, 16):
            batches += [b for _, b in zip(range(args.steps - len(batches)), loader)]
        eval_raw = next(iter(torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(5))))
        rows, built = [], {}
        for name in ROWS:
            row, policy, parts = run_row(name, ds, batches, eval_raw, args.steps)
            rows.append(row)
            if name != "untrained":
                built[name] = (policy, parts)
            print(f"  trained {name}", file=sys.stderr)
        timings = time_interleaved(built, batches[0], eval_raw, args.timing_rounds)
        for row in rows:
            row.update(timings.get(row["option"], {}))

    cols = ["option", "params_total", "params_expert", "train_samples_per_s", "train_samples_per_s_best", "chunk_latency_ms", "fm_loss_last5", "action_mse", "depth_loss_first", "depth_loss_last5"]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c, "-")) for c in cols))
    result = {
        "benchmark": "lingbot_options",
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
        "batch": args.batch,
        "mode": "ki",
        "setup": "tiny Qwen3-VL (2 layers, 64 wide), expert width 64 (DiT: 2 layers; MoT: one per backbone layer), "
        "64x64 images, chunk 10, 10 Euler steps, float32, 1 torch thread, AdamW lr 3e-4, same batches/seeds per row",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2))
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
