"""Behaviour the maths must produce, through the policy's public API only.

Each test fails on a plausible bug that leaves shapes and finiteness intact: a flipped flow
target or Euler direction, a dropped loss mask, an expert that can read the FAST targets, a
FAST head that cannot learn its sequence. They use `forward` and `predict_action_chunk` on the
tiny configuration (plus a forward hook on `policy.expert`'s output and a swapped
`policy.fast.encode`), so they outlive changes to the architecture.
"""

from __future__ import annotations

import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.constants import ACTION

from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

TINY = dict(backbone="tiny", device="cpu", image_size=64, expert_layers=2, expert_width=64, expert_heads=4, fast_vocab_size=512)


def build(ds, **overrides):
    cfg = LabVLAConfig(**{**TINY, **overrides})
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    return policy, pre


def batch_of(ds, pre, indices: list[int], chunk: int = 10) -> dict:
    """Preprocessed frames `indices` of `ds` with their action chunks (normalized, as training sees them)."""
    dataset = LeRobotDataset(ds.repo_id, root=ds.root, delta_timestamps={ACTION: [i / ds.fps for i in range(chunk)]})
    raw = torch.utils.data.default_collate([dataset[i] for i in indices])
    return pre(raw)


def overfit(policy, batch: dict, steps: int, lr: float = 3e-3) -> list[float]:
    torch.manual_seed(0)
    policy.train()
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        loss, _ = policy.forward(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    policy.eval()
    return losses


def seeded_forward(policy, batch: dict, reduction: str = "mean"):
    torch.manual_seed(0)  # the same flow time and noise in every call
    return policy.forward(batch, reduction=reduction)


def test_fast_targets_never_reach_the_expert(ds7):
    """Other FAST target tokens (other values, another length) leave the expert's output and the FM loss unchanged."""
    policy, pre = build(ds7, mode="ki")
    policy.eval()
    batch = batch_of(ds7, pre, [0, 12, 25, 33])
    seen = []
    policy.expert.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    _, base = seeded_forward(policy, batch)
    true_encode = policy.fast.encode
    # Each sample's target sequence replaced by another sample's, reversed, plus a few tokens.
    policy.fast.encode = lambda chunks: [seq[::-1] + seq[:7] for seq in true_encode(chunks)[::-1]]
    _, other = seeded_forward(policy, batch)
    assert other["fast_loss"] != base["fast_loss"]  # the targets did change
    assert other["fm_loss"] == pytest.approx(base["fm_loss"], rel=1e-5)
    torch.testing.assert_close(seen[1], seen[0], rtol=1e-5, atol=1e-6)


def test_fm_loss_ignores_padded_action_dims_and_padded_chunk_steps(ds7):
    policy, pre = build(ds7, mode="finetune")
    policy.eval()
    batch = batch_of(ds7, pre, [0, 17])  # frame 17 of a 20-frame episode: its last chunk steps are padding
    is_pad = batch[f"{ACTION}_is_pad"]
    assert is_pad[1].any() and not is_pad[0].all()
    action_dim = batch[ACTION].shape[-1]
    base, _ = seeded_forward(policy, batch, reduction="none")

    # What the dataset put at padded steps (LeRobot repeats the episode's last action) never reaches
    # the real steps: the noised padded steps are expert inputs, but out of its self-attention keys.
    # (The official code lets real steps attend to them: that moved this loss by ~1% for a value of 123.)
    junk = dict(batch)
    junk[ACTION] = torch.where(is_pad[..., None], torch.full_like(batch[ACTION], 123.0), batch[ACTION])
    torch.testing.assert_close(seeded_forward(policy, junk, reduction="none")[0], base, msg="padded-step actions leaked")

    # The loss itself is masked: hooks move the expert's output at padded dims / padded steps.

    def add_to_output(where):
        def hook(module, args, out):
            out = out.clone()
            out[where(out)] += 100.0
            return out

        return policy.expert.register_forward_hook(hook)

    def pad_dims(out):
        mask = torch.zeros_like(out, dtype=torch.bool)
        mask[..., action_dim:] = True
        return mask

    def pad_steps(out):
        return is_pad[..., None].expand_as(out)

    def one_real_value(out):
        mask = torch.zeros_like(out, dtype=torch.bool)
        mask[0, 0, 0] = True
        return mask

    for where in (pad_dims, pad_steps):
        handle = add_to_output(where)
        torch.testing.assert_close(seeded_forward(policy, batch, reduction="none")[0], base, msg=where.__name__)
        handle.remove()
    handle = add_to_output(one_real_value)  # the check can fail: a real element does move the loss
    assert seeded_forward(policy, batch, reduction="none")[0][0] > base[0] + 1.0
    handle.remove()


@pytest.mark.parametrize("mode", ["ki", "fast_pretrain"])
def test_per_sample_loss_keeps_the_fast_gradient(ds7, mode):
    """`forward(reduction="none")` (LeRobot's sample weighting) trains the backbone through the FAST loss."""
    policy, pre = build(ds7, mode=mode)
    policy.train()
    batch = batch_of(ds7, pre, [0, 25])
    if mode == "ki":
        policy.config.fm_loss_weight = 0.0  # only the FAST loss may move the backbone in ki
    per_sample, _ = seeded_forward(policy, batch, reduction="none")
    assert per_sample.shape == (2,) and per_sample.requires_grad
    (per_sample * torch.tensor([1.0, 0.0])).sum().backward()
    grads = [p.grad for p in policy.backbone.parameters() if p.grad is not None]
    assert grads and any(torch.count_nonzero(g) > 0 for g in grads)
    # Weighting sample 1 by zero must give the gradient of sample 0 alone.
    policy.zero_grad()
    first = {k: v[:1] if torch.is_tensor(v) or isinstance(v, list) else v for k, v in batch.items()}
    alone, _ = seeded_forward(policy, first, reduction="none")
    torch.testing.assert_close(alone[0], per_sample[0].detach(), rtol=1e-4, atol=1e-5)


def test_overfit_one_batch_then_sampled_chunks_are_the_training_chunks(ds7):
    """After memorizing two frames (from two episodes), sampling from fresh noise returns their chunks.

    Measured on the tiny model: 0.25 after 300 steps (the two chunks' mean is 0.74 away); with the
    flow target flipped, 2.4 (Euler then runs away from the data); an expert that ignores its
    conditioning lands at the two chunks' mean: the thresholds exclude both.
    """
    policy, pre = build(ds7, mode="finetune", freeze_backbone=True)
    batch = batch_of(ds7, pre, [2, 25] * 4)  # repeated: more (t, noise) draws per step
    overfit(policy, batch, steps=300)
    target = batch[ACTION]
    torch.manual_seed(1)
    sampled = policy.predict_action_chunk(batch)
    err = (sampled - target).abs().mean().item()
    mean_chunk_err = (target - target.mean(0, keepdim=True)).abs().mean().item()
    assert err < 0.35 and err < 0.6 * mean_chunk_err, (err, mean_chunk_err)


def test_fast_pretrain_overfit_one_batch_then_generation_decodes_the_training_chunks(ds7):
    policy, pre = build(ds7, mode="fast_pretrain")
    batch = batch_of(ds7, pre, [2, 25])
    overfit(policy, batch, steps=150)
    _, metrics = policy.forward(batch)
    assert metrics["fast_acc"] > 0.99, metrics  # teacher-forced
    decoded = policy.predict_action_chunk(batch)  # free-running greedy generation
    assert (decoded - batch[ACTION]).abs().mean() < 0.05  # FAST rounds to 1/fast_scale per DCT coefficient
    assert policy.fast_decode_errors == 0


def test_a_sample_gets_the_same_chunk_alone_or_in_a_batch_and_its_chunk_reads_its_images(ds7):
    """The prefix computed once per chunk and reused over the Euler steps is each sample's own:
    batching (with its padding and masks) changes nothing, and another image changes the chunk."""
    policy, pre = build(ds7, mode="ki")
    policy.eval()
    batch = batch_of(ds7, pre, [2, 25])
    noise = torch.randn(2, policy.config.chunk_size, policy.config.max_action_dim, generator=torch.Generator().manual_seed(0))
    together = policy.predict_action_chunk(batch, noise=noise)
    for i in range(2):
        one = {k: v[i : i + 1] if torch.is_tensor(v) or isinstance(v, list) else v for k, v in batch.items()}
        torch.testing.assert_close(policy.predict_action_chunk(one, noise=noise[i : i + 1]), together[i : i + 1], rtol=1e-4, atol=1e-4)
    swapped = dict(batch)
    for key in policy.config.camera_keys:
        swapped[key] = batch[key].flip(0)  # sample 0 now sees sample 1's images
    moved = policy.predict_action_chunk(swapped, noise=noise)
    assert (moved - together).abs().max() > 1e-3


def test_fast_is_fitted_on_the_relative_actions_that_training_encodes(ds7):
    """With `use_relative_actions` the model's targets are `action - state`: FAST must be fitted on
    those. On ds7 they span about twice the absolute range: a tokenizer fitted on the absolute actions
    clips them on decoding (measured: mean error 0.17, max 1.3; fitted on the relative ones: 0.02, 0.09)."""
    policy, pre = build(ds7, mode="fast_pretrain", use_relative_actions=True)
    batch = batch_of(ds7, pre, list(range(40)))  # every frame, relative and normalized as forward sees them
    real = batch[ACTION].shape[-1]
    chunks = torch.nn.functional.pad(batch[ACTION], (0, policy.config.max_action_dim - real)).numpy()
    result = policy.fast.decode(policy.fast.encode(chunks))
    err = abs(result.actions - chunks)[..., :real]
    assert not result.errors
    assert err.mean() < 0.06 and err.max() < 0.5, (err.mean(), err.max())
