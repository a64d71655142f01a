"""`labvla-convert official CKPT_DIR OUT_DIR`: an official LabVLA checkpoint -> a LeRobot checkpoint.

The official trainer (zjunlp/LabVLA `scripts/utils/checkpoint.py`) writes
    CKPT_DIR/pretrained_model/{model.safetensors, config.json}   config.json = vars(LabVLAConfig)
    CKPT_DIR/{norm_stats.json, labvla_schema.json}
(the Hub repo may hold the same files flat). The output is what `lerobot-eval --policy.path=OUT_DIR`
and `lerobot-train --policy.path=OUT_DIR` load: `config.json`, `model.safetensors`, the tokenizer,
and `policy_{pre,post}processor.json` with the normalizer stats.

The official model is the same network as ours (see README "Running the released LabVLA model"), so
weights are a prefix rename; normalization is re-expressed in LeRobot's MEAN_STD terms and delta
actions become LeRobot's relative/absolute action steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np

from lerobot_labvla.errors import LabVLAError, one_line

logger = logging.getLogger(__name__)

# Official state-dict prefix -> ours.
KEY_PREFIXES = (
    ("model.vlm.", "backbone.vlm."),
    ("model.dit_action_head.", "expert.dit_action_head."),
    ("model.proj_vlm_to_dit.", "expert.proj_vlm_to_dit."),
    ("model.state_proj.", "expert.state_proj."),
    ("model.action_in_proj.", "expert.action_in_proj."),
    ("model.action_out_proj.", "expert.action_out_proj."),
    ("model.ki_head.", "ki_head."),
    ("model.state_vlm_proj.", "backbone.state_vlm_proj."),
)
OFFICIAL_EPS = 1e-6  # official NormalizeTransformFn: (x - mean) / (std + eps), 2 (x - q01) / (q99 - q01 + eps) - 1
LEROBOT_EPS = 1e-8  # LeRobot's NormalizerProcessorStep: (x - mean) / (std + eps)
QWEN_4B = "Qwen/Qwen3-VL-4B-Instruct"
SHARD_INDEX = "model.safetensors.index.json"
HUB_FILES = ["*.json", "*.safetensors", "pretrained_model/*", "tokenizer/*"]


def map_key(key: str) -> str | None:
    for old, new in KEY_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def find_files(ckpt_dir: Path) -> dict[str, Path]:
    """Locate the official files in CKPT_DIR (trainer layout or flat)."""
    model_dir = ckpt_dir / "pretrained_model" if (ckpt_dir / "pretrained_model").is_dir() else ckpt_dir
    weights = model_dir / "model.safetensors"
    if not weights.exists() and (model_dir / SHARD_INDEX).exists():  # a big model saved in shards (Hub uploads)
        weights = model_dir / SHARD_INDEX
    files = {"weights": weights, "config": model_dir / "config.json"}
    for name, stem in (("norm_stats", "norm_stats.json"), ("schema", "labvla_schema.json")):
        files[name] = next((d / stem for d in (ckpt_dir, model_dir, model_dir.parent) if (d / stem).exists()), ckpt_dir / stem)
    missing = [str(p) for k, p in files.items() if k != "schema" and not p.exists()]
    if missing:
        raise LabVLAError(f"not an official LabVLA checkpoint: missing {', '.join(missing)}")
    return files


QWEN3_VL_MIN_PIXELS = 65536  # Qwen3-VL preprocessor_config.json: size.shortest_edge
QWEN3_VL_MAX_PIXELS = 16777216


def processor_image_size(resolution: int, vlm_dir: str) -> int:
    """The side the official Qwen3-VL image processor resizes a `resolution`² image to (smart_resize)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    size = {}
    cfg = Path(vlm_dir) / "preprocessor_config.json"
    if cfg.exists():
        size = json.loads(cfg.read_text()).get("size") or {}
    h, _ = smart_resize(
        resolution, resolution, factor=32,
        min_pixels=size.get("shortest_edge", QWEN3_VL_MIN_PIXELS), max_pixels=size.get("longest_edge", QWEN3_VL_MAX_PIXELS),
    )
    return int(h)


