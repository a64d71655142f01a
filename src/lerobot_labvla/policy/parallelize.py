"""Runtime options applied to a built `LabVLAPolicy` from outside the model (torchtitan's
`parallelize.py` pattern): freezing, activation checkpointing, `torch.compile`, the FSDP shard
units, and the optimizer's parameter groups (fused AdamW where torch has it).

`modeling_labvla.py` stays plain PyTorch; anything distributed or compiled is wired here.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)


# FSDP shard units, LingBot-VLA's grouping (Robbyant/lingbot-vla `distributed/torch_parallelize.py`):
# every VLM decoder layer, every vision block and every expert layer is its own unit, and so are the
# vision patch embedding and the patch mergers; the rest (embeddings, tied LM head, norms, projections)
# stays in the root unit. LingBot also shards `embed_tokens` and `lm_head` apart, which FSDP1 cannot do
# when they are tied (Qwen3-VL-4B): tied parameters must live in one unit.
FSDP_UNITS = (
    "Qwen3VLTextDecoderLayer",
    "Qwen3VLVisionBlock",
    "Qwen3VLVisionPatchEmbed",
    "Qwen3VLVisionPatchMerger",
    "DiTBlock",
    "MoTLayer",
)


def fsdp_shard_units(policy) -> list[str]:
    """The `FSDP_UNITS` class names present in `policy` (accelerate raises on a listed class it cannot find)."""
    present = {type(m).__name__ for m in policy.modules()}
    return [name for name in FSDP_UNITS if name in present]


def apply_runtime_options(policy) -> None:
    cfg = policy.config
    # accelerate's TRANSFORMER_BASED_WRAP (configs/accelerate/fsdp.yaml) wraps the classes named here.
    policy._no_split_modules = fsdp_shard_units(policy)
    if cfg.mode == "finetune" and cfg.freeze_backbone:
        policy.backbone.requires_grad_(False)
    if cfg.mode == "finetune" and getattr(cfg, "freeze_vision_encoder", False):
        policy.backbone.vlm.model.visual.requires_grad_(False)  # the official LabUtopia fine-tuning recipe
    if cfg.gradient_checkpointing:
        policy.backbone.vlm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for block in policy.expert.blocks:
            block.forward = functools.partial(_checkpointed, block.forward)
    if cfg.compile:
        # The denoise step runs num_inference_steps times per chunk on fixed shapes: the part worth
        # compiling. The VLM prefix has a varying prompt length and runs once per chunk.
        policy._denoise = torch.compile(policy._denoise_step, mode="max-autotune-no-cudagraphs", dynamic=False)
        logger.info("torch.compile enabled for the expert denoise step")


def _checkpointed(forward, *args, **kwargs):
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def optim_param_groups(policy) -> list[dict]:
    """AdamW parameter groups of the official recipe: the VLM and the rest (expert, FAST head,
    projections) at their own learning rates, and no weight decay on biases, norms and other 1-D
    parameters. LeRobot's cosine scheduler scales each group's own rate."""
    cfg = policy.config
    lr_vlm = getattr(cfg, "optimizer_lr_vlm", None) or cfg.optimizer_lr
    lr_expert = getattr(cfg, "optimizer_lr_expert", None) or cfg.optimizer_lr
    vlm = {id(p) for p in policy.backbone.vlm.parameters()}
    groups: dict[tuple[str, bool], list] = {}
    for name, p in policy.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and not name.endswith(".bias") and "norm" not in name.lower()
        groups.setdefault(("vlm" if id(p) in vlm else "expert", decay), []).append(p)
    fused = fused_adamw_available(policy)
    return [
        {
            "params": params,
            "lr": lr_vlm if part == "vlm" else lr_expert,
            "weight_decay": cfg.optimizer_weight_decay if decay else 0.0,
            "name": f"{part}{'' if decay else '_no_decay'}",
            # Per-group optimizer option (LeRobot's AdamWConfig has no `fused` field): torch's AdamW reads it
            # from each group at every step. One kernel over the group's tensors instead of a Python loop.
            **({"fused": True} if fused else {}),
        }
        for (part, decay), params in sorted(groups.items())
    ]


def fused_adamw_available(policy) -> bool:
    """torch's fused AdamW runs on CUDA and (torch >= 2.4) on CPU, for floating-point parameters."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    devices = {p.device.type for p in policy.parameters()}
    return bool(devices) and devices <= set(_get_fused_kernels_supported_devices()) and all(
        p.is_floating_point() for p in policy.parameters()
    )


def compile_blocks(policy, **compile_kwargs) -> int:
    """`torch.compile` each expert block and VLM decoder layer in place (torchtitan's per-block compile:
    one graph per block type, reused by every layer), for training and inference. Returns how many."""
    blocks = [*getattr(policy.expert, "blocks", [])]
    blocks += [m for m in policy.backbone.vlm.modules() if type(m).__name__ == "Qwen3VLTextDecoderLayer"]
    for block in blocks:
        block.compile(**({"dynamic": False} | compile_kwargs))
    return len(blocks)
