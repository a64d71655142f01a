"""Checkpoint loading on the meta device (policy/loading.py) against LeRobot's build-then-copy load."""

from __future__ import annotations

import logging

import pytest
import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from safetensors.torch import load_file, save_file

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.backbone import tiny_backbone_config
from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

from test_policy_modeling import build, raw_batch


def lerobot_load(path):
    """LeRobot's own loader: the policy built with random weights, then `model.safetensors` copied in."""
    from lerobot_labvla.policy.modeling_labvla import _checkpoint_files

    return PreTrainedPolicy.from_pretrained.__func__(LabVLAPolicy, path, checkpoint_dir=_checkpoint_files(str(path), {}))


def chunk(policy, batch):
    torch.manual_seed(0)
    return policy.predict_action_chunk(dict(batch))


def save(policy, pre, post, path):
    policy.save_pretrained(path)
    pre.save_pretrained(path)
    post.save_pretrained(path)


def test_meta_load_builds_no_weights_and_equals_lerobots_load(ds7, tmp_path, monkeypatch):
    # A tied embedding / LM head (as Qwen3-VL-4B has): the file keeps one of the two names.
    tied = tiny_backbone_config() | {"tie_word_embeddings": True}
    tied["text_config"] = tied["text_config"] | {"tie_word_embeddings": True}
    policy, pre, post = build(ds7, mode="ki", backbone_config=tied)
    save(policy, pre, post, tmp_path)

    built_on_meta = []
    init = LabVLAPolicy.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built_on_meta.append(all(p.is_meta for p in self.parameters()))

    monkeypatch.setattr(LabVLAPolicy, "__init__", spy)
    loaded = LabVLAPolicy.from_pretrained(tmp_path)
    monkeypatch.setattr(LabVLAPolicy, "__init__", init)
    assert built_on_meta == [True]  # the constructor allocated no weight

    reference = lerobot_load(tmp_path)
    ours, theirs = loaded.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert not ours[key].is_meta, key
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    # Buffers the file does not hold (rotary inv_freq) are built, not left empty.
    for name, buf in loaded.named_buffers():
        assert not buf.is_meta and torch.equal(buf, dict(reference.named_buffers())[name]), name
    vlm = loaded.backbone.vlm
    assert vlm.lm_head.weight is vlm.get_input_embeddings().weight
    batch = pre(raw_batch(ds7, size=2))
    assert torch.equal(chunk(loaded, batch), chunk(reference, batch))
    loss, _ = loaded.train().forward(batch)
    loss.backward()  # assigned tensors are trainable parameters
    assert loaded.expert.action_in_proj.weight.grad is not None
    # On CPU the assigned tensors map the file (copy-on-write): saving over the checkpoint it was loaded
    # from must still write the same weights.
    loaded.save_pretrained(tmp_path)
    again = load_file(str(tmp_path / "model.safetensors"))
    for key, tensor in again.items():
        assert torch.equal(tensor, theirs[key]), key


def test_weights_missing_from_the_file_are_initialised_and_named(ds7, tmp_path, caplog):
    policy, pre, post = build(ds7, mode="ki")
    save(policy, pre, post, tmp_path)
    file = tmp_path / "model.safetensors"
    tensors = load_file(str(file))
    dropped = {k for k in tensors if k.startswith("backbone.state_vlm_proj.")}  # a fast_pretrain checkpoint has none
    assert dropped
    save_file({k: v for k, v in tensors.items() if k not in dropped}, str(file), metadata={"format": "pt"})

    with caplog.at_level(logging.WARNING):
        loaded = LabVLAPolicy.from_pretrained(tmp_path)
    proj = loaded.backbone.state_vlm_proj.weight
    assert not proj.is_meta and torch.isfinite(proj).all() and proj.abs().sum() > 0
    assert "backbone.state_vlm_proj.weight" in caplog.text
    torch.testing.assert_close(loaded.expert.action_in_proj.weight, policy.expert.action_in_proj.weight)
    with pytest.raises(LabVLAError, match="state_vlm_proj"):
        LabVLAPolicy.from_pretrained(tmp_path, strict=True)


def test_a_config_that_does_not_match_the_weights_is_named(ds7, tmp_path):
    policy, pre, post = build(ds7, mode="finetune")
    save(policy, pre, post, tmp_path)
    config = policy.config
    config.expert_width = 32  # the weights are 64 wide
    with pytest.raises(LabVLAError, match=r"shape .* config builds"):
        LabVLAPolicy.from_pretrained(tmp_path, config=config)


def test_bfloat16_config_loads_a_float32_file_in_bfloat16(ds7, tmp_path):
    policy, pre, post = build(ds7, mode="finetune")
    save(policy, pre, post, tmp_path)
    config = policy.config
    config.dtype = "bfloat16"
    loaded = LabVLAPolicy.from_pretrained(tmp_path, config=config)
    assert loaded.backbone.vlm.dtype == torch.bfloat16
    torch.testing.assert_close(
        loaded.backbone.vlm.get_input_embeddings().weight, policy.backbone.vlm.get_input_embeddings().weight.bfloat16()
    )
