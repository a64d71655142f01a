"""Runtime options applied to a built `LabVLAPolicy` from outside the model (torchtitan's
`parallelize.py` pattern): freezing, activation checkpointing and `torch.compile`.

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
