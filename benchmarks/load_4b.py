"""Loading a 4B labvla checkpoint: LeRobot's build-then-copy load vs labvla's meta-device load.

Writes a checkpoint of the real 4B configuration (Qwen3-VL-4B architecture + the 18x1024 DiT, bf16
VLM, weights random: uniform in [-0.02, 0.02], no Hub), then loads it twice, each in a fresh process:

* `lerobot`: `PreTrainedPolicy.from_pretrained` as LeRobot ships it: the policy is built with random
  init (transformers initialises the 4B VLM on the CPU), then `model.safetensors` is read into a
  second set of tensors and copied over (policy/loading.py's docstring).
* `meta`: `LabVLAPolicy.from_pretrained`: built under accelerate's `init_empty_weights`, the file's
  tensors assigned as the parameters (`load_state_dict(assign=True)`).

Per load: wall seconds, peak RSS (VmHWM) and peak anonymous memory (RssAnon sampled every 20 ms: the
memory the weights take, without the file pages safetensors maps, which the kernel can drop).
Checks that both loads give identical weights (a checksum over every tensor).

    python benchmarks/load_4b.py                 # ~10 GiB checkpoint in .cache/load_4b; needs ~21 GiB free RAM
    python benchmarks/load_4b.py --vlm-layers 18 # a half-depth VLM when the machine has less memory
    python benchmarks/load_4b.py --keep          # keep the checkpoint for a re-run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _offline import offline_env  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GIB = 2**30


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakAnon:
    """Samples RssAnon of this process every 20 ms in a thread; `.peak` in bytes."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, status_kib("RssAnon") * 1024)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_kib("RssAnon") * 1024)


def config(vlm_layers: int):
    from lerobot.configs.types import FeatureType, PolicyFeature

    from lerobot_labvla.policy.backbone import qwen3_vl_4b_config
    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

    backbone_config = qwen3_vl_4b_config()
    backbone_config["text_config"] = backbone_config["text_config"] | {"num_hidden_layers": vlm_layers}
    features = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)) for c in ("front", "wrist")}
    features["observation.state"] = PolicyFeature(FeatureType.STATE, (8,))
    return LabVLAConfig(
        backbone="Qwen/Qwen3-VL-4B-Instruct", backbone_config=backbone_config, random_init_backbone=True,
        tokenizer="tiny", dtype="bfloat16", mode="finetune", device="cpu", input_features=features,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))},
    )


SAFETENSORS_DTYPES = {"torch.bfloat16": "BF16", "torch.float32": "F32", "torch.float16": "F16", "torch.int64": "I64"}


