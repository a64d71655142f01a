"""The FLOP count and MFU that benchmarks/policy_speed.py reports for issue 18's GPU row, checked on the tiny
KI policy on CPU (the GPU row itself needs a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import policy_speed  # noqa: E402

from lerobot_labvla.policy.configuration_labvla import LabVLAConfig  # noqa: E402
from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy  # noqa: E402

SIZE = 64


def tiny_ki():
    """The tiny labvla in `ki` mode with the cameras, state and action of policy_speed's full-size rows."""
    features = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, SIZE, SIZE)) for c in policy_speed.CAMERAS}
    features["observation.state"] = PolicyFeature(FeatureType.STATE, (policy_speed.STATE_DIM,))
    cfg = LabVLAConfig(backbone="tiny", device="cpu", mode="ki", image_size=SIZE, expert_layers=2, expert_width=64,
                       expert_heads=4, chunk_size=policy_speed.CHUNK, input_features=features,
                       output_features={"action": PolicyFeature(FeatureType.ACTION, (policy_speed.ACTION_DIM,))})
    torch.manual_seed(0)
    policy = LabVLAPolicy(cfg)
    policy_speed.fit_synthetic_fast(policy, n=500)
    return policy


def batch(b: int) -> dict:
    return policy_speed.gpu_batch(b, device="cpu", image_size=SIZE)  # the benchmark's own batch, small, on CPU


def test_step_flops_count_forward_and_backward_and_scale_with_the_batch():
    from torch.utils.flop_counter import FlopCounterMode

    policy = tiny_ki()
    two, four = policy_speed.step_flops(policy, batch(2)), policy_speed.step_flops(policy, batch(4))
    assert 1.9 < four / two < 2.1  # per-sample work: FLOPs grow with the batch
    assert all(p.grad is None for p in policy.parameters())  # counting leaves no gradients behind
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        policy.forward(batch(2))
    # backward costs about twice the forward (input and weight grads), less where no input grad is needed
    assert 2.0 < two / fwd.get_total_flops() < 3.2, two / fwd.get_total_flops()


def test_mfu_and_peak_lookup():
    assert policy_speed.peak_tflops("NVIDIA H200") == 989.0
    assert policy_speed.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert policy_speed.peak_tflops("Some New GPU") is None
    assert policy_speed.peak_tflops("NVIDIA H200", override=500.0) == 500.0
    assert policy_speed.mfu(int(494.5e12), 1.0, 989.0) == pytest.approx(0.5)
    assert policy_speed.mfu(int(1e12), 2.0, 1.0) == pytest.approx(0.5)  # FLOPs per step / step time / peak
    assert policy_speed.mfu(int(1e12), 1.0, None) is None