def labvla_config_from_official(
    official: dict, schema: dict, stats: dict, *, backbone: str, backbone_config: dict, cameras: list[str] | None = None
):
    """Our `LabVLAConfig` for an official config.json + schema + norm stats (`cameras`: input keys in slot order)."""
    from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

    unsupported = {
        "dit_cross_attention_dim": official.get("dit_cross_attention_dim") is not None,
        "pi05_block_attention_mask": bool(official.get("pi05_block_attention_mask")),
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise LabVLAError(f"official config sets {', '.join(bad)}, which labvla does not implement")
    phase = official.get("training_phase", "posttrain")
    ki = bool(official.get("knowledge_isolation", False))
    mode = "fast_pretrain" if phase == "vlm_pretrain" else ("ki" if ki else "finetune")
    state_token = ki if phase == "posttrain" else not official.get("discretize_state_in_vlm_pretrain", True)
    height, width = official.get("image_resolution", (224, 224))
    if height != width:
        raise LabVLAError(f"official image_resolution {height}x{width} is not square; labvla resizes to squares")
    state_dim, action_dim = len(stats["observation.state"]["mean"]), len(stats["action"]["mean"])
    delta_mask = list(schema.get("delta_mask") or [])
    grippers = [int(d) for d in schema.get("gripper_action_dims") or []]
    names = [f"{'gripper' if i in grippers or (i < len(delta_mask) and not delta_mask[i]) else 'joint'}_{i}" for i in range(action_dim)]
    # Official camera slots in slot order: schema image_mapping {dataset key: observation.images.image<i>}.
    mapping = schema.get("image_mapping") or {}
    slots = [k for k, _ in sorted(mapping.items(), key=lambda kv: kv[1])] or [f"observation.images.image{i}" for i in range(3)]
    if cameras is not None:
        if len(cameras) != len(slots):
            raise LabVLAError(f"--cameras names {len(cameras)} camera(s); the checkpoint has {len(slots)} slots ({', '.join(slots)})")
        slots = cameras
    cameras = [k if k.startswith("observation.images.") else f"observation.images.{k}" for k in slots]
    heads, head_dim = int(official.get("dit_num_heads", 8)), int(official.get("dit_head_dim", 128))
    config = LabVLAConfig(
        mode=mode,
        backbone=backbone,
        backbone_config=backbone_config,
        random_init_backbone=True,
        dtype=official.get("dtype", "bfloat16"),
        image_size=processor_image_size(int(height), backbone),
        pad_image_size=int(height),
        num_camera_slots=3,
        max_prompt_tokens=int(official.get("tokenizer_max_length", 48)),
        vlm_state_token=state_token,
        expert_layers=int(official.get("dit_num_layers", 18)),
        expert_heads=heads,
        expert_width=heads * head_dim,
        # Absent in checkpoints older than the flag (2026-05-13), which had no self-attention blocks.
        expert_interleave_self_attention=bool(official.get("dit_interleave_self_attention", False)),
        expert_layerwise_vlm_features=bool(official.get("dit_layerwise_vlm_features", False)),
        chunk_size=int(official.get("chunk_size", 50)),
        n_action_steps=int(official.get("n_action_steps", official.get("chunk_size", 50))),
        num_inference_steps=int(official.get("num_inference_steps", 10)),
        time_beta_alpha=float(official.get("time_sampling_beta_alpha", 1.5)),
        time_beta_beta=float(official.get("time_sampling_beta_beta", 1.0)),
        max_state_dim=int(official.get("max_state_dim", 32)),
        max_action_dim=int(official.get("max_action_dim", 32)),
        fm_loss_weight=float(official.get("ki_mse_weight", 10.0)),
        # gripper_action_dims stays None (the dims named "gripper": here the schema's, after fine-tuning the new dataset's)
        gripper_loss_weight=float(official.get("gripper_loss_weight", 1.0)),
        # Our FAST head reserves its last id for <eos>; the official head has exactly this many rows.
        fast_vocab_size=int(official.get("discrete_action_vocab_size", 2048)) - 1,
        max_fast_tokens=int(official.get("discrete_action_max_length", 240)),
        use_relative_actions=official.get("action_mode", "delta") == "delta" and any(delta_mask),
        relative_exclude_joints=["gripper"],
        action_feature_names=names,
        # The converted stats arrive already re-expressed as MEAN_STD (`mean_std_stats`, no q01/q99 left to
        # apply). None = what the official fine-tuning does with a NEW dataset's stats (`lerobot-train
        # --policy.path`): q01/q99 on the dims named "gripper", on every dim in fast_pretrain.
        quantile_dims=None,
        normalization_mapping={
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        },
        device="cpu",
        push_to_hub=False,
    )
    size = int(height)
    config.input_features = {
        **{k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, size, size)) for k in cameras},
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
    }
    config.output_features = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))}
    return config


