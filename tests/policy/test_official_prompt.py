"""The official pretrain prompt `<state>b b ...</state>\\n{task}` bins the state normalized by q01/q99 on EVERY dim
(zjunlp/LabVLA `transforms/core.py` hydrate_all forces "q01_q99_strict" whenever DiscretizeStateTransformFn is in the
chain; `transforms/state_discretize.py`: clamp to [-1, 1], `floor((s + 1) * 128)`, clamp to [0, 255]). Posttrain keeps
mean/std with q01/q99 on the gripper only."""

from __future__ import annotations

import re

import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.lerobot_types import TransitionKey

from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.processor_labvla import PROMPT_WITH_STATE_KEY, make_labvla_pre_post_processors

STATE_DIM = 6


def stats(g: torch.Generator) -> dict:
    out = {}
    for key, dim in (("observation.state", STATE_DIM), ("action", 3)):
        q01 = torch.randn(dim, generator=g) - 1.0
        q99 = q01 + 0.5 + torch.rand(dim, generator=g)
        # mean/std deliberately far from the quantile scaling, so binning the wrong one shows
        out[key] = {"mean": (q01 + q99) / 2 + 0.3, "std": (q99 - q01) * 0.2, "q01": q01, "q99": q99}
    return out


def bins_in_prompt(mode: str, state: torch.Tensor, st: dict) -> list[list[int]]:
    config = LabVLAConfig(backbone="tiny", device="cpu", mode=mode, action_feature_names=["joint_0", "joint_1", "gripper"])
    config.input_features = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,))}
    config.output_features = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(3,))}
    pre, _ = make_labvla_pre_post_processors(config, dataset_stats=st)
    out = pre._forward(pre.to_transition({"observation.state": state, "task": ["pour"] * len(state)}))
    prompts = out[TransitionKey.COMPLEMENTARY_DATA][PROMPT_WITH_STATE_KEY]
    return [[int(b) for b in re.fullmatch(r"<state>([\d ]+)</state>\npour", p).group(1).split()] for p in prompts]


def test_fast_pretrain_bins_the_state_normalized_by_q01_q99_on_every_dim():
    g = torch.Generator().manual_seed(0)
    st = stats(g)
    q01, q99 = st["observation.state"]["q01"], st["observation.state"]["q99"]
    # spread over and beyond [q01, q99] so clamping and every region of the bins are used
    state = q01 + (q99 - q01) * (torch.rand(16, STATE_DIM, generator=g) * 1.4 - 0.2)
    official = (2 * (state - q01) / (q99 - q01) - 1).clamp(-1, 1)
    want = ((official + 1) * 128).floor().clamp(0, 255).long().tolist()
    got = bins_in_prompt("fast_pretrain", state, st)
    near_edge = ((official + 1) * 128 - ((official + 1) * 128).round()).abs() < 1e-4  # float noise at a bin edge
    for row_got, row_want, edge in zip(got, want, near_edge.tolist(), strict=True):
        assert all(a == b or e for a, b, e in zip(row_got, row_want, edge, strict=True)), (row_got, row_want)
    assert {0, 255} <= {b for row in got for b in row}  # out-of-range values clamp to the end bins

    # posttrain modes write the same prompt key from their own normalization (mean/std + gripper quantiles)
    assert bins_in_prompt("finetune", state, st) != got
