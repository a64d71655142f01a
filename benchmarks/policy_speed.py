"""Policy speed: `predict_action_chunk` latency and training samples/s of labvla vs LeRobot's pi05 and smolvla.

CPU (default): the three policies at about the same parameter count (~9M), with random weights and no
Hub, side by side in one process. Batch 1 for latency, `--train-batch` for training (forward + backward +
AdamW step); two 224x224 cameras, chunk 10, 10 Euler steps, float32, one torch thread for all. The
measurements are interleaved round-robin (one call of each policy in turn, repeated), so the policies
share the noise of a machine whose cores other jobs also use; the table shows median, p90 and min.

* labvla: `LabVLAConfig(backbone="tiny")` (a random 2-layer Qwen3-VL, byte-level tokenizer) with a
  6-layer, 256-wide DiT expert, built with LeRobot's `make_policy` + `make_pre_post_processors` from a
  `lerobot_labvla.synthetic` dataset. Mode `finetune` (FM loss, backbone trainable, as pi05 trains).
* pi05 and smolvla are PATCHED IN THIS SCRIPT ONLY to be small and offline (LeRobot's code is not
  changed): pi05's smallest buildable variant is ~3B parameters (`get_gemma_config` knows only
  gemma_2b/gemma_300m, `PaliGemmaWithExpertModel` hard-codes SigLIP-so400m, a 2048 projection and a
  257152-token vocabulary); smolvla's `load_vlm_weights=False` still reads the SmolVLM2 config and
  processor from the Hub. See `tiny_pi05` and `tiny_smolvla` for exactly what is replaced. Their
  architectures are otherwise LeRobot's: pi05 = PaliGemma (SigLIP patch 14 -> 256 tokens per 224^2
  image) + a Gemma expert of the same depth sharing attention and the prefix KV cache; smolvla =
  SmolVLM (patch 16 + 2x2 pixel shuffle -> 49 tokens per image) + an interleaved cross/self-attention
  expert. All three get the same vision tower size (2 layers, width 32) and the same prompt length in
  tokens (labvla's prompt, tokenized by its byte-level tokenizer; pi05/smolvla take random ids of that
  length because their Hub tokenizers are out of reach).
* pi05_49tok: the same tiny pi05 with SigLIP patch 32, i.e. 49 image tokens per camera like the other
  two, to tell pi05's architecture apart from its 5x longer image prefix.

GPU (`--device cuda`): the 4B labvla configuration (Qwen3-VL-4B architecture with random weights,
bf16, 18x1024 expert), eager and with `compile=True` (the expert's denoise step): chunk latency, peak
memory (`torch.cuda.max_memory_allocated`), training samples/s; and issue 18's row, `labvla_4b_ki`: KI
training in bf16, samples/s, peak memory and MFU (FLOPs counted by torch's FlopCounterMode on one step,
over the GPU's dense bf16 peak; targets >= 15 samples/s and >= 40 %).

    python benchmarks/policy_speed.py            # CPU, ~3-5 min on 2 busy cores
    python benchmarks/policy_speed.py --quick    # CPU, under a minute (few repeats: rough numbers)
    python benchmarks/policy_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CAMERAS = ("front", "wrist")
STATE_DIM, ACTION_DIM = 8, 7
CHUNK, EULER_STEPS = 10, 10
# Vocabulary of the tiny models: labvla's tiny Qwen3-VL has 1536 ids; pi05/smolvla get the same, so
# that none of the three carries a 257k-row embedding that would dominate its parameter count.
TINY_VOCAB = 1536
# Vision tower shared by the three tiny configurations (labvla's tiny Qwen3-VL ViT size).
VISION = dict(hidden=32, mlp=64, layers=2, heads=2)


@dataclass(frozen=True)
class Sizes:
    """The shapes of one comparison configuration (the labvla, pi05 and smolvla builds read them)."""

    name: str = "equal_total"
    # labvla's VLM: None = the `tiny` Qwen3-VL (2 layers, 64 wide); else overrides of its text_config.
    labvla_vlm: dict | None = None
    labvla_expert_layers: int = 6
    labvla_expert_width: int = 256
    labvla_expert_heads: int = 4
    # pi05: the expert's depth must equal the VLM's (layers are zipped) and both streams share
    # head_dim and exactly 8 query heads (`reshape(..., 1 * 8 * head_dim)` in modeling_pi05).
    pi05_depth: int = 6
    pi05_vlm_width: int = 64
    pi05_vlm_mlp: int = 128
    pi05_expert_width: int = 256
    pi05_expert_mlp: int = 1024
    pi05_head_dim: int = 32
    # smolvla: expert width = VLM width * expert_width_multiplier; num_vlm_layers = expert layers.
    with_smolvla: bool = True
    smolvla_depth: int = 6
    smolvla_vlm_width: int = 96
    smolvla_expert_width: int = 384


# The first configuration: about the same total (~9M) but >90% of it in the action expert and a 2-layer
# labvla VLM against 6 for pi05/smolvla, i.e. nothing like the real models.
EQUAL_TOTAL = Sizes()
# The real models' proportions: Qwen3-VL-4B + the 18x1024 DiT is ~94% VLM (`real_4b_split` measures
# it on the meta device; pi05 = PaliGemma-2B + Gemma-300M is ~90%). Here both VLMs are 6 layers of
# width 256 with a 4x MLP and 8 query heads of 32 (same depth, width, vocabulary and vision tower) and
# the experts are sized so that ~94% of each policy is VLM: labvla's DiT 6 blocks x 64, pi05's Gemma
# expert 6 layers (its depth must equal the VLM's) x 48 (its adaRMS norms make a layer ~2x a DiT block's).
REAL_SPLIT = Sizes(
    name="real_split",
    labvla_vlm={"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 8,
                "num_key_value_heads": 2, "head_dim": 32},
    labvla_expert_layers=6, labvla_expert_width=64, labvla_expert_heads=2,
    pi05_depth=6, pi05_vlm_width=256, pi05_vlm_mlp=1024, pi05_expert_width=48, pi05_expert_mlp=192, pi05_head_dim=32,
    with_smolvla=False,
)
CONFIGS = {s.name: s for s in (EQUAL_TOTAL, REAL_SPLIT)}


# --------------------------------------------------------------------------------------------
# Building the three policies
# --------------------------------------------------------------------------------------------
def make_dataset(root: Path, size: int):
    from lerobot_labvla.synthetic import make_dataset as make

    return make(root / "ds", repo_id="local/policy_speed", n_episodes=2, frames=20, image_size=size,
                state_dim=STATE_DIM, action_dim=ACTION_DIM, cameras=CAMERAS)


def labvla_backbone_config(sizes: Sizes) -> dict | None:
    """The tiny Qwen3-VL config with `sizes.labvla_vlm` applied to its text model (None: the tiny one as is)."""
    if sizes.labvla_vlm is None:
        return None
    from lerobot_labvla.policy.backbone import tiny_backbone_config

    cfg = tiny_backbone_config()
    text = cfg["text_config"] | sizes.labvla_vlm
    half = text["head_dim"] // 2  # M-RoPE sections split head_dim / 2 over (t, h, w) as Qwen3-VL-4B's [24, 20, 20]
    text["rope_parameters"] = text["rope_parameters"] | {"mrope_section": [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]}
    cfg["text_config"] = text
    cfg["vision_config"] = cfg["vision_config"] | {"out_hidden_size": text["hidden_size"]}
    return cfg


def build_labvla(ds, sizes: Sizes, size: int, mode: str = "finetune", **options):
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

    cfg = LabVLAConfig(
        backbone="tiny", backbone_config=labvla_backbone_config(sizes), device="cpu", mode=mode, image_size=size,
        chunk_size=CHUNK, n_action_steps=CHUNK, num_inference_steps=EULER_STEPS, expert_layers=sizes.labvla_expert_layers,
        expert_width=sizes.labvla_expert_width, expert_heads=sizes.labvla_expert_heads, **options,
    )
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    return policy, pre


@contextlib.contextmanager
def tiny_pi05(sizes: Sizes, patch: int = 14):
    """Patch `modeling_pi05` while a PI05Policy is built: tiny Gemma variants, SigLIP and vocabulary.

    Replaced (module attributes only, restored on exit): `get_gemma_config` returns the sizes below for
    "gemma_2b" (the VLM) and "gemma_300m" (the expert); the PaliGemma constructor gets a 2-layer,
    32-wide SigLIP (patch 14 as in pi05, or `patch`), a projection to the VLM width instead of the
    hard-coded 2048, and a 1536-token vocabulary instead of 257152; the expert's (unused) LM head gets
    that vocabulary too.
    """
    from lerobot.policies.pi05 import modeling_pi05 as m

    def gemma(width: int, mlp: int):
        return m.GemmaConfig(width=width, depth=sizes.pi05_depth, mlp_dim=mlp, num_heads=8, num_kv_heads=1,
                             head_dim=sizes.pi05_head_dim)

    variants = {"gemma_2b": gemma(sizes.pi05_vlm_width, sizes.pi05_vlm_mlp),
                "gemma_300m": gemma(sizes.pi05_expert_width, sizes.pi05_expert_mlp)}
    orig = (m.get_gemma_config, m.PaliGemmaForConditionalGenerationWithPiGemma, m.PiGemmaForCausalLM)

    def paligemma(config):
        config.text_config.vocab_size = config._vocab_size = TINY_VOCAB
        config.image_token_index = TINY_VOCAB - 1
        vc = config.vision_config
        vc.hidden_size, vc.intermediate_size = VISION["hidden"], VISION["mlp"]
        vc.num_hidden_layers, vc.num_attention_heads, vc.patch_size = VISION["layers"], VISION["heads"], patch
        vc.projection_dim = config.text_config.hidden_size
        return orig[1](config=config)

    def expert(config):
        config.vocab_size = TINY_VOCAB
        return orig[2](config=config)

    m.get_gemma_config = variants.__getitem__
    m.PaliGemmaForConditionalGenerationWithPiGemma, m.PiGemmaForCausalLM = paligemma, expert
    try:
        yield
    finally:
        m.get_gemma_config, m.PaliGemmaForConditionalGenerationWithPiGemma, m.PiGemmaForCausalLM = orig


@contextlib.contextmanager
def tiny_smolvla(sizes: Sizes, size: int):
    """Patch `smolvlm_with_expert` while a SmolVLAPolicy is built: a hand-made SmolVLM config, no Hub.

    `AutoConfig.from_pretrained` returns a SmolVLMConfig built here (Llama text model of
    `smolvla_vlm_width`, 2-layer 32-wide vision tower at `size` with patch 16 and a 2x2 pixel shuffle,
    1536-token vocabulary); `AutoProcessor.from_pretrained` returns a stub that only carries the two
    special-token ids SmolVLA reads (used only with `add_image_special_tokens=True`, off by default).
    """
    from lerobot.policies.smolvla import smolvlm_with_expert as m
    from transformers import SmolVLMConfig

    w = sizes.smolvla_vlm_width
    config = SmolVLMConfig(
        text_config={
            "model_type": "llama", "vocab_size": TINY_VOCAB, "hidden_size": w, "intermediate_size": 2 * w,
            "num_hidden_layers": sizes.smolvla_depth, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": w // 4, "max_position_embeddings": 2048, "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": VISION["hidden"], "intermediate_size": VISION["mlp"], "num_hidden_layers": VISION["layers"],
            "num_attention_heads": VISION["heads"], "image_size": size, "patch_size": 16,
        },
        scale_factor=2, image_token_id=TINY_VOCAB - 1, pad_token_id=0,
    )
    tokenizer = types.SimpleNamespace(fake_image_token_id=TINY_VOCAB - 3, global_image_token_id=TINY_VOCAB - 2)
    orig = (m.AutoConfig, m.AutoProcessor)
    m.AutoConfig = types.SimpleNamespace(from_pretrained=lambda *_a, **_k: config)
    m.AutoProcessor = types.SimpleNamespace(from_pretrained=lambda *_a, **_k: types.SimpleNamespace(tokenizer=tokenizer))
    try:
        yield
    finally:
        m.AutoConfig, m.AutoProcessor = orig


def build_pi05(ds, sizes: Sizes, size: int, patch: int = 14):
    from lerobot.policies.factory import make_policy
    from lerobot.policies.pi05.configuration_pi05 import PI05Config

    cfg = PI05Config(device="cpu", dtype="float32", chunk_size=CHUNK, n_action_steps=CHUNK,
                     num_inference_steps=EULER_STEPS, image_resolution=(size, size))
    with tiny_pi05(sizes, patch):
        return make_policy(cfg, ds_meta=ds.meta)


def build_smolvla(ds, sizes: Sizes, size: int):
    from lerobot.policies.factory import make_policy
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    cfg = SmolVLAConfig(
        device="cpu", chunk_size=CHUNK, n_action_steps=CHUNK, num_steps=EULER_STEPS, load_vlm_weights=False,
        resize_imgs_with_padding=(size, size), num_vlm_layers=sizes.smolvla_depth,
        expert_width_multiplier=sizes.smolvla_expert_width / sizes.smolvla_vlm_width,
        # Train everything, as labvla (finetune) and pi05 do; SmolVLA's defaults freeze the VLM.
        train_expert_only=False, freeze_vision_encoder=False,
    )
    with tiny_smolvla(sizes, size):
        return make_policy(cfg, ds_meta=ds.meta)


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------
def raw_batch(ds, batch_size: int) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.constants import ACTION

    dataset = LeRobotDataset(ds.repo_id, root=ds.root, delta_timestamps={ACTION: [i / ds.fps for i in range(CHUNK)]})
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return next(iter(loader))


def token_batch(labvla_batch: dict, n_real: int, n_tokens: int) -> dict:
    """pi05/smolvla input: labvla's preprocessed images/state/action plus random prompt ids, `n_real` real
    tokens right-padded to `n_tokens` (labvla pads its prompt to `max_prompt_tokens` the same way)."""
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    keep = {k: v for k, v in labvla_batch.items() if isinstance(v, torch.Tensor) and k.startswith(("observation.", "action"))}
    bsz = keep["observation.state"].shape[0]
    gen = torch.Generator().manual_seed(0)
    keep[OBS_LANGUAGE_TOKENS] = torch.randint(0, 256, (bsz, n_tokens), generator=gen)
    keep[OBS_LANGUAGE_ATTENTION_MASK] = torch.arange(n_tokens)[None].expand(bsz, -1) < n_real
    return keep


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Parameter name prefix -> part, first match wins; anything else is "other" (labvla: the FAST head and
# the VLM state token; smolvla: its state/action projections).
PARTS = (
    ("backbone.vlm.model.visual.", "vision"),
    ("backbone.vlm.", "vlm_text"),
    ("expert.", "expert"),
    ("model.paligemma_with_expert.paligemma.model.vision_tower.", "vision"),
    ("model.paligemma_with_expert.paligemma.model.multi_modal_projector.", "vision"),
    ("model.paligemma_with_expert.paligemma.", "vlm_text"),
    ("model.paligemma_with_expert.gemma_expert.", "expert"),
    ("model.action_", "expert"),
    ("model.time_mlp", "expert"),
    ("model.vlm_with_expert.vlm.model.vision_model.", "vision"),
    ("model.vlm_with_expert.vlm.", "vlm_text"),
    ("model.vlm_with_expert.lm_expert.", "expert"),
)


def param_parts(policy: torch.nn.Module) -> dict:
    """Parameters per part (vision, vlm_text, expert, other), their total and the VLM's share of it."""
    parts = {"vision": 0, "vlm_text": 0, "expert": 0, "other": 0}
    for name, p in policy.named_parameters():  # named_parameters() skips tied duplicates
        parts[next((part for prefix, part in PARTS if name.startswith(prefix)), "other")] += p.numel()
    total = sum(parts.values())
    return parts | {"total": total, "vlm_share": round((parts["vision"] + parts["vlm_text"]) / total, 3)}