def mean_std_stats(stats: dict, quantile_dims: list[int], *, all_quantile: bool) -> dict:
    """Official per-dim normalization as LeRobot MEAN_STD stats that give the same numbers.

    mean/std dims: `(x - m) / (s + 1e-6)` = LeRobot's `(x - m) / (s' + 1e-8)` with `s' = s + 1e-6 - 1e-8`.
    q01/q99 dims: `2 (x - q01) / (q99 - q01 + 1e-6) - 1` = the same with `m' = q01 + (q99 - q01 + 1e-6) / 2`,
    `s' = (q99 - q01 + 1e-6) / 2 - 1e-8`.
    """
    out = {}
    for key in ("observation.state", "action"):
        entry = stats[key]
        mean = np.asarray(entry["mean"], dtype=np.float64)
        std = np.asarray(entry["std"], dtype=np.float64) + OFFICIAL_EPS - LEROBOT_EPS
        dims = list(range(len(mean))) if all_quantile else [d for d in quantile_dims if d < len(mean)]
        if dims:
            if "q01" not in entry or "q99" not in entry:
                raise LabVLAError(f"norm_stats.json: {key} lacks q01/q99, which the official normalization uses")
            q01, q99 = np.asarray(entry["q01"], dtype=np.float64), np.asarray(entry["q99"], dtype=np.float64)
            half = (q99[dims] - q01[dims] + OFFICIAL_EPS) / 2
            mean[dims] = q01[dims] + half
            std[dims] = half - LEROBOT_EPS
        out[key] = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    return out


def resolve_backbone(official: dict, vlm: str | None) -> tuple[str, dict, str]:
    """`(backbone name, Qwen3-VL config dict, tokenizer source)` without downloading weights."""
    from lerobot_labvla.policy.backbone import REFERENCE_CONFIGS

    source = vlm or official.get("vlm_pretrained_path") or QWEN_4B
    path = Path(source)
    if (path / "config.json").exists():
        cfg = json.loads((path / "config.json").read_text())
        return str(path), cfg, str(path)
    if vlm and Path(vlm).exists():
        raise LabVLAError(f"--vlm {vlm} has no config.json")
    # The official default is a local copy of Qwen3-VL-4B-Instruct; its architecture is known.
    return QWEN_4B, REFERENCE_CONFIGS[QWEN_4B](), QWEN_4B


