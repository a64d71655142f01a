"""Pre/post-processing for labvla: LeRobot's default steps plus two registered steps.

Pre:  rename -> batch -> `labvla_check_inputs` -> relative actions -> normalize -> `labvla_prompt` -> device
Post: unnormalize -> absolute actions -> cpu

Relative/absolute are LeRobot's own steps (enabled by `--policy.use_relative_actions`), so a served
chunk is absolute. STATE/ACTION are normalized per dim as the official LabVLA posttrain does:
mean/std, except `quantile_dims` (grippers) scaled by q01/q99 to [-1, 1]. LeRobot's normalizer has one
mode per feature, so those dims get the mean/std that make its MEAN_STD formula equal the quantile
one: `mean = (q01 + q99) / 2`, `std = (q99 - q01) / 2`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from lerobot.configs import PipelineFeatureType, PolicyFeature
from lerobot.lerobot_types import EnvTransition, TransitionKey
from lerobot.processor import (
    PolicyAction,
    AbsoluteActionsProcessorStep,
    PolicyProcessorPipeline,
    ProcessorStep,
    ProcessorStepRegistry,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
    RelativeActionsProcessorStep,
)
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from lerobot_labvla.data_process.merge import STATE_DIM_PAD
from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.normalization_checks import check_stats

PROMPT_KEY = "prompt"
PROMPT_WITH_STATE_KEY = "prompt_with_state"


class _LabVLAStep(ProcessorStep):
    """Steps whose dataclass fields are their whole saved config and that keep features as they are."""

    def get_config(self) -> dict[str, Any]:
        return asdict(self)

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        return features


@ProcessorStepRegistry.register(name="labvla_check_inputs")
@dataclass
class LabVLACheckInputsStep(_LabVLAStep):
    """Reject raw input the policy cannot use, naming what is wrong: image shape, state dim, NaN.

    Deliberately holds no camera list or exact state dim: those belong to the policy config,
    which fine-tuning on another embodiment changes while this saved step would not (the policy
    checks them against its config with the same kind of message).
    """

    max_state_dim: int = 32

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        obs = transition.get(TransitionKey.OBSERVATION) or {}
        for key, img in obs.items():
            if key.startswith(OBS_IMAGES) and torch.is_tensor(img) and (img.ndim != 4 or img.shape[1] != 3):
                raise LabVLAError(f"{key} must be (B, 3, H, W) float in [0, 1], got shape {tuple(img.shape)}")
        state = obs.get(OBS_STATE)
        if state is None:
            raise LabVLAError(f"observation is missing {OBS_STATE!r}")
        state = torch.as_tensor(state)
        if state.shape[-1] > self.max_state_dim:
            raise LabVLAError(
                f"{OBS_STATE} has dim {state.shape[-1]} > --policy.max_state_dim={self.max_state_dim}; raise it"
            )
        if not torch.isfinite(state).all():
            bad = sorted({int(i) for i in torch.nonzero(~torch.isfinite(state))[:, -1]})
            raise LabVLAError(f"{OBS_STATE} contains NaN/Inf in dim(s) {bad}")
        return transition


@ProcessorStepRegistry.register(name="labvla_prompt")
@dataclass
class LabVLAPromptStep(_LabVLAStep):
    """The official LabVLA prompts, written to complementary data (the policy tokenizes them).

    `prompt` (posttrain: ki / finetune): the raw instruction. `prompt_with_state` (fast_pretrain):
    the normalized state as bins, `<state>b b ...</state>\n{task}`, `b = floor((s + 1) * bins / 2)`
    clamped to [0, bins - 1]. Both are written so that a checkpoint's saved pipeline serves every
    mode the policy is switched to (`--policy.path=... --policy.mode=ki`). Runs after the normalizer.
    """

    state_bins: int = 256
    task_key: str = "task"

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        transition = transition.copy()
        comp = dict(transition.get(TransitionKey.COMPLEMENTARY_DATA) or {})
        state = transition[TransitionKey.OBSERVATION][OBS_STATE]
        tasks = comp.get(self.task_key)
        if tasks is None:
            raise LabVLAError(f"no {self.task_key!r} (instruction text) in the batch; pass the task string")
        bsz = state.shape[0]
        tasks = [tasks] * bsz if isinstance(tasks, str) else list(tasks)
        if len(tasks) != bsz:
            raise LabVLAError(f"{len(tasks)} task strings for a batch of {bsz}")
        values = state.detach().float().cpu().numpy()
        bins = np.clip(np.floor((values + 1) * self.state_bins / 2), 0, self.state_bins - 1).astype(int)
        # A mixed-robot dataset (`labvla-data merge --pad`): each sample's text holds its own robot's dims only.
        dim_pad = comp.get(STATE_DIM_PAD)
        real = np.ones_like(bins, dtype=bool) if dim_pad is None else ~torch.as_tensor(dim_pad).bool().reshape(bsz, -1).cpu().numpy()
        comp[PROMPT_KEY] = [str(task) for task in tasks]
        comp[PROMPT_WITH_STATE_KEY] = [
            f"<state>{' '.join(map(str, row[keep]))}</state>\n{task}" for task, row, keep in zip(tasks, bins, real, strict=True)
        ]
        transition[TransitionKey.COMPLEMENTARY_DATA] = comp
        return transition


def make_labvla_pre_post_processors(
    config: LabVLAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """LeRobot's default steps around labvla's input check and prompt builder."""
    if dataset_stats is not None:
        check_stats(config, dataset_stats)
        dataset_stats = quantile_dims_as_mean_std(dataset_stats, config.resolved_quantile_dims)
    relative_step = RelativeActionsProcessorStep(
        enabled=config.use_relative_actions,
        exclude_joints=list(config.relative_exclude_joints),
        action_names=config.action_feature_names,
    )
    steps = make_default_policy_processor_steps(config, dataset_stats)
    input_steps: list[ProcessorStep] = [
        steps.rename_observations,
        steps.add_batch_dim,
        LabVLACheckInputsStep(max_state_dim=config.max_state_dim),
        relative_step,
        steps.normalize,
        LabVLAPromptStep(state_bins=config.state_bins),
        steps.to_device,
    ]
    output_steps: list[ProcessorStep] = [
        steps.unnormalize,
        AbsoluteActionsProcessorStep(enabled=config.use_relative_actions, relative_step=relative_step),
        steps.to_cpu,
    ]
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=output_steps)


def adopt_quantile_dims(config: LabVLAConfig, dataset_stats: dict | None) -> None:
    """Rewrite `dataset_stats`' state/action entries IN PLACE so their `quantile_dims` carry q01/q99 scaling.

    Why in place: `lerobot-train --policy.path=CKPT` builds the normalizers from the saved pipeline with
    `overrides={"normalizer_processor": {"stats": dataset.meta.stats}}`, i.e. the raw dataset stats, which
    would normalize the gripper by its mean/std. The official fine-tuning normalizes the new dataset's
    gripper by its q01/q99; `make_policy` hands the policy that same dict as `dataset_stats` before the
    processors are built, so fixing it here reaches the override. Idempotent (reads only q01/q99).
    """
    if not dataset_stats:
        return
    dataset_stats.update(quantile_dims_as_mean_std(dataset_stats, config.resolved_quantile_dims))


def quantile_dims_as_mean_std(stats: dict, dims: list[int], keys: tuple[str, ...] = (OBS_STATE, ACTION)) -> dict:
    """Stats whose `mean`/`std` on `dims` make LeRobot's MEAN_STD formula the q01/q99 one (see module doc)."""
    if not dims:
        return stats
    out = dict(stats)
    for key in keys:
        entry = stats.get(key)
        if not entry or "q01" not in entry or "q99" not in entry:
            continue
        mean = np.array(entry["mean"], dtype=np.float64, copy=True)
        std = np.array(entry["std"], dtype=np.float64, copy=True)
        q01, q99 = np.asarray(entry["q01"], dtype=np.float64), np.asarray(entry["q99"], dtype=np.float64)
        idx = [d for d in dims if d < mean.shape[-1]]
        mean[..., idx] = (q01[..., idx] + q99[..., idx]) / 2
        std[..., idx] = (q99[..., idx] - q01[..., idx]) / 2
        out[key] = {**entry, "mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    return out