def real_4b_split() -> dict:
    """Parameters per part of the real 4B labvla (Qwen3-VL-4B + 18x1024 DiT), counted on the meta device."""
    from accelerate import init_empty_weights
    from lerobot.configs.types import FeatureType, PolicyFeature

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    features = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)) for c in CAMERAS}
    features["observation.state"] = PolicyFeature(FeatureType.STATE, (STATE_DIM,))
    cfg = LabVLAConfig(backbone="Qwen/Qwen3-VL-4B-Instruct", random_init_backbone=True, tokenizer="tiny", mode="finetune",
                       device="cpu", input_features=features,
                       output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))})
    with init_empty_weights():
        policy = LabVLAPolicy(cfg)
    policy.backbone.vlm.tie_weights()  # Qwen3-VL-4B's embedding and LM head are one tensor (the meta build untied them)
    return param_parts(policy)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def round_robin(calls: dict[str, Callable[[], None]], warmup: int, repeats: int, sync: Callable[[], None]) -> dict[str, list[float]]:
    """Seconds per call of each function, measured one call of each in turn, `repeats` times."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def amp(enabled: bool):
    """bf16 autocast on CUDA, as LeRobot's accelerate mixed precision runs a `dtype=bfloat16` policy."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def train_step_fn(policy, batch: dict, lr: float = 1e-4, bf16: bool = False) -> Callable[[], None]:
    """One forward + backward + AdamW step on a fixed batch (the loader is not part of the measurement)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)

    def step() -> None:
        policy.train()
        with amp(bf16):
            loss, _ = policy.forward(dict(batch))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def chunk_fn(policy, batch: dict, bf16: bool = False) -> Callable[[], None]:
    def predict() -> None:
        policy.eval()
        policy.reset()
        with amp(bf16):
            policy.predict_action_chunk(dict(batch))

    return predict


def labvla_breakdown(policy, batch: dict, repeats: int) -> dict[str, float]:
    """Median ms of the parts of one labvla chunk: inputs (tokenize + patchify), VLM prefix, expert."""
    from lerobot.policies.common.flow_matching import euler_integrate, sample_noise

    images, state, prompts = policy._inputs(batch)
    parts: dict[str, list[float]] = {"inputs_ms": [], "vlm_prefix_ms": [], "context_proj_ms": [], "expert_10_steps_ms": []}
    policy.eval()
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            inputs = policy._build_inputs(images, prompts)
            t1 = time.perf_counter()
            state_p = policy._pad_state(state)
            prefix = policy.backbone(inputs, state=state_p if policy.config.uses_vlm_state_token else None)
            t2 = time.perf_counter()
            ctx_kv, ctx_mask = policy.expert.project_context(prefix.hidden), prefix.mask
            t3 = time.perf_counter()
            noise = sample_noise((state.shape[0], policy.config.chunk_size, policy.config.max_action_dim), state.device)
            euler_integrate(lambda x, t: policy._denoise(x, t, state_p, ctx_kv, ctx_mask), noise, policy.config.num_inference_steps)
            t4 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                parts[key].append(dt * 1e3)
    return {k: round(statistics.median(v[1:]), 2) for k, v in parts.items()} | {
        "prefix_tokens": int(inputs["attention_mask"].shape[1]), "expert_tokens": policy.config.chunk_size + 1,
    }


def git_commit() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return proc.stdout.strip() + ("+dirty" if dirty else "")


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    with contextlib.suppress(Exception):
        import lerobot
        import transformers

        info |= {"lerobot": lerobot.__version__, "transformers": transformers.__version__}
    with contextlib.suppress(OSError):
        info["load_avg_at_start"] = os.getloadavg()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# --------------------------------------------------------------------------------------------
# CPU: labvla vs pi05 vs smolvla at equal size
# --------------------------------------------------------------------------------------------
def run_cpu(args) -> dict:
    """Both configurations (or `--config`), each in the format below; the top-level keys repeat real_split."""
    configs = {}
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_dataset(Path(tmp), args.image_size)
        for name in args.configs:
            configs[name] = run_config(args, ds, CONFIGS[name])
            configs[name].pop("_policies")
    main = configs.get("real_split") or next(iter(configs.values()))
    return {k: main[k] for k in ("settings", "policies", "ratios", "targets")} | {
        "configs": configs,
        "real_4b_labvla_params": real_4b_split(),
        "notes": NOTES + [f"top-level settings/policies/ratios/targets are the {main['settings']['config']} configuration"],
    }


NOTES = [
    "measurements interleaved round-robin (labvla, pi05, ..., labvla, ...) so the policies share the noise of a "
    "machine whose cores other jobs also use",
    "pi05 and smolvla are patched in this benchmark only (tiny Gemma/SigLIP/vocab for pi05, a hand-built "
    "SmolVLM config and a processor stub for smolvla), random weights, no Hub",
    "pi05/smolvla get random prompt ids of labvla's prompt length; labvla's latency includes its own "
    "tokenization and patchify (they happen inside its predict_action_chunk)",
    "image tokens per 224^2 camera follow each architecture: labvla (Qwen3-VL patch 16 + 2x2 merge) 49, "
    "smolvla (patch 16 + 2x2 pixel shuffle) 49, pi05 (SigLIP patch 14, no merge) 256; pi05_49tok is the "
    "same tiny pi05 with SigLIP patch 32 (49 tokens), to compare the architectures at equal prefix length",
    "training: forward + backward + AdamW step on a fixed preprocessed batch; labvla in mode finetune "
    "(FM only, backbone trainable, as pi05 trains) and labvla_ki in the default mode ki (FM on detached VLM "
    "states + FAST CE on the VLM, FAST encoding of the batch included); smolvla with train_expert_only=False "
    "and freeze_vision_encoder=False",
    "equal_total: ~9M each but >90% expert and a 2-layer labvla VLM against 6 (not the real models' shape); "
    "real_split: ~94% VLM, VLM depth 6 and width 256 for both (see Sizes/REAL_SPLIT)",
]


def run_config(args, ds, sizes: Sizes) -> dict:
    print(f"[{sizes.name}] building the policies ...", flush=True)
    labvla, pre = build_labvla(ds, sizes, args.image_size)
    labvla_ki, pre_ki = build_labvla(ds, sizes, args.image_size, mode="ki")
    policies = {"labvla": labvla, "labvla_ki": labvla_ki, "pi05": build_pi05(ds, sizes, args.image_size)}
    if sizes.with_smolvla:
        policies["smolvla"] = build_smolvla(ds, sizes, args.image_size)
    # pi05 with SigLIP patch 32: 49 image tokens per camera like labvla and smolvla, to separate
    # the architecture (shared-attention expert) from pi05's 5x longer image prefix.
    policies["pi05_49tok"] = build_pi05(ds, sizes, args.image_size, patch=32)
    lab1, labn = pre(raw_batch(ds, 1)), pre(raw_batch(ds, args.train_batch))
    ki1, kin = pre_ki(raw_batch(ds, 1)), pre_ki(raw_batch(ds, args.train_batch))
    prompt_tokens = len(labvla.backbone.tokenizer(lab1["prompt"][0], add_special_tokens=False)["input_ids"])
    own = {"labvla": (lab1, labn), "labvla_ki": (ki1, kin)}
    padded = labvla.config.max_prompt_tokens
    batches_1 = {k: own[k][0] if k in own else token_batch(lab1, prompt_tokens, padded) for k in policies}
    batches_n = {k: own[k][1] if k in own else token_batch(labn, prompt_tokens, padded) for k in policies}
    cams, grid = len(CAMERAS), args.image_size // 16
    # Every camera slot (3 by default; a slot without a camera is the first camera again, masked) with
    # <vision_start/end>, then the prompt padded to max_prompt_tokens.
    labvla_tokens = labvla.config.num_camera_slots * ((grid // 2) ** 2 + 2) + labvla.config.max_prompt_tokens
    prefix_tokens = {  # images + the prompt padded to max_prompt_tokens (+ smolvla's state token)
        "labvla": labvla_tokens,
        "labvla_ki": labvla_tokens + 1,  # + the state token (FAST targets follow in training)
        "pi05": cams * (args.image_size // 14) ** 2 + padded,
        "smolvla": cams * (grid // 2) ** 2 + padded + 1,
        "pi05_49tok": cams * (args.image_size // 32) ** 2 + padded,
    }

    torch.manual_seed(0)
    print(f"[{sizes.name}] latency: batch 1, {args.warmup} warm-up + {args.repeats} round-robin repeats ...", flush=True)
    lat = round_robin({k: chunk_fn(p, batches_1[k]) for k, p in policies.items()}, args.warmup, args.repeats, lambda: None)
    breakdown = labvla_breakdown(labvla, lab1, max(3, args.repeats // 2))
    print(f"[{sizes.name}] training: batch {args.train_batch}, {args.warmup} warm-up + {args.train_repeats} "
          "round-robin repeats ...", flush=True)
    steps = {k: train_step_fn(p, batches_n[k]) for k, p in policies.items()}
    train = round_robin(steps, args.warmup, args.train_repeats, lambda: None)

    results = {}
    for name, policy in policies.items():
        ms = [t * 1e3 for t in lat[name]]
        step_s = statistics.median(train[name])
        results[name] = {
            "params": n_params(policy),
            "params_per_part": param_parts(policy),
            "prefix_tokens": prefix_tokens[name],
            "trainable_params": sum(p.numel() for p in policy.parameters() if p.requires_grad),
            "chunk_latency_ms": {"median": round(statistics.median(ms), 2), "p90": round(percentile(ms, 0.9), 2),
                                 "min": round(min(ms), 2), "n": len(ms)},
            "train_step_ms_median": round(step_s * 1e3, 2),
            "samples_s": round(args.train_batch / step_s, 2),
        }
    results["labvla"]["breakdown_batch1"] = breakdown
    return {
        "settings": {"config": sizes.name, "batch_latency": 1, "batch_train": args.train_batch, "image_size": args.image_size,
                     "cameras": len(CAMERAS), "chunk": CHUNK, "euler_steps": EULER_STEPS,
                     "prompt_tokens": prompt_tokens, "dtype": "float32", "torch_threads": args.threads, "warmup": args.warmup,
                     "repeats": args.repeats, "train_repeats": args.train_repeats, "sizes": sizes.__dict__,
                     "labvla_backbone_config": labvla_backbone_config(sizes)},
        "policies": results,
        "ratios": ratios(results),
        "targets": targets(results),
        "_policies": policies,
    }


def ratios(results: dict) -> dict:
    out = {}
    pairs = [("labvla", o) for o in ("pi05", "smolvla", "pi05_49tok")] + [("labvla_ki", "pi05"), ("labvla_ki", "pi05_49tok")]
    for ours, other in pairs:
        if other not in results:
            continue
        lab, o = results[ours], results[other]
        out[f"{ours}/{other}"] = {
            "params": round(lab["params"] / o["params"], 3),
            "chunk_latency_median": round(lab["chunk_latency_ms"]["median"] / o["chunk_latency_ms"]["median"], 3),
            "samples_s": round(lab["samples_s"] / o["samples_s"], 3),
        }
    return out


def targets(results: dict) -> dict:
    r = ratios(results)["labvla/pi05"]
    return {
        "chunk_latency_le_0.8x_pi05": {"ratio": r["chunk_latency_median"], "met": r["chunk_latency_median"] <= 0.8},
        "samples_s_ge_pi05": {"ratio": r["samples_s"], "met": r["samples_s"] >= 1.0},
    }


def print_cpu_table(report: dict) -> None:
    for config in report["configs"].values():
        print_config_table(config)
    parts = report["real_4b_labvla_params"]
    print(f"\nreal 4B labvla for reference: {parts['total'] / 1e9:.2f}B, VLM share {parts['vlm_share']:.1%} "
          f"(vision {parts['vision'] / 1e9:.2f}B, text {parts['vlm_text'] / 1e9:.2f}B, expert {parts['expert'] / 1e9:.2f}B)")
    print("pi05 and smolvla are tiny configurations patched in this benchmark only (see the module docstring)")


def print_config_table(report: dict) -> None:
    s = report["settings"]
    print(f"\n[{s['config']}] CPU ({s['torch_threads']} thread), float32, latency batch 1 / training batch {s['batch_train']}, "
          f"{s['cameras']} cameras {s['image_size']}x{s['image_size']}, chunk {s['chunk']}, {s['euler_steps']} Euler steps, "
          f"prompt {s['prompt_tokens']} tokens; measured round-robin (shared noise)")
    head = (f"{'policy':<11} {'params':>8} {'VLM %':>6} {'expert':>8} {'prefix tok':>10} {'chunk ms median':>16} {'p90':>8} "
            f"{'min':>7} {'train step ms':>14} {'samples/s':>10}")
    print(head)
    print("-" * len(head))
    for name, r in report["policies"].items():
        lat, parts = r["chunk_latency_ms"], r["params_per_part"]
        print(f"{name:<11} {r['params'] / 1e6:>7.2f}M {parts['vlm_share'] * 100:>5.1f}% {parts['expert'] / 1e6:>7.2f}M "
              f"{r['prefix_tokens']:>10} {lat['median']:>16.1f} {lat['p90']:>8.1f} {lat['min']:>7.1f} "
              f"{r['train_step_ms_median']:>14.1f} {r['samples_s']:>10.2f}")
    for key, r in report["ratios"].items():
        print(f"{key}: params {r['params']:.2f}x, chunk latency {r['chunk_latency_median']:.2f}x, samples/s {r['samples_s']:.2f}x")
    t = report["targets"]
    lat_t, tr_t = t["chunk_latency_le_0.8x_pi05"], t["samples_s_ge_pi05"]
    print(f"target chunk latency <= 0.8x pi05: {lat_t['ratio']:.2f}x -> {'MET' if lat_t['met'] else 'NOT MET'}")
    print(f"target samples/s >= pi05: {tr_t['ratio']:.2f}x -> {'MET' if tr_t['met'] else 'NOT MET'}")
    b = report["policies"]["labvla"]["breakdown_batch1"]
    print(f"labvla chunk breakdown (batch 1, median ms): inputs {b['inputs_ms']}, VLM prefix {b['vlm_prefix_ms']} "
          f"({b['prefix_tokens']} tokens), context projection {b['context_proj_ms']}, 10 expert steps {b['expert_10_steps_ms']}")


# --------------------------------------------------------------------------------------------
# GPU: the 4B configuration, eager vs compile
# --------------------------------------------------------------------------------------------
# Dense bf16 tensor-core peak per GPU (vendor datasheets, no sparsity), for MFU; --peak-tflops overrides.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}
KI_TARGET = {"samples_s": 15.0, "mfu": 0.40}  # issue 18: one GPU, 4B, bf16, KI


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k.lower() in device_name.lower()), None)


def fit_synthetic_fast(policy, n: int = 2000, seed: int = 0) -> None:
    """KI trains the VLM on FAST tokens, whose tokenizer lerobot-train fits on the dataset: fit it on smooth
    random chunks instead (random walks, padded to max_action_dim as the policy pads its actions)."""
    import numpy as np

    from lerobot_labvla.policy.fast_tokenizer import FastTokenizer

    cfg = policy.config
    rng = np.random.default_rng(seed)
    chunks = np.zeros((n, cfg.chunk_size, cfg.max_action_dim))
    chunks[..., : cfg.action_dim] = np.cumsum(rng.normal(0, 0.1, (n, cfg.chunk_size, cfg.action_dim)), axis=1).clip(-1, 1)
    policy.fast = FastTokenizer.fit(chunks, vocab_size=cfg.fast_vocab_size, scale=cfg.fast_scale)


def step_flops(policy, batch: dict, bf16: bool = False) -> int:
    """FLOPs of one training forward + backward, counted by torch.utils.flop_counter.FlopCounterMode (every
    matmul, convolution and SDPA call the step makes, 2 FLOPs per multiply-add; elementwise ops, norms and the
    optimizer are not counted, as in the usual MFU definition)."""
    from torch.utils.flop_counter import FlopCounterMode

    policy.train()
    with FlopCounterMode(display=False) as counter:
        with amp(bf16):
            loss, _ = policy.forward(dict(batch))
        loss.backward()
    policy.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def mfu(flops_per_step: int, step_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilization: achieved FLOP/s over the GPU's dense bf16 peak (TFLOP/s)."""
    return None if not peak else flops_per_step / step_s / (peak * 1e12)


