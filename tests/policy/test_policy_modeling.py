"""In-process tests of the labvla policy built the way LeRobot builds it (make_policy + processors)."""

from __future__ import annotations

import copy

import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.constants import ACTION, OBS_STATE

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy


def tiny_config(**overrides) -> LabVLAConfig:
    kw = dict(
        backbone="tiny", device="cpu", image_size=64, expert_layers=2, expert_width=64, expert_heads=4, fast_vocab_size=512
    )
    kw.update(overrides)
    return LabVLAConfig(**kw)


def build(ds, **overrides):
    cfg = tiny_config(**overrides)
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    return policy, pre, post


def raw_batch(ds, chunk: int = 10, size: int = 4) -> dict:
    dataset = LeRobotDataset(
        ds.repo_id, root=ds.root, delta_timestamps={ACTION: [i / ds.fps for i in range(chunk)]}
    )
    return next(iter(torch.utils.data.DataLoader(dataset, batch_size=size, shuffle=False)))


def test_ki_fm_loss_moves_only_the_expert_and_fast_loss_moves_the_backbone(ds7):
    policy, pre, _ = build(ds7, mode="ki")
    policy.train()
    batch = pre(raw_batch(ds7))

    policy.config.fm_loss_weight, policy.config.fast_loss_weight = 1.0, 0.0
    policy.zero_grad()
    loss, metrics = policy.forward(batch)
    loss.backward()
    assert metrics["fm_loss"] > 0
    backbone_grads = [p.grad for p in policy.backbone.parameters()]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in backbone_grads), "FM loss reached the backbone"
    assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in policy.expert.parameters())

    policy.config.fm_loss_weight, policy.config.fast_loss_weight = 0.0, 1.0
    policy.zero_grad()
    loss, metrics = policy.forward(batch)
    loss.backward()
    nonzero = [n for n, p in policy.backbone.named_parameters() if p.grad is not None and torch.count_nonzero(p.grad) > 0]
    assert metrics["fast_loss"] > 0
    assert any("visual" in n for n in nonzero) and any("language_model" in n for n in nonzero)


def test_finetune_without_freeze_lets_fm_train_the_backbone(ds7):
    policy, pre, _ = build(ds7, mode="finetune")
    policy.train()
    loss, metrics = policy.forward(pre(raw_batch(ds7)))
    loss.backward()
    assert set(metrics) == {"fm_loss"}
    assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in policy.backbone.parameters())


def test_freeze_backbone_leaves_only_expert_trainable(ds7):
    policy, _, _ = build(ds7, mode="finetune", freeze_backbone=True)
    trainable = {id(p) for group in policy.get_optim_params() for p in group["params"]}
    assert trainable == {id(p) for p in policy.expert.parameters()}


def test_fast_pretrain_reports_ce_and_accuracy_without_expert(ds7):
    policy, pre, _ = build(ds7, mode="fast_pretrain")
    loss, metrics = policy.forward(pre(raw_batch(ds7)))
    assert set(metrics) == {"fast_loss", "fast_acc"}
    assert torch.isfinite(loss) and 0.0 <= metrics["fast_acc"] <= 1.0
    assert policy.fast_fit_report["heldout_decode_errors"] == 0
    assert policy.fast_fit_report["heldout_mae"] < 0.05


@pytest.mark.parametrize("mode", ["ki", "fast_pretrain"])
def test_save_load_round_trip_gives_identical_actions(ds7, tmp_path, mode):
    policy, pre, post = build(ds7, mode=mode)
    policy.eval()
    raw = raw_batch(ds7, size=2)

    def act(p, pre_, post_):
        torch.manual_seed(0)
        chunk = p.predict_action_chunk(pre_(copy.deepcopy(raw)))
        return post_(chunk)

    before = act(policy, pre, post)
    policy.save_pretrained(tmp_path)
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    loaded = LabVLAPolicy.from_pretrained(tmp_path)
    pre2, post2 = make_pre_post_processors(loaded.config, pretrained_path=str(tmp_path))
    after = act(loaded, pre2, post2)
    assert before.shape == (2, 10, 7)
    assert torch.equal(before, after)
    assert (tmp_path / "tokenizer" / "tokenizer.json").exists()
    assert (tmp_path / "fast_tokenizer.json").exists()


def test_select_action_serves_the_chunk_from_a_queue(ds7):
    policy, pre, _ = build(ds7, mode="ki", n_action_steps=4)
    policy.eval()
    batch = pre(raw_batch(ds7, size=1))
    torch.manual_seed(0)
    chunk = policy.predict_action_chunk(batch)
    policy.reset()
    torch.manual_seed(0)
    served = torch.stack([policy.select_action(batch) for _ in range(4)], dim=1)
    assert torch.equal(served, chunk[:, :4])


def test_a_missing_camera_is_a_masked_slot_and_no_camera_is_named(ds7):
    policy, pre, _ = build(ds7, mode="finetune")
    policy.eval()
    batch = pre(raw_batch(ds7, size=1))
    noise = torch.randn(1, policy.config.chunk_size, policy.config.max_action_dim)
    full = policy.predict_action_chunk(batch, noise=noise)
    del batch["observation.images.wrist"]
    masked = policy.predict_action_chunk(batch, noise=noise)
    assert torch.isfinite(masked).all() and not torch.allclose(full, masked)
    del batch["observation.images.front"]
    with pytest.raises(LabVLAError, match=r"none of the policy's cameras.*observation\.images\.front"):
        policy.predict_action_chunk(batch)


