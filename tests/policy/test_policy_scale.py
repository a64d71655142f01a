"""The full-size configuration and the shipped configs (`make demo` is tested in tests/test_demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lerobot.configs.types import FeatureType, PolicyFeature

from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

REPO = Path(__file__).resolve().parents[2]


def full_size_config(**kw) -> LabVLAConfig:
    return LabVLAConfig(
        backbone="Qwen/Qwen3-VL-4B-Instruct",
        random_init_backbone=True,  # the architecture without the download (the Hub is offline here)
        tokenizer="tiny",
        input_features={
            "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)),
            "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)),
            "observation.state": PolicyFeature(FeatureType.STATE, (8,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))},
        **kw,
    )


def test_4b_configuration_has_the_expected_size():
    with torch.device("meta"):
        policy = LabVLAPolicy(full_size_config(device="cpu", mode="finetune"))
    backbone = sum(p.numel() for p in policy.backbone.parameters())
    expert = sum(p.numel() for p in policy.expert.parameters())
    print(f"\n4B configuration: backbone {backbone / 1e9:.3f}B + expert {expert / 1e6:.1f}M = {(backbone + expert) / 1e9:.3f}B")
    assert 4.3e9 < backbone < 4.5e9
    dit = sum(p.numel() for p in policy.expert.dit_action_head.parameters())
    assert len(policy.expert.blocks) == 18 and policy.expert.state_proj.out_features == 1024
    assert [b.is_self_attention for b in policy.expert.blocks[:4]] == [False, True, False, True]
    assert 267e6 < dit < 269e6  # the official DiTActionHead: "~268M params with default config"
    assert 0.26e9 < expert < 0.28e9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_4b_configuration_trains_one_step_and_samples_on_gpu():
    policy = LabVLAPolicy(full_size_config(device="cuda", mode="finetune", dtype="bfloat16", gradient_checkpointing=True)).cuda()
    n = sum(p.numel() for p in policy.parameters())
    print(f"\n4B configuration on GPU: {n / 1e9:.3f}B parameters")
    batch = {
        "observation.images.front": torch.rand(2, 3, 224, 224, device="cuda"),
        "observation.images.wrist": torch.rand(2, 3, 224, 224, device="cuda"),
        "observation.state": torch.rand(2, 8, device="cuda") * 2 - 1,
        "action": torch.rand(2, 10, 7, device="cuda") * 2 - 1,
        "prompt": ["Task: pick up the beaker, State: 1 2 3 4 5 6 7 8;\nAction: "] * 2,
    }
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, metrics = policy.forward(batch)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and metrics["fm_loss"] > 0
    policy.eval()
    chunk = policy.predict_action_chunk(batch)
    assert chunk.shape == (2, 10, 7) and torch.isfinite(chunk).all()


@pytest.mark.parametrize("name", ["tiny", "4b-fast", "4b-ki", "4b-ft"])
def test_shipped_policy_configs_are_valid(name):
    data = yaml.safe_load((REPO / "configs" / "policy" / f"{name}.yaml").read_text())
    fields = {k: v for k, v in data["policy"].items() if k != "type"}
    cfg = LabVLAConfig(**fields)
    cfg.validate_options()
    assert data["policy"]["type"] == "labvla"
    if name.startswith("4b"):
        assert (cfg.expert_layers, cfg.expert_width, cfg.expert_heads, cfg.dtype) == (18, 1024, 8, "bfloat16")
        assert cfg.mode == {"4b-fast": "fast_pretrain", "4b-ki": "ki", "4b-ft": "finetune"}[name]