def full_size_policy(compile_expert: bool, mode: str = "finetune"):
    from lerobot.configs.types import FeatureType, PolicyFeature

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    features = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)) for c in CAMERAS}
    features["observation.state"] = PolicyFeature(FeatureType.STATE, (STATE_DIM,))
    cfg = LabVLAConfig(
        backbone="Qwen/Qwen3-VL-4B-Instruct", random_init_backbone=True, tokenizer="tiny", dtype="bfloat16",
        device="cuda", mode=mode, compile=compile_expert, chunk_size=CHUNK, n_action_steps=CHUNK,
        num_inference_steps=EULER_STEPS, input_features=features,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
    )
    return LabVLAPolicy(cfg).cuda()


def gpu_batch(bsz: int, device: str = "cuda", image_size: int = 224) -> dict:
    """A fixed random batch for the full-size rows (tests/test_benchmark_flops.py builds it on CPU, small)."""
    gen = torch.Generator(device=device).manual_seed(0)
    batch = {f"observation.images.{c}": torch.rand(bsz, 3, image_size, image_size, device=device, generator=gen)
             for c in CAMERAS}
    batch["observation.state"] = torch.rand(bsz, STATE_DIM, device=device, generator=gen) * 2 - 1
    batch["action"] = torch.rand(bsz, CHUNK, ACTION_DIM, device=device, generator=gen) * 2 - 1
    batch["prompt"] = ["Task: pick up the beaker, State: 12 200 31 140 5 77 255 128;\nAction: "] * bsz
    return batch


