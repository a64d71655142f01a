"""Loading a LabVLA checkpoint without building the model twice.

LeRobot's `PreTrainedPolicy.from_pretrained` builds the policy with random weights (a full 4B
Qwen3-VL initialised on the CPU) and then copies `model.safetensors` into it: two copies of every
weight at the peak and minutes of random init thrown away. Here the policy is built under
accelerate's `init_empty_weights` (parameters on the meta device; buffers such as the rotary
`inv_freq` stay real because nothing in the checkpoint recomputes them), the safetensors file is
read once and its tensors become the parameters with `load_state_dict(assign=True)`, and
transformers' `tie_weights` re-ties Qwen's shared embedding / LM head. The only tensors that are
ever allocated are the checkpoint's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from lerobot_labvla.errors import LabVLAError

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
VLM_PREFIX = "backbone.vlm."


def load_policy(cls, path: str, *, config, hub: dict, strict: bool = False, **kwargs):
    """`cls(config, **kwargs)` on the meta device, then the weights of `path` (dir or Hub id) assigned in.

    Returns the policy on `config.device` in eval mode, as LeRobot's loader does.
    """
    policy = build_empty(cls, config, **kwargs)
    load_weights(policy, model_file(path, hub), device=_safetensors_device(config.device), strict=strict)
    policy.to(config.device)
    policy.eval()
    return policy


def model_file(path: str, hub: dict) -> Path:
    """`path/model.safetensors`, or the Hub file (with LeRobot's download options)."""
    if os.path.isdir(path):
        file = Path(path) / MODEL_FILE
        if not file.exists():
            raise LabVLAError(f"{path} has no {MODEL_FILE}; is it a LeRobot checkpoint's pretrained_model dir?")
        return file
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=path, filename=MODEL_FILE, **hub))


def load_weights(policy: nn.Module, file: Path, *, device: str = "cpu", strict: bool = False) -> tuple[list[str], list[str]]:
    """Assign the tensors of a safetensors `file` as `policy`'s parameters; returns `(initialized, unexpected)`."""
    from safetensors.torch import load_file

    return assign_state_dict(policy, load_file(str(file), device=device), device=device, strict=strict, source=str(file))


def build_empty(cls, config, **kwargs):
    """`cls(config, **kwargs)` with every parameter on the meta device (buffers real), for `assign_state_dict`."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return cls(config, **kwargs)


def assign_state_dict(
    policy: nn.Module, state: dict, *, device: str = "cpu", strict: bool = False, source: str = "the state dict"
) -> tuple[list[str], list[str]]:
    """Make `state`'s tensors `policy`'s parameters (no copy into a second set); returns `(initialized, unexpected)`.

    Each tensor is cast to the dtype the config built that parameter in (a bf16 VLM stays bf16 even
    from a float32 file), as `load_state_dict` without `assign` would. Weights `state` lacks (e.g. the
    state token of `ki` when starting from a `fast_pretrain` checkpoint) get their module's own init.
    """
    expected = policy.state_dict(keep_vars=True)
    for key, tensor in state.items():
        want = expected.get(key)
        if want is None:
            continue
        if tuple(tensor.shape) != tuple(want.shape):
            raise LabVLAError(
                f"{source}: {key} has shape {tuple(tensor.shape)} but the config builds {tuple(want.shape)}; "
                "the checkpoint's config.json does not match its weights"
            )
        if tensor.dtype != want.dtype and tensor.is_floating_point():
            state[key] = tensor.to(want.dtype)
    result = policy.load_state_dict(state, strict=False, assign=True)
    _tie(policy, list(result.missing_keys))
    unexpected = list(result.unexpected_keys)
    initialized = _materialize(policy, device)
    if strict and (initialized or unexpected):
        raise LabVLAError(f"{source}: missing keys {initialized[:8]}, unexpected keys {unexpected[:8]} (strict load)")
    if initialized:
        logger.warning("not in %s, initialized from scratch: %s", source, initialized)
    if unexpected:
        logger.warning("in %s but not in the policy, ignored: %s", source, unexpected)
    return initialized, unexpected


def _tie(policy: nn.Module, missing: list[str]) -> None:
    """Re-tie the VLM's shared weights (transformers' symmetric tying: whichever of the pair the file has)."""
    vlm = getattr(getattr(policy, "backbone", None), "vlm", None)
    if vlm is not None and hasattr(vlm, "tie_weights"):
        vlm.tie_weights(missing_keys={k[len(VLM_PREFIX) :] for k in missing if k.startswith(VLM_PREFIX)})


def _materialize(policy: nn.Module, device: str) -> list[str]:
    """Allocate and initialise what is still on the meta device; returns the names it initialised."""
    vlm = getattr(getattr(policy, "backbone", None), "vlm", None)
    vlm_modules = {id(m) for m in vlm.modules()} if vlm is not None else set()
    names: list[str] = []
    for module_name, module in policy.named_modules():
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        meta = [f"{module_name}.{n}" if module_name else n for n, t in own if t is not None and t.is_meta]
        if not meta:
            continue
        module.to_empty(device=device, recurse=False)
        with torch.no_grad():
            if id(module) in vlm_modules:
                vlm._init_weights(module)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                raise LabVLAError(f"cannot initialise {meta} (not in the checkpoint, and {type(module).__name__} has no init)")
        names += meta
    return names


def _safetensors_device(device: str | None) -> str:
    from lerobot.utils.device_utils import resolve_safetensors_device

    return resolve_safetensors_device(device or "cpu")