def write_checkpoint(out: Path, vlm_layers: int) -> dict:
    """The 4B policy with random weights in LeRobot's checkpoint layout (+ its processors).

    safetensors' `save_file` serializes every tensor into memory before writing (two copies of 10 GiB),
    so `model.safetensors` is streamed here one tensor at a time in the same format: an 8-byte header
    length, the JSON header, the raw little-endian data. The policy itself is only built on the meta
    device, for the names, shapes and dtypes; persistent buffers are written with their real values.
    """
    import torch
    from accelerate import init_empty_weights

    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy
    from lerobot_labvla.policy.processor_labvla import make_labvla_pre_post_processors

    cfg = config(vlm_layers)
    with init_empty_weights():
        policy = LabVLAPolicy(cfg)
    state = policy.state_dict()
    if cfg.backbone_config.get("tie_word_embeddings"):
        state.pop("backbone.vlm.lm_head.weight")  # tied to the embedding: saved once, as LeRobot's save_model does
    header, offset = {}, 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[str(t.dtype)], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    stats = {key: {"mean": torch.zeros(dim), "std": torch.ones(dim), "min": -torch.ones(dim), "max": torch.ones(dim),
                   "q01": -torch.ones(dim), "q99": torch.ones(dim)} for key, dim in (("observation.state", 8), ("action", 7))}
    pre, post = make_labvla_pre_post_processors(cfg, dataset_stats=stats)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    with open(tmp / "model.safetensors", "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for name, t in state.items():
            data = t.contiguous() if not t.is_meta else torch.empty(t.shape, dtype=t.dtype).uniform_(-0.02, 0.02, generator=gen)
            f.write(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    policy.config._save_pretrained(tmp)
    policy.backbone.tokenizer.save_pretrained(str(tmp / "tokenizer"))
    pre.save_pretrained(tmp)
    post.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    params = sum(t.numel() for name, t in state.items() if name in dict(policy.named_parameters()))
    return {"params": params, "file_bytes": (out / "model.safetensors").stat().st_size}


def load(path: Path, how: str) -> dict:
    """One load in this process: seconds, peak RSS, peak anonymous memory, a checksum of the weights."""
    import torch

    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy, _checkpoint_files

    torch.set_num_threads(1)
    base_anon = status_kib("RssAnon") * 1024
    with PeakAnon() as anon:
        t0 = time.perf_counter()
        if how == "meta":
            policy = LabVLAPolicy.from_pretrained(path)
        else:
            from lerobot.policies.pretrained import PreTrainedPolicy

            policy = PreTrainedPolicy.from_pretrained.__func__(LabVLAPolicy, path, checkpoint_dir=_checkpoint_files(str(path), {}))
        seconds = time.perf_counter() - t0
        rss_loaded = status_kib("VmHWM") * 1024
        # Read every weight once, as a first forward pass does: the meta load's tensors map the file
        # (copy-on-write), so its pages are read from disk or the page cache here, not in the load.
        t0 = time.perf_counter()
        checksum = 0.0
        with torch.no_grad():
            for p in unique_tensors(policy):
                for part in p.reshape(-1).split(1 << 22):  # float64 temporaries of 32 MiB at most
                    checksum += float(part.double().sum())
        touch_seconds = time.perf_counter() - t0
        rss_touched = status_kib("VmHWM") * 1024
    weights = sum(p.numel() * p.element_size() for p in unique_tensors(policy))
    return {
        "how": how, "seconds": round(seconds, 1), "touch_all_weights_seconds": round(touch_seconds, 1),
        "peak_rss_gib_after_load": round(rss_loaded / GIB, 2), "peak_rss_gib_after_touch": round(rss_touched / GIB, 2),
        "peak_anon_gib": round(anon.peak / GIB, 2), "anon_before_gib": round(base_anon / GIB, 2),
        "weights_gib": round(weights / GIB, 2), "checksum": checksum,
    }


def unique_tensors(policy) -> list:
    """Parameters and buffers, each storage once (the tied embedding / LM head is one tensor)."""
    seen: dict[int, object] = {}
    for t in [*policy.parameters(), *policy.buffers()]:
        seen.setdefault(t.data_ptr(), t)
    return list(seen.values())


def child(args: list[str], timeout: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=offline_env(),
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def git_commit() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return head.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vlm-layers", type=int, default=36, help="Qwen3-VL-4B text layers (default 36, the real model)")
    ap.add_argument("--dir", type=Path, default=REPO / ".cache" / "load_4b", help="where the checkpoint is written")
    ap.add_argument("--loads", default="meta,lerobot", help="which loads to measure: meta, lerobot or meta,lerobot (default)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint (default: delete it at the end)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per child process (default 1800)")
    ap.add_argument("--out", type=Path, default=RESULTS / "load_4b.json")
    ap.add_argument("--_write", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_load", choices=("meta", "lerobot"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ckpt = args.dir / f"labvla_4b_vlm{args.vlm_layers}"
    if args._write:
        print(json.dumps(write_checkpoint(ckpt, args.vlm_layers)))
        return 0
    if args._load:
        print(json.dumps(load(ckpt, args._load)))
        return 0

    loads = [x for x in args.loads.split(",") if x]
    if not set(loads) <= {"meta", "lerobot"} or not loads:
        print(f"error: --loads {args.loads!r}: give meta, lerobot or meta,lerobot", file=sys.stderr)
        return 2
    # ~9.5 GiB of weights at 36 layers (bf16 VLM + fp32 expert). The LeRobot load holds the random-init
    # model plus the file's pages, the meta load the file's pages (page cache, which the kernel can drop).
    weights = 9.5 * (0.35 + 0.65 * args.vlm_layers / 36) * GIB
    need = (2 if "lerobot" in loads else 1) * weights + 2 * GIB
    if mem_available() < need:
        print(f"error: {mem_available() / GIB:.1f} GiB available, these loads need about {need / GIB:.0f} GiB; "
              f"free memory, use --vlm-layers {max(1, args.vlm_layers // 2)} or --loads meta", file=sys.stderr)
        return 2
    started = time.perf_counter()
    load_avg = os.getloadavg()
    mem_before = mem_available()
    base = ["--vlm-layers", str(args.vlm_layers), "--dir", str(args.dir)]
    print(f"writing the checkpoint ({args.vlm_layers} VLM layers) to {ckpt} ...", flush=True)
    written = child([*base, "--_write"], args.timeout)
    rows = {}
    try:
        for how in sorted(loads, key=["meta", "lerobot"].index):  # the lighter one first
            print(f"loading: {how} ...", flush=True)
            rows[how] = child([*base, "--_load", how], args.timeout)
    finally:
        if not args.keep:
            shutil.rmtree(ckpt, ignore_errors=True)
    run = {
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load_avg, "load_avg_at_end": os.getloadavg(),
                    "mem_available_gib_at_start": round(mem_before / GIB, 1)},
        "settings": {"vlm_layers": args.vlm_layers, "dtype": "bfloat16 VLM, float32 expert", "mode": "finetune",
                     "torch_threads": 1},
        "checkpoint": {"params": written["params"], "file_gib": round(written["file_bytes"] / GIB, 2)},
        "loads": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if len(rows) == 2:
        run["identical_weights"] = rows["meta"]["checksum"] == rows["lerobot"]["checksum"]
        run["ratios"] = {"seconds_lerobot/meta": round(rows["lerobot"]["seconds"] / rows["meta"]["seconds"], 2),
                         "peak_anon_lerobot/meta": round(rows["lerobot"]["peak_anon_gib"] / rows["meta"]["peak_anon_gib"], 2)}
    print(f"\nlabvla 4B configuration, {args.vlm_layers} of 36 VLM layers: {written['params'] / 1e9:.2f}B params, "
          f"{run['checkpoint']['file_gib']} GiB file; load average {load_avg[0]:.1f}")
    print(f"{'load':<8} {'load s':>7} {'peak RSS GiB':>13} {'read all weights s':>19} {'peak RSS GiB':>13} "
          f"{'peak anon GiB':>14} {'weights GiB':>12}")
    for how, r in rows.items():
        print(f"{how:<8} {r['seconds']:>7.1f} {r['peak_rss_gib_after_load']:>13.2f} {r['touch_all_weights_seconds']:>19.1f} "
              f"{r['peak_rss_gib_after_touch']:>13.2f} {r['peak_anon_gib']:>14.2f} {r['weights_gib']:>12.2f}")
    if "identical_weights" in run:
        print(f"identical weights: {run['identical_weights']}")
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report = {"benchmark": "load_4b", "notes": NOTES, "runs": report.get("runs", {}) | {f"vlm{args.vlm_layers}": run}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out} (runs: {', '.join(report['runs'])})")
    return 0 if run.get("identical_weights", True) else 1


NOTES = [
    "each load runs in a fresh process; peak_anon = sampled RssAnon (20 ms) during load + read; peak_rss = VmHWM after "
    "the load and after reading every weight once (the meta load's tensors map the file copy-on-write, so their pages "
    "are read on first use and count as file pages, which the kernel can drop and which processes share)",
    "lerobot = PreTrainedPolicy.from_pretrained as LeRobot ships it (random init, then a copy from the file); "
    "meta = LabVLAPolicy.from_pretrained (policy/loading.py: init_empty_weights + load_state_dict(assign=True))",
    "measured on a shared 2-core machine under the load given per run; seconds scale with it",
    "runs keyed vlmN: N of Qwen3-VL-4B's 36 text layers (fewer when the machine lacked memory for two copies)",
]


if __name__ == "__main__":
    sys.exit(main())
