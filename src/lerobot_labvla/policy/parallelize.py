"""Runtime options applied to a built `LabVLAPolicy` from outside the model (torchtitan's
`parallelize.py` pattern): freezing, activation checkpointing, `torch.compile`, and the
optimizer's parameter groups.

`modeling_labvla.py` stays plain PyTorch; anything distributed or compiled is wired here.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)


def apply_runtime_options(policy) -> None:
    cfg = policy.config
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
    return [
        {
            "params": params,
            "lr": lr_vlm if part == "vlm" else lr_expert,
            "weight_decay": cfg.optimizer_weight_decay if decay else 0.0,
            "name": f"{part}{'' if decay else '_no_decay'}",
        }
        for (part, decay), params in sorted(groups.items())
    ]