def load_official_weights(policy, weights: Path) -> None:
    """Load the renamed official tensors into `policy`; unknown or missing keys are one LabVLAError."""
    from safetensors.torch import load_file

    if weights.name == SHARD_INDEX:
        shards = sorted(set(json.loads(weights.read_text())["weight_map"].values()))
        tensors = {k: v for shard in shards for k, v in load_file(str(weights.parent / shard)).items()}
    else:
        tensors = load_file(str(weights))
    expected = policy.state_dict()
    renamed, unknown = {}, []
    for key, tensor in tensors.items():
        new = map_key(key)
        if new is None or new not in expected:
            unknown.append(key)
        else:
            renamed[new] = tensor
    vlm = policy.backbone.vlm
    tied = {"backbone.vlm.model.language_model.embed_tokens.weight"} if vlm.lm_head.weight is vlm.get_input_embeddings().weight else set()
    optional = {k for k in expected if k.startswith("expert.")} if policy.config.mode == "fast_pretrain" else set()
    missing = sorted(k for k in expected if k not in renamed and k not in tied and k not in optional)
    shape = [f"{k} {tuple(t.shape)} != {tuple(expected[k].shape)}" for k, t in renamed.items() if t.shape != expected[k].shape]
    problems = []
    if unknown:
        problems.append(f"unknown keys ({len(unknown)}): {', '.join(sorted(unknown)[:8])}{' ...' if len(unknown) > 8 else ''}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if shape:
        problems.append(f"shape mismatches: {', '.join(shape[:4])}")
    if problems:
        raise LabVLAError(f"{weights}: " + "; ".join(problems))
    if "backbone.vlm.lm_head.weight" in renamed and tied:
        renamed["backbone.vlm.model.language_model.embed_tokens.weight"] = renamed["backbone.vlm.lm_head.weight"]
    policy.load_state_dict(renamed, strict=False)


def convert(
    ckpt_dir: Path, out_dir: Path, *, vlm: str | None = None, tokenizer: str | None = None, cameras: list[str] | None = None
) -> Path:
    """Convert and write OUT_DIR atomically (a temp dir renamed at the end).

    `cameras`: the converted checkpoint's camera keys in the official slot order (default: the dataset keys
    of the schema's image_mapping), e.g. LabUtopia's `front, side, wrist` for `lerobot-eval --env.type=labutopia`.
    """
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy
    from lerobot_labvla.policy.processor_labvla import make_labvla_pre_post_processors

    files = find_files(ckpt_dir)
    official = json.loads(files["config"].read_text())
    stats = json.loads(files["norm_stats"].read_text())
    schema = json.loads(files["schema"].read_text()) if files["schema"].exists() else {}
    for key in ("observation.state", "action"):
        if key not in stats or "mean" not in stats[key]:
            raise LabVLAError(f"{files['norm_stats']}: no {key} mean/std")
    backbone, backbone_config, tok = resolve_backbone(official, vlm)
    config = labvla_config_from_official(
        official, schema, stats, backbone=backbone, backbone_config=backbone_config, cameras=cameras
    )
    config.tokenizer = tokenizer or tok
    pretrain = official.get("training_phase", "posttrain") == "vlm_pretrain"
    lerobot_stats = mean_std_stats(stats, [int(d) for d in schema.get("gripper_action_dims") or []], all_quantile=pretrain)

    policy = LabVLAPolicy(config)
    load_official_weights(policy, files["weights"])
    config.random_init_backbone = False
    pre, post = make_labvla_pre_post_processors(config, dataset_stats=lerobot_stats)

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise LabVLAError(f"{out_dir} exists and is not empty; pick a new OUT_DIR")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        policy.save_pretrained(tmp)
        pre.save_pretrained(tmp)
        post.save_pretrained(tmp)
        (tmp / "labvla_conversion.json").write_text(
            json.dumps({"source": str(ckpt_dir), "official_config": official, "schema": schema}, indent=2, default=str)
        )
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="labvla-convert",
        description="Convert a released LabVLA checkpoint into a LeRobot checkpoint (lerobot-eval/lerobot-train --policy.path).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("official", help="official zjunlp/LabVLA checkpoint -> LeRobot checkpoint")
    p.add_argument("ckpt_dir", nargs="?", type=Path, help="official checkpoint dir (pretrained_model/ + norm_stats.json + labvla_schema.json)")
    p.add_argument("out_dir", type=Path, help="new directory for the LeRobot checkpoint")
    p.add_argument("--from-hub", metavar="REPO", help="download the official checkpoint from the Hub (e.g. zjunlp/LabVLA) instead of CKPT_DIR")
    p.add_argument("--vlm", help="local Qwen3-VL dir for the backbone config/tokenizer (default: the checkpoint's vlm_pretrained_path, else Qwen/Qwen3-VL-4B-Instruct)")
    p.add_argument("--tokenizer", help="tokenizer dir or Hub id (default: the --vlm dir, else Qwen/Qwen3-VL-4B-Instruct from the HF cache)")
    p.add_argument("--cameras", help="the checkpoint's camera keys in the official slot order, comma-separated "
                   "(default: the schema's dataset keys); front,side,wrist = LabUtopia's camera_1..3_rgb for --env.type=labutopia")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ckpt = args.ckpt_dir
        if args.from_hub:
            from huggingface_hub import snapshot_download

            try:
                ckpt = Path(snapshot_download(args.from_hub, allow_patterns=HUB_FILES))
            except (OSError, ValueError) as exc:  # not cached offline, not found, no network: name the repo
                raise LabVLAError(f"--from-hub {args.from_hub}: {one_line(exc)}") from exc
        elif ckpt is None:
            raise LabVLAError("give CKPT_DIR or --from-hub REPO")
        cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
        out = convert(ckpt, args.out_dir, vlm=args.vlm, tokenizer=args.tokenizer, cameras=cameras)
    except (LabVLAError, OSError) as exc:
        if args.debug:
            raise
        print(f"labvla-convert: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: run it with lerobot-eval --policy.path={out} or fine-tune with lerobot-train --policy.path={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
