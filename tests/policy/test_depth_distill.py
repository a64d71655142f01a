"""`--policy.depth_distill=true`: query tokens in the backbone's sequence distilled to depth features."""

from __future__ import annotations

import logging

import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.constants import ACTION

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.depth_distill import PooledDepthEncoder, ScriptedDepthEncoder
from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy
from lerobot_labvla.synthetic import DEPTH_KEY, make_depth_dataset



@pytest.fixture(scope="module")
def depth_ds(tmp_path_factory):
    return make_depth_dataset(tmp_path_factory.mktemp("depth") / "ds", n_episodes=2, frames=12)


def build(ds, **overrides):
    kw = dict(backbone="tiny", device="cpu", image_size=64, expert_layers=2, expert_width=64, expert_heads=4,
              fast_vocab_size=512, depth_distill=True, depth_grid=2)
    kw.update(overrides)
    cfg = LabVLAConfig(**kw)
    return make_policy(cfg, ds_meta=ds.meta), make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)[0]


def raw_batch(ds, size: int = 4) -> dict:
    data = LeRobotDataset(ds.repo_id, root=ds.root, delta_timestamps={ACTION: [i / ds.fps for i in range(10)]})
    return next(iter(torch.utils.data.DataLoader(data, batch_size=size, shuffle=True, generator=torch.Generator().manual_seed(0))))


def batch_of(ds, pre, size: int = 4) -> dict:
    return pre(raw_batch(ds, size))


def test_without_a_depth_stream_the_option_is_off_and_says_so(ds7, caplog):
    with caplog.at_level(logging.WARNING):
        policy, pre = build(ds7, mode="ki", expert_layers=2)
    assert policy.depth is None
    assert "no depth stream" in caplog.text
    batch = batch_of(ds7, pre)
    torch.manual_seed(0)
    loss, metrics = policy.forward(batch)
    assert "depth_loss" not in metrics
    plain, _ = build(ds7, mode="ki", depth_distill=False)
    plain.load_state_dict(policy.state_dict())
    torch.manual_seed(0)
    assert torch.equal(plain.forward(batch)[0], loss)


def test_depth_loss_trains_the_queries_and_backbone_and_leaves_fast_and_expert_inputs_alone(depth_ds):
    policy, pre = build(depth_ds, mode="ki")
    policy.train()
    batch = batch_of(depth_ds, pre)
    torch.manual_seed(0)
    loss, metrics = policy.forward(batch)
    assert metrics["depth_loss"] > 0
    # Queries sit after every other token: FAST and FM losses are those of the same batch without depth.
    torch.manual_seed(0)
    _, without = policy.forward({k: v for k, v in batch.items() if k != DEPTH_KEY})
    assert "depth_loss" not in without
    assert without["fast_loss"] == metrics["fast_loss"] and without["fm_loss"] == metrics["fm_loss"]

    policy.config.fm_loss_weight = policy.config.fast_loss_weight = 0.0
    policy.zero_grad()
    policy.forward(batch)[0].backward()
    assert torch.count_nonzero(policy.depth.queries.grad) > 0
    assert torch.count_nonzero(policy.depth.proj[0].weight.grad) > 0
    visual = [p.grad for n, p in policy.backbone.named_parameters() if "visual" in n]
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in visual), "depth loss did not reach the vision tower"
    # Inference needs no depth: a robot or server without a depth camera gets its chunk.
    policy.eval()
    observation = {k: v for k, v in raw_batch(depth_ds, 2).items() if k not in (DEPTH_KEY, ACTION)}
    assert policy.predict_action_chunk(pre(observation)).shape == (2, 10, 7)


def test_each_query_output_is_read_at_its_own_position(depth_ds):
    policy, pre = build(depth_ds, mode="finetune")
    batch = batch_of(depth_ds, pre, size=2)
    images, _, prompts = policy._inputs(batch)
    inputs = policy._build_inputs(images, prompts)

    def outputs():
        embeds, mask = policy.depth.append_queries(None, None, 2)
        with torch.no_grad():
            return policy.depth.split(policy.backbone(inputs, fast_embeds=embeds, fast_mask=mask).fast_hidden, 0)[1]

    before = outputs()
    with torch.no_grad():
        policy.depth.queries[1] += 1.0
    after = outputs()
    assert torch.equal(after[:, 0], before[:, 0])  # causal: query 0 does not see query 1
    assert not torch.allclose(after[:, 1], before[:, 1])


def test_pooled_targets_follow_the_depth_layout():
    depth = torch.zeros(1, 1, 16, 16)
    depth[..., :8, 8:] = 2.0  # the top-right quadrant is far
    feats = PooledDepthEncoder(grid=2)(depth)
    assert feats.shape == (1, 4, 16)
    assert torch.equal(feats[0].mean(dim=1), torch.tensor([0.0, 2.0, 0.0, 0.0]))


def test_a_scripted_depth_model_at_a_local_path_gives_the_targets(depth_ds, tmp_path):
    net = torch.nn.Conv2d(1, 5, kernel_size=4, stride=4)
    path = tmp_path / "depth_encoder.pt"
    torch.jit.script(net).save(str(path))
    policy, pre = build(depth_ds, mode="finetune", depth_encoder=str(path))
    assert policy.config.depth_feature_dim == 5
    _, metrics = policy.forward(batch_of(depth_ds, pre))
    assert metrics["depth_loss"] > 0
    policy.save_pretrained(tmp_path / "ckpt")
    pre.save_pretrained(tmp_path / "ckpt")
    loaded = LabVLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.depth_feature_dim == 5 and torch.equal(loaded.depth.queries, policy.depth.queries)
    with pytest.raises(LabVLAError, match="is not a file"):
        ScriptedDepthEncoder(tmp_path / "missing.pt", grid=2)


def test_genesis_depth_videos_are_depth_targets_in_metres_not_camera_slots():
    """`labvla-genesis generate --depth` writes depth-map VIDEO features, which LeRobot types VISUAL like the
    cameras: they must not take a camera slot, and they decode in millimetres (LeRobot's depth unit,
    no normalization for VISUAL), so the targets are scaled to metres."""
    from lerobot.configs.types import FeatureType
    from lerobot.utils.feature_utils import dataset_to_policy_features

    from lerobot_labvla.genesis.export import dataset_features

    features = dataset_to_policy_features(dataset_features(["beaker"], ("front", "side", "wrist"), 32, depth_cameras=("front", "side")))
    assert features["observation.depth.front"].type is FeatureType.VISUAL  # LeRobot's typing, the reason for the filter
    cfg = LabVLAConfig(backbone="tiny", device="cpu", image_size=32, expert_layers=2, expert_width=64, expert_heads=4,
                       fast_vocab_size=512, depth_distill=True, depth_grid=2, mode="ki",
                       input_features={k: f for k, f in features.items() if k != ACTION},
                       output_features={ACTION: features[ACTION]})
    cfg.validate_features()  # 3 cameras + 2 depth maps fit the 3 camera slots
    assert cfg.camera_keys == ["observation.images.front", "observation.images.side", "observation.images.wrist"]
    policy = LabVLAPolicy(cfg)
    assert policy.depth.keys == ["observation.depth.front", "observation.depth.side"]
    metres = torch.rand(2, 1, 32, 32) + 0.5
    in_mm = {k: metres * 1000.0 for k in policy.depth.keys}  # what LeRobotDataset hands the policy
    expected = PooledDepthEncoder(2)(metres)
    assert torch.allclose(policy.depth.targets(in_mm), torch.cat([expected, expected], dim=1), atol=1e-5)
