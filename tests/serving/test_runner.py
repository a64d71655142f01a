"""`PolicyRunner.infer` on its own: what the postprocessor sees for a batch of requests."""

import numpy as np
import torch
from lerobot.processor import DataProcessorPipeline
from lerobot.processor.converters import (
    batch_to_transition,
    policy_action_to_transition,
    transition_to_batch,
    transition_to_policy_action,
)
from lerobot.processor.relative_action_processor import AbsoluteActionsProcessorStep, RelativeActionsProcessorStep

from lerobot_labvla.serving.observations import Observation, ObservationSpec
from lerobot_labvla.serving.runner import PolicyRunner

SPEC = ObservationSpec(cameras={"observation.images.front": (3, 8, 8), "observation.images.wrist": (3, 8, 8)},
                       vectors={"observation.state": (4,)}, needs_task=True, optional_cameras=True)
T = 5


class ZeroDeltaPolicy:
    """Predicts the delta t/10 (+100 if the wrist camera is absent): the absolute chunk is the request's own state plus that."""

    def predict_action_chunk(self, batch: dict) -> torch.Tensor:
        delta = torch.zeros(batch["observation.state"].shape[0], T, 4) + torch.arange(T)[None, :, None] / 10
        return delta if "observation.images.wrist" in batch else delta + 100


def runner_with_relative_actions() -> PolicyRunner:
    relative = RelativeActionsProcessorStep(enabled=True)
    runner = PolicyRunner.__new__(PolicyRunner)  # the pipeline LeRobot builds, without a checkpoint
    runner.spec, runner.output_chunk_size, runner.policy = SPEC, None, ZeroDeltaPolicy()
    runner.preprocessor = DataProcessorPipeline([relative], to_transition=batch_to_transition, to_output=transition_to_batch)
    runner.postprocessor = DataProcessorPipeline(
        [AbsoluteActionsProcessorStep(enabled=True, relative_step=relative)],
        to_transition=policy_action_to_transition, to_output=transition_to_policy_action,
    )
    return runner


def test_each_request_in_a_batch_gets_its_own_state_added_back():
    # The official server returns absolute actions (delta undone against the request's state); a
    # batch of requests must not mix their states up.
    states = [np.array([1, 2, 3, 4], np.float32), np.array([-5, 0, 5, 10], np.float32), np.zeros(4, np.float32)]
    both = {"observation.images.front": np.zeros((8, 8, 3), np.uint8), "observation.images.wrist": np.zeros((8, 8, 3), np.uint8)}
    obs = [Observation(dict(both), {"observation.state": s}, "go") for s in states]
    actions = runner_with_relative_actions().infer(obs)
    assert actions.shape == (3, T, 4)
    for row, state in zip(actions, states, strict=True):
        np.testing.assert_allclose(row, state[None, :] + np.arange(T)[:, None] / 10, atol=1e-6)


def test_requests_with_different_cameras_run_apart_and_come_back_in_order():
    # An absent camera is a masked slot for the whole batch, so requests that sent different cameras
    # must not share a model call.
    states = [np.full(4, float(i), np.float32) for i in range(4)]
    front = {"observation.images.front": np.zeros((8, 8, 3), np.uint8)}
    both = {**front, "observation.images.wrist": np.zeros((8, 8, 3), np.uint8)}
    cams = [both, front, both, front]
    obs = [Observation(dict(c), {"observation.state": s}, "go") for c, s in zip(cams, states, strict=True)]
    actions = runner_with_relative_actions().infer(obs)
    for i, (row, state) in enumerate(zip(actions, states, strict=True)):
        expected = state[None, :] + np.arange(T)[:, None] / 10 + (100 if i % 2 else 0)
        np.testing.assert_allclose(row, expected, atol=1e-5)
