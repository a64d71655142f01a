"""The policy's parts on their own: FAST tokenizer, tiny backbone files, image patches, DiT expert."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.backbone import TINY_TOKENIZER_DIR, build_tiny_tokenizer, build_vlm, patchify
from lerobot_labvla.policy.fast_tokenizer import FastTokenizer


def smooth_chunks(n: int, t: int = 10, d: int = 7, pad_to: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    time = np.linspace(0, 1, t)[None, :, None]
    chunks = rng.uniform(0.2, 1, (n, 1, d)) * np.sin(2 * np.pi * time * rng.uniform(0.5, 2, (n, 1, d)) + rng.uniform(0, 3, (n, 1, d)))
    return np.pad(chunks, ((0, 0), (0, 0), (0, pad_to - d))).astype(np.float32)


def test_fast_round_trip_error_on_held_out_chunks_is_small():
    train, held = smooth_chunks(400, seed=0), smooth_chunks(100, seed=1)
    fast = FastTokenizer.fit(train, vocab_size=512, scale=10.0)
    mae, errors = fast.round_trip_error(held)
    assert errors == 0
    assert mae < 0.02  # rounding DCT coefficients to 1/scale bounds the error
    lengths = [len(s) for s in fast.encode(held)]
    assert np.mean(lengths) < 10 * 32 / 4  # BPE compresses the 320 coefficients at least 4x


def test_fast_counts_undecodable_sequences_instead_of_zeroing_them(tmp_path):
    chunks = smooth_chunks(200)
    fast = FastTokenizer.fit(chunks, vocab_size=512)
    ids = fast.encode(chunks[:2])
    result = fast.decode([ids[0][: len(ids[0]) // 2], ids[1]])
    assert result.errors == [0]
    assert np.abs(result.actions[0]).sum() > 0  # the prefix it had is kept, not replaced by zeros
    np.testing.assert_allclose(result.actions[1], chunks[1], atol=0.1)  # rounding to 1/scale per coefficient
    fast.save(tmp_path)
    again = FastTokenizer.load(tmp_path)
    assert again.encode(chunks[:5]) == fast.encode(chunks[:5])


def test_fast_fit_rejects_nan_and_too_small_vocab():
    chunks = smooth_chunks(50)
    chunks[3, 2, 1] = np.nan
    with pytest.raises(LabVLAError, match="NaN"):
        FastTokenizer.fit(chunks)
    with pytest.raises(LabVLAError, match="fast_vocab_size"):
        FastTokenizer.fit(smooth_chunks(50) * 100, vocab_size=64)


def test_shipped_tiny_tokenizer_equals_a_fresh_build():
    from transformers import AutoTokenizer

    shipped = AutoTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR))
    fresh = build_tiny_tokenizer()
    text = "Task: pour 50 ml into the flask, State: 12 255 0;\nAction: <|im_end|>"
    assert shipped(text)["input_ids"] == fresh(text)["input_ids"]
    assert shipped.decode(shipped(text)["input_ids"]) == text


def test_tiny_backbone_builds_offline_and_small():
    vlm, cfg = build_vlm("tiny", None, load_weights=True, attn_implementation="sdpa", dtype=torch.float32)
    assert cfg["model_type"] == "qwen3_vl"
    assert sum(p.numel() for p in vlm.parameters()) < 1_000_000


def test_patchify_matches_transformers_qwen_image_processor():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        do_resize=False, do_rescale=False,
    )
    images = torch.rand(3, 3, 64, 64)
    ref = processor(images=list(images), return_tensors="pt")
    ours = patchify(images, size=64, patch=16, temporal=2, merge=2)
    assert ours.shape == ref["pixel_values"].shape
    torch.testing.assert_close(ours, ref["pixel_values"])
