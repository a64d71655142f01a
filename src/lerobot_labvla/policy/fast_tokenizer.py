"""FAST action tokenizer: DCT over time per action dim -> scale and round -> BPE.

Follows LeRobot's local FAST (`policies/molmoact2/.../action_tokenizer.py:UniversalActionProcessor`),
vendored because that module imports the whole molmoact2 model, and changed in two ways: it is
saved as one JSON file (so LeRobot's Hub upload, which keeps only *.json/*.safetensors, carries
it), and a token sequence that does not decode to a full chunk is reported, never replaced by
zeros.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.fft import dct, idct
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lerobot_labvla.errors import LabVLAError

logger = logging.getLogger(__name__)

FILE_NAME = "fast_tokenizer.json"


@dataclass
class DecodeResult:
    """Decoded chunks `(B, T, D)` and the indices of sequences that were not a valid chunk."""

    actions: np.ndarray
    errors: list[int] = field(default_factory=list)


class FastTokenizer:
    """Encodes `(T, D)` action chunks into variable-length token id lists and back."""

    def __init__(self, bpe: Tokenizer, *, scale: float, min_token: int, horizon: int, action_dim: int):
        self.bpe = bpe
        self.scale = scale
        self.min_token = min_token
        self.horizon = horizon
        self.action_dim = action_dim

    @property
    def vocab_size(self) -> int:
        return self.bpe.get_vocab_size()

    # --- fit / encode / decode -------------------------------------------------------------
    @classmethod
    def fit(cls, chunks: np.ndarray, *, vocab_size: int = 1024, scale: float = 10.0) -> FastTokenizer:
        """Fit on `(N, T, D)` normalized action chunks."""
        if chunks.ndim != 3 or len(chunks) == 0:
            raise LabVLAError(f"FAST fit needs (N, T, D) chunks with N > 0, got shape {chunks.shape}")
        if not np.isfinite(chunks).all():
            raise LabVLAError("FAST fit: the action chunks contain NaN/Inf; clean the dataset (labvla-data clean)")
        coeff = np.around(dct(chunks, axis=1, norm="ortho") * scale).astype(np.int64)
        min_token, max_token = int(coeff.min()), int(coeff.max())
        alphabet_size = max_token - min_token + 1
        if alphabet_size > vocab_size:
            raise LabVLAError(
                f"FAST: {alphabet_size} distinct DCT values exceed --policy.fast_vocab_size={vocab_size}; "
                "raise the vocab size or lower --policy.fast_scale"
            )
        bpe = Tokenizer(models.BPE())
        # No regex split: merges may span the whole coefficient string (better compression).
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            max_token_length=10_000,
        )
        strings = ["".join(map(chr, row.reshape(-1) - min_token)) for row in coeff]
        bpe.train_from_iterator(strings, trainer=trainer)
        return cls(bpe, scale=scale, min_token=min_token, horizon=chunks.shape[1], action_dim=chunks.shape[2])

    def encode(self, chunks: np.ndarray) -> list[list[int]]:
        """`(B, T, D)` -> one token id list per chunk (coefficients outside the fitted range are clipped)."""
        if chunks.shape[1:] != (self.horizon, self.action_dim):
            raise LabVLAError(
                f"FAST encode: chunk shape {chunks.shape[1:]} != fitted ({self.horizon}, {self.action_dim})"
            )
        coeff = np.around(dct(chunks, axis=1, norm="ortho") * self.scale).astype(np.int64)
        coeff = np.maximum(coeff - self.min_token, 0)
        return [self.bpe.encode("".join(map(chr, row.reshape(-1)))).ids for row in coeff]

    def decode(self, tokens: list[list[int]]) -> DecodeResult:
        """Token id lists -> `(B, T, D)` chunks.

        A sequence that decodes to the wrong number of coefficients is recorded in `errors` and
        logged; its chunk keeps the coefficients it has (missing high frequencies are zero,
        extra ones dropped), which is the DCT's own truncation, not a made-up zero chunk.
        """
        n = self.horizon * self.action_dim
        out = np.empty((len(tokens), self.horizon, self.action_dim), dtype=np.float32)
        errors = []
        for i, ids in enumerate(tokens):
            coeff = np.array([ord(c) for c in self.bpe.decode(list(ids))], dtype=np.float64) + self.min_token
            if coeff.size != n:
                errors.append(i)
                logger.warning("FAST decode: sequence %d gave %d coefficients, expected %d", i, coeff.size, n)
                coeff = np.pad(coeff[:n], (0, max(0, n - coeff.size)), constant_values=0.0)
            out[i] = idct(coeff.reshape(self.horizon, self.action_dim) / self.scale, axis=0, norm="ortho")
        return DecodeResult(out, errors)

    # --- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "scale": self.scale,
            "min_token": self.min_token,
            "horizon": self.horizon,
            "action_dim": self.action_dim,
            "bpe": json.loads(self.bpe.to_str()),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FastTokenizer:
        bpe = Tokenizer.from_str(json.dumps(d["bpe"]))
        return cls(bpe, scale=d["scale"], min_token=d["min_token"], horizon=d["horizon"], action_dim=d["action_dim"])

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FILE_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> FastTokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise LabVLAError(f"cannot read the FAST tokenizer at {path}: {exc}") from exc

    def round_trip_error(self, chunks: np.ndarray) -> tuple[float, int]:
        """Mean absolute error of encode->decode on `(N, T, D)` chunks, and the number of decode errors."""
        result = self.decode(self.encode(chunks))
        return float(np.abs(result.actions - chunks).mean()), len(result.errors)
