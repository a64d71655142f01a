"""FAST action tokenizer: DCT over time per action dim -> scale and round -> BPE.

Follows LeRobot's local FAST (`policies/molmoact2/.../action_tokenizer.py:UniversalActionProcessor`),
vendored because that module imports the whole molmoact2 model, and changed in two ways: it is
saved as one JSON file (so LeRobot's Hub upload, which keeps only *.json/*.safetensors, carries
it), and a token sequence that does not decode to a full chunk is reported, never replaced by
zeros.
Decoding is bounded: coefficients outside the fitted range (an invalid byte sequence decodes to
U+FFFD, i.e. a coefficient of 65533) are clipped to it and the decoded actions to the fitted
per-dimension range, and every such sequence is reported, so a bad generation can never become
a large action.
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
    """Decoded chunks `(B, T, D)`, the indices of sequences that were not a valid chunk and why."""

    actions: np.ndarray
    errors: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)


class FastTokenizer:
    """Encodes `(T, D)` action chunks into variable-length token id lists and back."""

    def __init__(
        self,
        bpe: Tokenizer,
        *,
        scale: float,
        min_token: int,
        horizon: int,
        action_dim: int,
        max_token: int | None = None,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
    ):
        self.bpe = bpe
        self.scale = scale
        self.min_token = min_token
        # The fitted coefficient range and per-dim action range bound what `decode` may return.
        # Tokenizers saved before they were recorded fall back to the widest range BPE can encode.
        self.max_token = max_token
        self.action_low = None if action_low is None else np.asarray(action_low, dtype=np.float32)
        self.action_high = None if action_high is None else np.asarray(action_high, dtype=np.float32)
        self.horizon = horizon
        self.action_dim = action_dim
        self.truncated = 0  # target sequences cut at `max_tokens` by `encode_targets`

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
        return cls(
            bpe,
            scale=scale,
            min_token=min_token,
            max_token=max_token,
            action_low=chunks.min(axis=(0, 1)),
            action_high=chunks.max(axis=(0, 1)),
            horizon=chunks.shape[1],
            action_dim=chunks.shape[2],
        )

    def encode(self, chunks: np.ndarray) -> list[list[int]]:
        """`(B, T, D)` -> one token id list per chunk (coefficients outside the fitted range are clipped)."""
        if chunks.shape[1:] != (self.horizon, self.action_dim):
            raise LabVLAError(
                f"FAST encode: chunk shape {chunks.shape[1:]} != fitted ({self.horizon}, {self.action_dim})"
            )
        coeff = np.around(dct(chunks, axis=1, norm="ortho") * self.scale).astype(np.int64)
        coeff = np.clip(coeff - self.min_token, 0, self._max_symbol)
        return [self.bpe.encode("".join(map(chr, row.reshape(-1)))).ids for row in coeff]

    def encode_targets(self, chunks: np.ndarray, max_tokens: int) -> list[list[int]]:
        """`encode`, each sequence cut to `max_tokens`; cuts are counted in `self.truncated` and logged.

        A cut sequence no longer decodes to its chunk, so a training set that needs many is a
        sign to raise `--policy.max_fast_tokens` or lower `--policy.fast_scale`.
        """
        ids = self.encode(chunks)
        cut = [len(seq) for seq in ids if len(seq) > max_tokens]
        if cut:
            before = self.truncated
            self.truncated += len(cut)
            # Log the first cut and then at each doubling, so a long run is not flooded.
            if before == 0 or (self.truncated).bit_length() > before.bit_length():
                logger.warning(
                    "FAST: %d of %d target sequences longer than --policy.max_fast_tokens=%d (up to %d tokens) were "
                    "truncated (%d so far); raise max_fast_tokens or lower fast_scale",
                    len(cut), len(ids), max_tokens, max(cut), self.truncated,
                )
        return [seq[:max_tokens] for seq in ids]

    @property
    def _max_symbol(self) -> int:
        """Largest coefficient symbol (coefficient - min_token) the fitted tokenizer can produce."""
        return 0x10FFFF if self.max_token is None else self.max_token - self.min_token

    def decode(self, tokens: list[list[int]]) -> DecodeResult:
        """Token id lists -> `(B, T, D)` chunks, bounded to what the tokenizer was fitted on.

        A sequence that decodes to the wrong number of coefficients, or to coefficients outside
        the fitted range (invalid byte sequences decode to U+FFFD = 65533), is recorded in
        `errors` with its reason and logged. Its chunk keeps the coefficients it has (missing
        high frequencies are zero, extra ones dropped: the DCT's own truncation, not a made-up
        zero chunk) with out-of-range ones clipped, and every decoded action is clipped to the
        fitted per-dimension range.
        """
        n = self.horizon * self.action_dim
        out = np.empty((len(tokens), self.horizon, self.action_dim), dtype=np.float32)
        errors, reasons = [], {}
        for i, ids in enumerate(tokens):
            symbols = np.array([ord(c) for c in self.bpe.decode(list(ids))], dtype=np.float64)
            why = []
            bad = symbols > self._max_symbol
            if bad.any():
                why.append(f"{int(bad.sum())} coefficients outside the fitted range (clipped)")
                symbols = np.minimum(symbols, self._max_symbol)
            coeff = symbols + self.min_token
            if coeff.size != n:
                why.append(f"{coeff.size} coefficients, expected {n}")
                coeff = np.pad(coeff[:n], (0, max(0, n - coeff.size)), constant_values=0.0)
            if why:
                errors.append(i)
                reasons[i] = "; ".join(why)
                logger.warning("FAST decode: sequence %d: %s", i, reasons[i])
            out[i] = idct(coeff.reshape(self.horizon, self.action_dim) / self.scale, axis=0, norm="ortho")
        if self.action_low is not None:
            np.clip(out, self.action_low, self.action_high, out=out)
        return DecodeResult(out, errors, reasons)

    # --- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "scale": self.scale,
            "min_token": self.min_token,
            "horizon": self.horizon,
            "action_dim": self.action_dim,
            "max_token": self.max_token,
            "action_low": None if self.action_low is None else self.action_low.tolist(),
            "action_high": None if self.action_high is None else self.action_high.tolist(),
            "bpe": json.loads(self.bpe.to_str()),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FastTokenizer:
        bpe = Tokenizer.from_str(json.dumps(d["bpe"]))
        return cls(
            bpe,
            scale=d["scale"],
            min_token=d["min_token"],
            max_token=d.get("max_token"),
            action_low=d.get("action_low"),
            action_high=d.get("action_high"),
            horizon=d["horizon"],
            action_dim=d["action_dim"],
        )

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