def gpu_training(policy, batch: dict, args, sync) -> tuple[dict, float]:
    """Timed bf16 training steps of one full-size row: its report fields and the median step time (s)."""
    step = train_step_fn(policy, batch, lr=1e-5, bf16=True)
    torch.cuda.reset_peak_memory_stats()
    step_s = statistics.median(round_robin({"train": step}, args.warmup, args.train_repeats, sync)["train"])
    return {"train_step_ms_median": round(step_s * 1e3, 1), "samples_s": round(args.train_batch / step_s, 2),
            "peak_memory_train_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}, step_s


def run_gpu(args) -> dict:
    results = {}
    sync = torch.cuda.synchronize
    for compiled in (False, True):
        name = "labvla_4b_compile" if compiled else "labvla_4b_eager"
        print(f"{name}: building ...", flush=True)
        torch.cuda.reset_peak_memory_stats()
        policy = full_size_policy(compiled)
        params = n_params(policy)
        batch1 = gpu_batch(1)
        # Compilation happens in the warm-up calls (max-autotune), never in the timed ones.
        warm = args.warmup + (3 if compiled else 0)
        torch.cuda.reset_peak_memory_stats()
        lat = round_robin({name: chunk_fn(policy, batch1, bf16=True)}, warm, args.repeats, sync)[name]
        peak_infer = torch.cuda.max_memory_allocated()
        entry = {
            "params": params,
            "chunk_latency_ms": {"median": round(statistics.median(lat) * 1e3, 2), "p90": round(percentile(lat, 0.9) * 1e3, 2),
                                 "min": round(min(lat) * 1e3, 2), "n": len(lat)},
            "peak_memory_inference_gib": round(peak_infer / 2**30, 2),
        }
        if not compiled:
            # `compile=True` compiles the expert's denoise step, which only inference runs: train once.
            entry |= gpu_training(policy, gpu_batch(args.train_batch), args, sync)[0]
        results[name] = entry
        del policy
        torch.cuda.empty_cache()
    # Issue 18's row: KI (the posttraining stage: FAST loss into the VLM, FM loss into the expert only), bf16.
    name = "labvla_4b_ki"
    print(f"{name}: building ...", flush=True)
    policy = full_size_policy(False, mode="ki")
    fit_synthetic_fast(policy)
    batch = gpu_batch(args.train_batch)
    flops = step_flops(policy, batch, bf16=True)
    train, step_s = gpu_training(policy, batch, args, sync)
    peak = peak_tflops(torch.cuda.get_device_name(0), args.peak_tflops)
    util = mfu(flops, step_s, peak)
    results[name] = {"params": n_params(policy), **train,
                     "flops_per_sample": flops // args.train_batch, "achieved_tflops": round(flops / step_s / 1e12, 1),
                     "peak_bf16_tflops": peak, "mfu": None if util is None else round(util, 3)}
    del policy
    torch.cuda.empty_cache()
    ki = results[name]
    eager, comp = results["labvla_4b_eager"], results["labvla_4b_compile"]
    return {
        "settings": {"batch_latency": 1, "batch_train": args.train_batch, "image_size": 224, "cameras": len(CAMERAS),
                     "chunk": CHUNK, "euler_steps": EULER_STEPS, "dtype": "bfloat16", "warmup": args.warmup,
                     "repeats": args.repeats, "train_repeats": args.train_repeats},
        "policies": results,
        "ratios": {"compile/eager_chunk_latency": round(comp["chunk_latency_ms"]["median"] / eager["chunk_latency_ms"]["median"], 3)},
        "targets": {"chunk_latency_le_40ms_compiled": {"ms": comp["chunk_latency_ms"]["median"],
                                                       "met": comp["chunk_latency_ms"]["median"] <= 40.0},
                    "ki_samples_s_ge_15": {"samples_s": ki["samples_s"], "met": ki["samples_s"] >= KI_TARGET["samples_s"]},
                    "ki_mfu_ge_0.40": {"mfu": ki["mfu"], "met": ki["mfu"] is not None and ki["mfu"] >= KI_TARGET["mfu"]}},
        "notes": [
            "Qwen3-VL-4B architecture with random weights (random_init_backbone=True), tiny byte-level tokenizer, "
            "bf16 VLM weights, fp32 expert weights, everything under bf16 autocast (LeRobot's mixed precision); "
            "18x1024 DiT expert; mode finetune (full model trainable, AdamW, no gradient checkpointing)",
            "compile=True compiles only the expert's denoise step (parallelize.py); training is measured eager",
            "labvla_4b_ki: mode ki, FAST tokenizer fitted on synthetic smooth chunks; FLOPs per step counted by "
            "torch's FlopCounterMode on one forward+backward (matmul/conv/SDPA, 2 per multiply-add; no elementwise, "
            "no optimizer); MFU = FLOPs per step / median step time / dense bf16 peak of the GPU",
            "reference: GR00T N1.7 reports 160 ms eager / 72 ms compiled per chunk on H100",
        ],
    }


def print_gpu_table(report: dict) -> None:
    print(f"\nGPU ({report['machine'].get('gpu', '?')}), bf16, 2 cameras 224x224, chunk {CHUNK}, {EULER_STEPS} Euler steps")
    for name, r in report["policies"].items():
        if "chunk_latency_ms" not in r:  # the KI training row
            util = "?" if r["mfu"] is None else f"{r['mfu']:.1%}"
            print(f"{name:<18} {r['params'] / 1e9:.3f}B  {r['samples_s']} samples/s (batch {report['settings']['batch_train']}), "
                  f"train peak {r['peak_memory_train_gib']} GiB, {r['achieved_tflops']} TFLOP/s, MFU {util} "
                  f"(peak {r['peak_bf16_tflops']} TFLOP/s bf16)")
            continue
        lat = r["chunk_latency_ms"]
        train = f", {r['samples_s']} samples/s (batch {report['settings']['batch_train']}), train peak {r['peak_memory_train_gib']} GiB" if "samples_s" in r else ""
        print(f"{name:<18} {r['params'] / 1e9:.3f}B  chunk {lat['median']:.1f} ms (p90 {lat['p90']:.1f}), "
              f"inference peak {r['peak_memory_inference_gib']} GiB{train}")
    t = report["targets"]["chunk_latency_le_40ms_compiled"]
    print(f"target compiled chunk latency <= 40 ms: {t['ms']:.1f} ms -> {'MET' if t['met'] else 'NOT MET'}")
    for key, label in (("ki_samples_s_ge_15", "KI >= 15 samples/s"), ("ki_mfu_ge_0.40", "KI MFU >= 40%")):
        t = report["targets"][key]
        print(f"target {label}: {t.get('samples_s', t.get('mfu'))} -> {'MET' if t['met'] else 'NOT MET'}")


# --------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu (default): the tiny policies side by side; cuda: the 4B labvla configuration, eager and compiled")
    ap.add_argument("--quick", action="store_true", help="few repeats (under a minute on CPU): a smoke run, rough numbers")
    ap.add_argument("--repeats", type=int, default=None, help="timed latency calls per policy (default 30, quick 5)")
    ap.add_argument("--train-repeats", type=int, default=None, help="timed training steps per policy (default 10, quick 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls per policy first (default 3, quick 1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for the CPU run (default 1: on a machine whose cores other jobs also use, "
                    "2+ OpenMP threads wait on each other and make small models 10-20x slower at random)")
    ap.add_argument("--config", choices=("both", *CONFIGS), default="both",
                    help="CPU: equal_total (~9M each, >90%% expert), real_split (the real models' ~94%% VLM share, "
                    "equal VLM depth), or both (default)")
    ap.add_argument("--train-batch", type=int, default=8, help="training batch size (default 8)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="GPU dense bf16 peak in TFLOP/s for MFU (default: from the device name, "
                    + ", ".join(f"{k} {v:g}" for k, v in PEAK_BF16_TFLOPS.items()) + ")")
    ap.add_argument("--image-size", type=int, default=224, help="camera images HxW for the CPU run, same for all policies (default 224)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default benchmarks/results/policy_speed_<device>.json; --quick: benchmarks/results/quick/...)")
    args = ap.parse_args(argv)
    quick = args.quick
    args.configs = list(CONFIGS) if args.config == "both" else [args.config]
    args.repeats = args.repeats or (5 if quick else 30)
    args.train_repeats = args.train_repeats or (3 if quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    # A --quick smoke run never replaces the committed full-run results.
    name = f"policy_speed_{'gpu' if args.device == 'cuda' else 'cpu'}.json"
    args.out = args.out or (RESULTS / "quick" / name if quick else RESULTS / name)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False; run on a GPU machine or use --device cpu",
              file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    header = {"benchmark": "policy_speed", "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "git_commit": git_commit(), "machine": machine(), "quick": args.quick}
    report = header | (run_gpu(args) if args.device == "cuda" else run_cpu(args))
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    (print_gpu_table if args.device == "cuda" else print_cpu_table)(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
