"""`--policy.expert_attention=mot`: the LingBot-style Mixture-of-Transformers expert.

The reference below is a literal joint pass: backbone and expert tokens in one sequence, layer by
layer, each stream with its own weights, one attention under `block_mask`. The policy's
KV-cached path (backbone once, then the expert against its per-layer K/V) must equal it.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.common.flow_matching import euler_integrate
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.constants import ACTION

from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy
from lerobot_labvla.policy.mot import apply_rope, block_mask
from policy_helpers import TINY_POLICY, assert_ok, losses, run_cli, train_args


def build(ds, **overrides):
    kw = dict(backbone="tiny", device="cpu", image_size=64, expert_width=32, fast_vocab_size=512, expert_attention="mot")
    kw.update(overrides)
    cfg = LabVLAConfig(**kw)
    return make_policy(cfg, ds_meta=ds.meta), *make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)


def raw_batch(ds, size: int = 2) -> dict:
    dataset = LeRobotDataset(ds.repo_id, root=ds.root, delta_timestamps={ACTION: [i / ds.fps for i in range(10)]})
    return next(iter(torch.utils.data.DataLoader(dataset, batch_size=size, shuffle=False)))


def joint_pass(policy, batch, x_t, t):
    """Prefix hidden `(B, L, H)`, suffix hidden `(B, 1 + T, W)` and velocity `(B, T, A)` of one joint pass."""
    bb, expert = policy.backbone, policy.expert
    images, state, prompts = policy._inputs(batch)
    x_p, pos_p, attention = bb.embed_prefix(policy._build_inputs(images, prompts))
    state_p = policy._pad_state(state)
    x_e = expert.embed_suffix(x_t, t, state_p)
    bsz, n_p, n_e = x_p.shape[0], x_p.shape[1], x_e.shape[1]
    lm = bb.vlm.model.language_model
    cos_p, sin_p = lm.rotary_emb(x_p, pos_p)
    cos_e, sin_e = lm.rotary_emb(x_e, pos_p.max(dim=2, keepdim=True).values + 1 + torch.arange(n_e))
    prefix_rows = torch.tril(torch.ones(n_p, n_p, dtype=torch.bool)) & attention.bool()[:, None, :]
    prefix_rows = torch.cat([prefix_rows, torch.zeros(bsz, n_p, n_e, dtype=torch.bool)], dim=2)
    mask = torch.cat([prefix_rows, block_mask(attention, n_e - 1)], dim=1)[:, None]
    for layer, ex in zip(lm.layers, expert.layers, strict=True):
        attn = layer.self_attn
        h = layer.input_layernorm(x_p)
        q = attn.q_norm(attn.q_proj(h).view(bsz, n_p, -1, attn.head_dim)).transpose(1, 2)
        k = attn.k_norm(attn.k_proj(h).view(bsz, n_p, -1, attn.head_dim)).transpose(1, 2)
        v = attn.v_proj(h).view(bsz, n_p, -1, attn.head_dim).transpose(1, 2)
        q_e, k_e, v_e = ex.qkv(x_e, cos_e, sin_e)
        out = F.scaled_dot_product_attention(
            torch.cat([apply_rope(q, cos_p, sin_p), q_e], 2),
            torch.cat([apply_rope(k, cos_p, sin_p), k_e], 2),
            torch.cat([v, v_e], 2),
            attn_mask=mask,
            enable_gqa=True,
        )
        x_p = x_p + attn.o_proj(out[:, :, :n_p].transpose(1, 2).flatten(2))
        x_p = x_p + layer.mlp(layer.post_attention_layernorm(x_p))
        x_e = ex.finish(x_e, out[:, :, n_p:])
    return lm.norm(x_p), x_e, expert.action_out_proj(expert.norm(x_e)[:, 1:])


@pytest.fixture(scope="module")
def finetune_policy(ds7):
    policy, pre, post = build(ds7, mode="finetune")
    policy.eval()
    return policy, pre(raw_batch(ds7))


def test_cached_expert_equals_the_joint_pass_and_actions_never_reach_the_prefix(finetune_policy):
    policy, batch = finetune_policy
    torch.manual_seed(0)
    x_t, t = torch.randn(2, 10, policy.config.max_action_dim), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        prefix_hidden, suffix, v_joint = joint_pass(policy, batch, x_t, t)
        other_actions = x_t.clone()
        other_actions[:, 4] += 5.0
        prefix_hidden2, suffix2, v_joint2 = joint_pass(policy, batch, other_actions, t)

        images, state, prompts = policy._inputs(batch)
        prefix = policy.backbone(policy._build_inputs(images, prompts))
        kv = policy.expert.project_context(prefix.hidden)
        v_cached = policy.expert(x_t, t, policy._pad_state(state), kv, prefix.mask)

    real = prefix.mask[..., None]
    # The reference is the real model: its prefix equals the backbone's own forward.
    torch.testing.assert_close(prefix_hidden * real, prefix.hidden * real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v_cached, v_joint.float(), atol=1e-5, rtol=1e-5)
    # Block mask: a changed action token leaves every prefix output and the state token unchanged...
    assert torch.equal(prefix_hidden2, prefix_hidden)
    assert torch.equal(suffix2[:, 0], suffix[:, 0])
    # ...and does reach the other action tokens (actions attend to each other).
    assert not torch.allclose(v_joint2[:, 0], v_joint[:, 0])


def test_kv_cached_sampling_equals_rerunning_the_joint_pass_every_step(finetune_policy):
    policy, batch = finetune_policy
    noise = torch.randn(2, 10, policy.config.max_action_dim, generator=torch.Generator().manual_seed(1))
    policy.config.num_inference_steps = 3
    cached = policy.predict_action_chunk(copy.copy(batch), noise=noise.clone())
    with torch.no_grad():
        uncached = euler_integrate(lambda x, t: -joint_pass(policy, batch, x, 1.0 - t)[2].float(), noise.clone(), 3)
    torch.testing.assert_close(cached, uncached[..., : policy.config.action_dim], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def ki_policy(ds7):
    return build(ds7, mode="ki")


def test_ki_keeps_the_fm_loss_out_of_the_backbone_and_finetune_lets_it_in(ki_policy, ds7):
    policy, pre, _ = ki_policy
    cfg = copy.deepcopy(policy.config)
    try:
        _check_insulation(policy, pre(raw_batch(ds7, size=4)))
    finally:
        policy.config = cfg
        policy.zero_grad(set_to_none=True)


def _check_insulation(policy, batch):
    policy.train()
    policy.config.fm_loss_weight, policy.config.fast_loss_weight = 1.0, 0.0
    loss, metrics = policy.forward(batch)
    loss.backward()
    assert metrics["fm_loss"] > 0
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in policy.backbone.parameters()), (
        "the FM loss reached the backbone through the shared attention"
    )
    assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in policy.expert.layers[0].parameters())

    policy.config.mode = "finetune"
    policy.zero_grad()
    policy.forward(batch)[0].backward()
    lm = policy.backbone.vlm.model.language_model
    # Only the shared K/V connect the expert to the backbone: they must carry the FM gradient.
    assert torch.count_nonzero(lm.layers[0].self_attn.k_proj.weight.grad) > 0


def test_save_load_round_trip_gives_identical_actions(ki_policy, ds7, tmp_path):
    policy, pre, post = ki_policy
    policy.eval()
    raw = raw_batch(ds7)

    def act(p, pre_, post_):
        torch.manual_seed(0)
        return post_(p.predict_action_chunk(pre_(copy.deepcopy(raw))))

    before = act(policy, pre, post)
    for part in (policy, pre, post):
        part.save_pretrained(tmp_path)
    loaded = LabVLAPolicy.from_pretrained(tmp_path)
    assert loaded.config.expert_attention == "mot"
    after = act(loaded, *make_pre_post_processors(loaded.config, pretrained_path=str(tmp_path)))
    assert before.shape == (2, 10, 7)
    assert torch.equal(before, after)


@pytest.mark.slow
def test_lerobot_train_runs_every_mode_with_mot(ds7, tmp_path):
    """fast_pretrain from scratch -> ki from its checkpoint -> finetune from that one, 2 steps each."""
    flags = [*TINY_POLICY, "--policy.expert_attention=mot", "--policy.expert_width=32"]
    runs = {}
    runs["fast_pretrain"] = run_cli(
        "lerobot-train", *flags, "--policy.mode=fast_pretrain", *train_args(ds7, tmp_path / "fast", steps=2), timeout=800
    )
    previous = tmp_path / "fast"
    for mode in ("ki", "finetune"):
        assert_ok(runs[list(runs)[-1]])
        ckpt = previous / "checkpoints" / "last" / "pretrained_model"
        runs[mode] = run_cli(
            "lerobot-train", f"--policy.path={ckpt}", f"--policy.mode={mode}", "--policy.device=cpu",
            *train_args(ds7, tmp_path / mode, steps=2), timeout=800,
        )
        previous = tmp_path / mode
    assert_ok(runs["finetune"])
    for mode, proc in runs.items():
        curve = losses(proc)
        assert len(curve) == 2 and all(torch.isfinite(torch.tensor(curve))), (mode, proc.stdout[-2000:])
    assert "fm_loss" in runs["ki"].stdout + runs["ki"].stderr
    saved = (tmp_path / "finetune" / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text()
    assert '"expert_attention": "mot"' in saved


def test_a_deep_copy_reads_its_own_backbone(finetune_policy):
    policy, batch = finetune_policy
    twin = copy.deepcopy(policy)
    with torch.no_grad():
        twin.backbone.vlm.model.language_model.layers[0].self_attn.v_proj.weight.mul_(2.0)
    noise = torch.randn(2, 10, policy.config.max_action_dim, generator=torch.Generator().manual_seed(2))
    twin_chunk = twin.predict_action_chunk(copy.copy(batch), noise=noise)
    ours = policy.predict_action_chunk(copy.copy(batch), noise=noise)
    again = policy.predict_action_chunk(copy.copy(batch), noise=noise)
    assert torch.equal(ours, again) and not torch.allclose(ours, twin_chunk)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(finetune_policy, ds7):
    policy, batch = finetune_policy
    checkpointed, _, _ = build(ds7, mode="finetune", gradient_checkpointing=True)
    checkpointed.load_state_dict(policy.state_dict())
    grads = []
    for p in (policy, checkpointed):
        p.train()
        p.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        loss, _ = p.forward(batch)
        loss.backward()
        grads.append((loss, p.backbone.vlm.model.language_model.layers[0].self_attn.k_proj.weight.grad, p.expert.layers[0].q_proj.weight.grad))
        p.zero_grad(set_to_none=True)
        p.eval()
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