def test_nan_state_is_rejected_by_the_preprocessor(ds7):
    _, pre, _ = build(ds7)
    raw = raw_batch(ds7, size=1)
    raw[OBS_STATE][0, 3] = float("nan")
    with pytest.raises(LabVLAError, match=r"NaN/Inf in dim\(s\) \[3\]"):
        pre(raw)


def test_missing_stats_fail_loudly_with_the_key_names(ds7):
    stats = copy.deepcopy(ds7.meta.stats)
    del stats[OBS_STATE]["mean"], stats[ACTION]["std"]
    policy, _, _ = build(ds7)  # make_policy fills the config's features from the dataset
    with pytest.raises(LabVLAError, match=r"observation\.state \[mean\].*action \[std\]"):
        make_pre_post_processors(policy.config, dataset_stats=stats)
    with pytest.raises(LabVLAError, match=r"observation\.state \[mean\].*action \[std\]"):
        LabVLAPolicy(policy.config, dataset_stats=stats)


def test_checkpoint_with_missing_normalizer_stats_refuses_to_load(ds7, tmp_path):
    from safetensors.torch import load_file, save_file

    policy, pre, post = build(ds7)
    policy.save_pretrained(tmp_path)
    pre.save_pretrained(tmp_path)
    state_file = next(tmp_path.glob("policy_preprocessor_step_*_normalizer_processor.safetensors"))
    state = {k: v for k, v in load_file(state_file).items() if not k.startswith(OBS_STATE)}
    save_file(state, state_file)
    with pytest.raises(LabVLAError, match=r"observation\.state \[mean, std\]"):
        LabVLAPolicy.from_pretrained(tmp_path)


def test_unknown_mode_and_oversized_state_are_named(ds7):
    with pytest.raises(LabVLAError, match="not one of fast_pretrain, ki, finetune"):
        build(ds7, mode="pretrain")
    with pytest.raises(LabVLAError, match=r"state dim 8 > --policy.max_state_dim=4"):
        build(ds7, max_state_dim=4)


def test_wrong_image_shape_is_named(ds7):
    _, pre, _ = build(ds7)
    raw = raw_batch(ds7, size=1)
    raw["observation.images.front"] = raw["observation.images.front"][:, :1]
    with pytest.raises(LabVLAError, match=r"observation\.images\.front must be \(B, 3, H, W\)"):
        pre(raw)


def test_rtc_guidance_pulls_the_new_chunk_towards_the_unexecuted_one(ds7):
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    policy, pre, _ = build(ds7, mode="finetune")
    policy.eval()
    batch = pre(raw_batch(ds7, size=1))
    prev = torch.full((1, 10, 7), 0.8)
    torch.manual_seed(0)
    plain = policy.predict_action_chunk(batch)
    assert policy.supports_rtc()
    policy.config.rtc_config = RTCConfig(enabled=True, execution_horizon=8, max_guidance_weight=10.0)
    policy.init_rtc_processor()
    torch.manual_seed(0)
    guided = policy.predict_action_chunk(batch, inference_delay=3, prev_chunk_left_over=prev)
    assert guided.shape == plain.shape == (1, 10, 7)
    head = slice(0, 3)
    assert (guided[:, head] - prev[:, head]).abs().mean() < (plain[:, head] - prev[:, head]).abs().mean()


def test_vlm_prefix_runs_once_per_chunk_not_per_euler_step(ds7):
    policy, pre, _ = build(ds7, mode="ki", num_inference_steps=10)
    policy.eval()
    batch = pre(raw_batch(ds7, size=1))
    vlm_calls, expert_calls = [], []
    policy.backbone.vlm.model.language_model.register_forward_hook(lambda *a: vlm_calls.append(1))
    policy.expert.proj_vlm_to_dit.register_forward_hook(lambda *a: vlm_calls.append(1))
    policy.expert.register_forward_hook(lambda *a: expert_calls.append(1))
    policy.predict_action_chunk(batch)
    assert (len(vlm_calls), len(expert_calls)) == (2, 10)  # LM + context projection once, expert per step


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(ds7):
    batch = None
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        policy, pre, _ = build(ds7, mode="ki", gradient_checkpointing=ckpt)
        policy.train()
        batch = batch or pre(raw_batch(ds7))
        torch.manual_seed(1)
        loss, _ = policy.forward(batch)
        loss.backward()
        results.append((loss.detach(), policy.expert.action_in_proj.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_bfloat16_backbone_trains_and_samples_float32_actions(ds7):
    policy, pre, post = build(ds7, mode="ki", dtype="bfloat16")
    assert policy.backbone.vlm.dtype == torch.bfloat16
    batch = pre(raw_batch(ds7, size=2))
    loss, _ = policy.forward(batch)
    loss.backward()
    assert torch.isfinite(loss)
    policy.eval()
    actions = post(policy.predict_action_chunk(batch))
    assert actions.dtype == torch.float32 and actions.shape == (2, 10, 7) and torch.isfinite(actions).all()
