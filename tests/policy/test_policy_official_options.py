"""Official LabVLA training options that are off by default: the gripper loss weight and layerwise
VLM features. Each test fails if the weighting or the layer choice differs from the official code
(`src/policies/LabVLA/modeling_labvla.py`: `_apply_gripper_loss_weighting`, `_project_vlm_for_dit`)."""

from __future__ import annotations

import pytest
import torch

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

from test_policy_behaviour import batch_of, build, seeded_forward


def test_gripper_loss_weight_multiplies_the_gripper_dims_error_and_not_the_count(ds7):
    policy, pre = build(ds7, mode="finetune", gripper_action_dims=[6])
    policy.eval()
    batch = batch_of(ds7, pre, [0, 17])  # sample 1 has padded chunk steps

    def loss(weight: float, bump_dim: int | None = None):
        """Per-sample loss; `bump_dim` adds 5 to the expert's output on that dim (a known extra error)."""
        policy.config.gripper_loss_weight = weight
        handle = None
        if bump_dim is not None:
            onehot = torch.zeros(policy.config.max_action_dim)
            onehot[bump_dim] = 5.0
            handle = policy.expert.register_forward_hook(lambda module, args, out: out + onehot)
        try:
            return seeded_forward(policy, batch, reduction="none")[0]
        finally:
            if handle is not None:
                handle.remove()

    base1, base3 = loss(1.0), loss(3.0)
    grip1, grip3 = loss(1.0, bump_dim=6) - base1, loss(3.0, bump_dim=6) - base3
    arm1, arm3 = loss(1.0, bump_dim=2) - base1, loss(3.0, bump_dim=2) - base3
    assert (grip1 > 1.0).all() and (arm1 > 1.0).all()
    # Official: err[..., gripper] *= w, then the mean over valid elements (count unweighted).
    torch.testing.assert_close(grip3, 3.0 * grip1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(arm3, arm1, rtol=1e-4, atol=1e-4)


def test_gripper_dims_default_to_the_action_names_and_the_weight_must_be_positive():
    cfg = LabVLAConfig(backbone="tiny", action_feature_names=["joint_0", "joint_1", "gripper_width"])
    assert cfg.resolved_gripper_action_dims == [2]
    assert LabVLAConfig(backbone="tiny", gripper_action_dims=[0]).resolved_gripper_action_dims == [0]
    with pytest.raises(LabVLAError, match="gripper_loss_weight"):
        LabVLAConfig(backbone="tiny", gripper_loss_weight=0.0).validate_options()


def test_layerwise_expert_reads_the_deepest_lm_states_one_per_cross_block_shallow_to_deep(ds7):
    """Tiny LM: 2 layers, so its hidden states are (embeddings, layer 0, norm(layer 1)); 4 interleaved
    DiT blocks have 2 cross-attention blocks, which must read layer 0 and the final normed state."""
    policy, pre = build(ds7, mode="finetune", expert_layers=4, expert_layerwise_vlm_features=True)
    policy.eval()
    lm = policy.backbone.vlm.model.language_model
    cross = [block for block in policy.expert.blocks if not block.is_self_attention]
    assert len(lm.layers) == 2 and len(cross) == 2
    seen: dict[str, torch.Tensor] = {}
    lm.layers[0].register_forward_hook(lambda m, a, out: seen.setdefault("layer0", out[0] if isinstance(out, tuple) else out))
    lm.norm.register_forward_hook(lambda m, a, out: seen.setdefault("final", out))
    contexts: list[torch.Tensor] = []
    for block in cross:
        block.attn1.to_k.register_forward_hook(lambda m, args, out: contexts.append(args[0]))
    policy.predict_action_chunk(batch_of(ds7, pre, [2, 25]))
    first, second = contexts[0], contexts[1]  # the first Euler step's two cross blocks
    proj = policy.expert.proj_vlm_to_dit
    n = first.shape[1]  # the prefix (no state token in finetune)
    torch.testing.assert_close(first, proj(seen["layer0"][:, :n]))
    torch.testing.assert_close(second, proj(seen["final"][:, :n]))
    assert (first - second).abs().max() > 1e-3  # two different layers, not one state read twice
