"""Training set-up LeRobot reads from the policy: optimizer parameter groups, freezing, Hub loading."""

from __future__ import annotations

import pytest
import torch
from lerobot.policies.factory import make_policy

from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

TINY = dict(backbone="tiny", device="cpu", image_size=64, expert_layers=2, expert_width=64, expert_heads=4, fast_vocab_size=512)


def test_optimizer_groups_follow_the_official_recipe(ds7):
    cfg = LabVLAConfig(**TINY, mode="ki", optimizer_lr_vlm=1e-5, optimizer_lr_expert=1e-4)
    policy = make_policy(cfg, ds_meta=ds7.meta)
    groups = policy.get_optim_params()
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"vlm", "vlm_no_decay", "expert", "expert_no_decay"}
    names = {id(p): n for n, p in policy.named_parameters()}
    vlm_ids = {id(p) for p in policy.backbone.vlm.parameters()}
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in policy.parameters() if p.requires_grad)  # each exactly once
    for g in groups:
        in_vlm = {id(p) in vlm_ids for p in g["params"]}
        assert in_vlm == {g["name"].startswith("vlm")}
        assert g["lr"] == (1e-5 if g["name"].startswith("vlm") else 1e-4)
        no_decay = g["name"].endswith("no_decay")
        assert g["weight_decay"] == (0.0 if no_decay else cfg.optimizer_weight_decay)
        for p in g["params"]:
            flat = p.ndim < 2 or names[id(p)].endswith(".bias") or "norm" in names[id(p)].lower()
            assert flat == no_decay, names[id(p)]
    # LeRobot's own preset builds it: AdamW (0.9, 0.95), clip 1.0, and the cosine schedule keeps the LR ratio.
    opt_cfg = cfg.get_optimizer_preset()
    assert (opt_cfg.betas, opt_cfg.grad_clip_norm) == ((0.9, 0.95), 1.0)
    optimizer = opt_cfg.build(groups)
    scheduler = cfg.get_scheduler_preset().build(optimizer, num_training_steps=1000)
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["expert"] / lrs["vlm"] == pytest.approx(10.0)


def test_freeze_vision_encoder_in_finetune_keeps_only_the_vision_tower_fixed(ds7):
    policy = make_policy(LabVLAConfig(**TINY, mode="finetune", freeze_vision_encoder=True), ds_meta=ds7.meta)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    visual = {n for n, _ in policy.named_parameters() if ".visual." in n}
    assert visual and not (visual & trainable)
    assert any("language_model" in n for n in trainable) and any(n.startswith("expert.") for n in trainable)


def test_hub_loading_passes_token_revision_and_download_flags(ds7, monkeypatch):
    import huggingface_hub

    seen = {}

    class Stop(Exception):
        pass

    def fake_snapshot_download(repo_id, **kwargs):
        seen.update(kwargs, repo_id=repo_id)
        raise Stop

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(Stop):
        LabVLAPolicy.from_pretrained(
            "someone/labvla-ckpt",
            config=LabVLAConfig(**TINY),
            token="hf_x",
            revision="v1",
            force_download=True,
            local_files_only=True,
            cache_dir="/tmp/hub-cache",
        )
    assert seen["repo_id"] == "someone/labvla-ckpt"
    assert {k: seen[k] for k in ("token", "revision", "force_download", "local_files_only", "cache_dir")} == {
        "token": "hf_x",
        "revision": "v1",
        "force_download": True,
        "local_files_only": True,
        "cache_dir": "/tmp/hub-cache",
    }


def test_compiled_denoise_step_compiles_a_bounded_number_of_graphs(ds7, monkeypatch):
    """`--policy.compile=true`: 50 chunks with varying states, tasks and frames reuse the same graphs
    (dynamo's eager backend stands in for inductor: the count of graphs is dynamo's, not the backend's)."""
    import torch._dynamo
    from lerobot.policies.factory import make_pre_post_processors

    from test_policy_behaviour import batch_of

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend="eager", dynamic=kw.get("dynamic")))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters: graphs other tests compiled would count here
    cfg = LabVLAConfig(**TINY, mode="ki", compile=True)
    policy = make_policy(cfg, ds_meta=ds7.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds7.meta.stats)
    policy.eval()
    gen = torch.Generator().manual_seed(0)
    ten = batch_of(ds7, pre, list(range(0, 40, 4)))
    frames = [{k: v[i : i + 1] if torch.is_tensor(v) or isinstance(v, list) else v for k, v in ten.items()} for i in range(10)]
    for step in range(50):
        batch = dict(frames[step % len(frames)])
        batch["observation.state"] = batch["observation.state"] + torch.rand(batch["observation.state"].shape, generator=gen)
        policy.predict_action_chunk(batch)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 2, graphs
