"""FAST decoding never turns a bad token sequence into a large action, and cut targets are counted."""

from __future__ import annotations

import logging

import numpy as np
from tokenizers import pre_tokenizers

from lerobot_labvla.policy.fast_tokenizer import FastTokenizer


def smooth_chunks(n: int, t: int = 10, d: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    time = np.linspace(0, 1, t)[None, :, None]
    chunks = rng.uniform(0.2, 0.9, (n, 1, d)) * np.sin(2 * np.pi * time * rng.uniform(0.5, 2, (n, 1, d)) + rng.uniform(0, 3, (n, 1, d)))
    return chunks.astype(np.float32)


def lone_byte_token(fast: FastTokenizer) -> int:
    """The BPE id of a raw byte that is not valid UTF-8 on its own (a continuation byte, e.g. 0x80)."""
    from tokenizers import decoders

    vocab = fast.bpe.get_vocab()
    return next(vocab[c] for c in sorted(pre_tokenizers.ByteLevel.alphabet()) if decoders.ByteLevel().decode([c]) == "\ufffd")


def test_invalid_byte_sequences_decode_to_bounded_actions_and_are_reported(tmp_path):
    chunks = smooth_chunks(300)
    fast = FastTokenizer.fit(chunks, vocab_size=512)
    n = fast.horizon * fast.action_dim
    lone = [lone_byte_token(fast)] * n  # right length, every byte invalid UTF-8 -> U+FFFD (65533)
    good = fast.encode(chunks[:1])[0]
    result = fast.decode([lone, good])
    assert result.errors == [0]
    assert "outside the fitted range" in result.reasons[0]
    bound = np.abs(chunks).max(axis=(0, 1))
    assert (np.abs(result.actions[0]) <= bound + 1e-6).all()  # unbounded, these were ~2,900
    np.testing.assert_allclose(result.actions[1], chunks[0], atol=0.1)
    # The bounds travel with the saved tokenizer.
    again = FastTokenizer.load(fast.save(tmp_path))
    assert again.decode([lone]).errors == [0]
    assert (np.abs(again.decode([lone]).actions[0]) <= bound + 1e-6).all()


def test_in_range_but_wrong_length_sequences_are_reported():
    fast = FastTokenizer.fit(smooth_chunks(300), vocab_size=512)
    ids = fast.encode(smooth_chunks(2, seed=3))
    result = fast.decode([ids[0] + ids[1], ids[1][:3]])
    assert result.errors == [0, 1]
    assert all("expected 70" in r for r in result.reasons.values())


def test_targets_cut_at_max_tokens_are_counted_and_logged(caplog):
    chunks = smooth_chunks(300)
    fast = FastTokenizer.fit(chunks, vocab_size=512)
    lengths = [len(s) for s in fast.encode(chunks[:8])]
    limit = sorted(lengths)[4]
    with caplog.at_level(logging.WARNING, logger="lerobot_labvla.policy.fast_tokenizer"):
        ids = fast.encode_targets(chunks[:8], limit)
    n_cut = sum(n > limit for n in lengths)
    assert n_cut > 0 and fast.truncated == n_cut
    assert max(map(len, ids)) == limit
    assert f"{n_cut} of 8 target sequences longer than --policy.max_fast_tokens={limit}" in caplog.text
    fast.encode_targets(chunks[:8], max(lengths))
    assert fast.truncated == n_cut
