"""policy/parallelize.py: the FSDP shard units accelerate wraps, and fused AdamW in the parameter groups."""

from __future__ import annotations

import copy

import torch
from lerobot.policies.factory import make_policy

from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

from test_policy_training import TINY


def test_fsdp_units_are_lingbots_groups_and_accelerate_wraps_each(ds7):
    from accelerate.utils import FullyShardedDataParallelPlugin

    policy = make_policy(LabVLAConfig(**TINY, mode="ki"), ds_meta=ds7.meta)
    units = policy._no_split_modules
    # Only classes this policy has: accelerate raises on a listed class it cannot find (MoTLayer here).
    assert units == ["Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock", "Qwen3VLVisionPatchEmbed", "Qwen3VLVisionPatchMerger", "DiTBlock"]
    plugin = FullyShardedDataParallelPlugin(auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(policy)
    wrapped = [name for name, m in policy.named_modules() if m is not policy and plugin.auto_wrap_policy(m, False, 0)]
    n_text, n_vision = 2, 2  # tiny Qwen3-VL
    assert len(wrapped) == n_text + n_vision + 1 + 2 + len(policy.expert.blocks)  # + patch embed + merger and deepstack merger
    assert all(f"expert.dit_action_head.transformer_blocks.{i}" in wrapped for i in range(len(policy.expert.blocks)))
    # The tied-able embedding and LM head stay in the root unit.
    assert not any(name.endswith(("embed_tokens", "lm_head")) for name in wrapped)


def test_fused_adamw_groups_step_like_the_plain_optimizer(ds7):
    policy = make_policy(LabVLAConfig(**TINY, mode="finetune"), ds_meta=ds7.meta)
    groups = policy.get_optim_params()
    assert all(g.get("fused") is True for g in groups)  # CPU has torch's fused AdamW kernel
    twin = copy.deepcopy(policy)
    plain_groups = [
        {k: v for k, v in g.items() if k not in ("params", "fused")} | {"params": [dict(twin.named_parameters())[n] for n in names]}
        for g, names in zip(groups, _names(policy, groups), strict=True)
    ]
    fused_opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    plain_opt = torch.optim.AdamW(plain_groups, lr=1e-3, betas=(0.9, 0.95))
    assert plain_opt.param_groups[0]["fused"] is None and fused_opt.param_groups[0]["fused"] is True
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for (_, p), (_, q) in zip(policy.named_parameters(), twin.named_parameters(), strict=True):
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=gen)
                q.grad = p.grad.clone()
        fused_opt.step()
        plain_opt.step()
    for (name, p), (_, q) in zip(policy.named_parameters(), twin.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(policy.expert.action_in_proj.weight, before["expert.action_in_proj.weight"])


def _names(policy, groups) -> list[list[str]]:
    by_id = {id(p): n for n, p in policy.named_parameters()}
    return [[by_id[id(p)] for p in g["params"]] for g in groups]


def test_compile_blocks_gives_the_same_loss_and_gradients(ds7):
    import torch._dynamo
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_labvla.policy.parallelize import compile_blocks
    from test_policy_modeling import raw_batch

    torch._dynamo.reset()
    cfg = LabVLAConfig(**TINY, mode="finetune")
    policy = make_policy(cfg, ds_meta=ds7.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds7.meta.stats)
    batch = pre(raw_batch(ds7, size=2))
    twin = copy.deepcopy(policy)
    # dynamo's eager backend: the graphs are dynamo's (what compile changes), without inductor's minutes on CPU.
    assert compile_blocks(twin, backend="eager") == len(policy.expert.blocks) + 2  # + the tiny VLM's 2 layers
    results = []
    for p in (policy, twin):
        torch.manual_seed(0)
        loss, _ = p.train().forward(dict(batch))
        loss.backward()
        results.append((loss.detach(), p.expert.action_in_proj.weight.grad, p.backbone.vlm.model.language_model.layers[0].mlp.up_proj.weight.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)
