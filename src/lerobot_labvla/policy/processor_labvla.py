"""Pre/post-processing for labvla: LeRobot's default steps plus two registered steps.

Pre:  rename -> batch -> `labvla_check_inputs` -> normalize -> `labvla_prompt` -> device
Post: unnormalize -> cpu
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
    PolicyProcessorPipeline,
    ProcessorStep,
    ProcessorStepRegistry,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)
from lerobot.utils.constants import OBS_IMAGES, OBS_STATE

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

PROMPT_KEY = "prompt"


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
    """Instruction + state discretized into `state_bins` bins as text (pi05's prompt format).

    Runs after the normalizer, so the state is in [-1, 1]. Writes the text to complementary data
    `prompt`; the policy tokenizes it with its backbone's tokenizer.
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
        edges = np.linspace(-1, 1, self.state_bins + 1)[:-1]
        bins = np.digitize(state.detach().float().cpu().numpy(), bins=edges) - 1
        comp[PROMPT_KEY] = [
            f"Task: {task.strip().replace('_', ' ').replace(chr(10), ' ')}, State: {' '.join(map(str, row))};\nAction: "
            for task, row in zip(tasks, bins, strict=True)
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
    from lerobot_labvla.policy.modeling_labvla import check_stats

    if dataset_stats is not None:
        check_stats(config, dataset_stats)
    steps = make_default_policy_processor_steps(config, dataset_stats)
    input_steps: list[ProcessorStep] = [
        steps.rename_observations,
        steps.add_batch_dim,
        LabVLACheckInputsStep(max_state_dim=config.max_state_dim),
        steps.normalize,
        LabVLAPromptStep(state_bins=config.state_bins),
        steps.to_device,
    ]
    output_steps: list[ProcessorStep] = [steps.unnormalize, steps.to_cpu]
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=output_steps)
