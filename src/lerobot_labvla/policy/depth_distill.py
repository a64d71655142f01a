"""Depth distillation (`--policy.depth_distill=true`), after LingBot-VLA's depth alignment.

What we took from LingBot-VLA (GitHub Robbyant/lingbot-vla, `modeling_lingbot_vla.py`,
`FlowMatching.init_depth_heads` / `depth_emb_forward` / `_emb_loss`, align mode `query`):
learnable query tokens placed in the VLM's sequence, their last hidden states mapped by a small
projection to depth features of a frozen depth encoder, and a smooth-L1 loss to those features
(targets detached), weighted (LingBot: `depth_loss_weight`).

What we do differently, and why:
- The queries go at the very end of the sequence (after the prompt and the FAST tokens). With
  Qwen's causal attention no other token attends to them, so the FAST logits and the states the
  expert reads are exactly those without distillation, training and inference see the same
  sequence, and inference drops the queries at no cost. The loss still shapes the backbone: its
  gradient reaches the image and text tokens through the queries' attention. (The queries also see
  the FAST tokens; those carry the actions, not the depth, so they cannot answer for the images.)
- Targets: `depth_grid**2` queries per depth stream, query i predicting the features of patch i of
  a `depth_grid x depth_grid` split of the depth map. The built-in encoder is parameter-free (each
  patch's depth pooled to 4x4: its coarse shape); `--policy.depth_encoder=<file>` takes a
  TorchScript depth model at a local path instead (`(N, 1, H, W) -> (N, D, h, w)`, pooled to the grid).
- The depth stream is the dataset's `observation.depth.<camera>` features (float32 `(H, W)` or
  `(H, W, 1)`); LeRobot normalizes them like other non-image inputs (MEAN_STD). Without such a
  stream the option is off, with one log line saying so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from lerobot.configs.types import FeatureType
from torch import Tensor, nn

from lerobot_labvla.errors import LabVLAError

logger = logging.getLogger(__name__)

DEPTH_PREFIX = "observation.depth"
POOL = 4  # the built-in encoder's sub-grid per patch: 4x4 = 16 features


def depth_keys(input_features: dict) -> list[str]:
    """The dataset's depth streams among the policy's input features."""
    return sorted(k for k in input_features if k == DEPTH_PREFIX or k.startswith(DEPTH_PREFIX + "."))


def as_maps(depth: Tensor) -> Tensor:
    """A batch of depth maps `(B, H, W)`, `(B, H, W, 1)` or `(B, 1, H, W)` -> `(B, 1, H, W)` float."""
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    elif depth.ndim == 4 and depth.shape[1] == 1:
        depth = depth[:, 0]
    if depth.ndim != 3:
        raise LabVLAError(f"a depth stream must be (B, H, W) or (B, H, W, 1), got {tuple(depth.shape)}")
    return depth[:, None].float()


class PooledDepthEncoder(nn.Module):
    """Parameter-free targets: `(N, 1, H, W)` -> `(N, grid**2, POOL**2)`, each patch's depth at 4x4."""

    def __init__(self, grid: int):
        super().__init__()
        self.grid = grid

    def forward(self, depth: Tensor) -> Tensor:
        n, g = depth.shape[0], self.grid
        x = F.adaptive_avg_pool2d(depth, (g * POOL, g * POOL))
        return x.view(n, g, POOL, g, POOL).permute(0, 1, 3, 2, 4).reshape(n, g * g, POOL * POOL)


class ScriptedDepthEncoder(nn.Module):
    """A frozen TorchScript depth model at a local path: `(N, 1, H, W)` -> `(N, D, h, w)`, pooled to `(N, grid**2, D)`."""

    def __init__(self, path: str | Path, grid: int):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise LabVLAError(
                f"--policy.depth_encoder={str(path)!r} is not a file; give a TorchScript depth model "
                "((N, 1, H, W) -> (N, D, h, w)), or leave it unset for the built-in pooled-depth encoder"
            )
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.grid = grid

    def forward(self, depth: Tensor) -> Tensor:
        feats = self.model(depth)
        if feats.ndim != 4:
            raise LabVLAError(f"the depth encoder returned {tuple(feats.shape)}; expected (N, D, h, w)")
        return F.adaptive_avg_pool2d(feats.float(), (self.grid, self.grid)).flatten(2).transpose(1, 2)


class DepthDistill(nn.Module):
    """Query tokens `(Q, H)` for the backbone, a projection of their outputs, and the loss to depth features."""

    def __init__(self, hidden_size: int, keys: list[str], *, grid: int, feature_dim: int, encoder: str | None,
                 millimetre_keys: tuple[str, ...] = ()):
        super().__init__()
        self.keys = keys
        # Depth-map videos (VISUAL features, `generate --depth`) decode in LeRobot's unit, millimetres, and
        # are not normalized (IDENTITY for VISUAL): scaled to metres so the targets are O(1) like the
        # MEAN_STD-normalized float streams.
        self.millimetre_keys = frozenset(millimetre_keys)
        self.tokens_per_stream = grid * grid
        self.queries = nn.Parameter(torch.randn(len(keys) * self.tokens_per_stream, hidden_size) * 0.02)
        self.proj = nn.Sequential(nn.Linear(hidden_size, 2 * hidden_size), nn.GELU(), nn.Linear(2 * hidden_size, feature_dim))
        # The target encoder is frozen and not part of the checkpoint (a plain attribute, built lazily:
        # inference never needs it).
        self._encoder_source, self._grid = encoder, grid
        self._encoder: list[nn.Module] = []

    @property
    def encoder(self) -> nn.Module:
        if not self._encoder:
            self._encoder.append(make_encoder(self._encoder_source, self._grid))
        return self._encoder[0]

    def has_depth(self, batch: dict) -> bool:
        return all(k in batch for k in self.keys)

    def append_queries(self, embeds: Tensor | None, mask: Tensor | None, batch_size: int) -> tuple[Tensor, Tensor]:
        """Append the queries and one masked slot to the tokens after the prefix (`fast_embeds`).

        The backbone returns hidden states shifted by one (position p predicts token p + 1), so the
        last query's own output needs the extra slot after it.
        """
        device = self.queries.device
        q = self.queries[None].expand(batch_size, -1, -1)
        extra = torch.cat([q, q.new_zeros(batch_size, 1, q.shape[-1])], dim=1)
        extra_mask = torch.ones(batch_size, extra.shape[1], dtype=torch.bool, device=device)
        extra_mask[:, -1] = False
        if embeds is None:
            return extra, extra_mask
        return torch.cat([embeds, extra.to(embeds.dtype)], dim=1), torch.cat([mask.bool(), extra_mask], dim=1)

    def split(self, shifted: Tensor, n_fast: int) -> tuple[Tensor | None, Tensor]:
        """`Prefix.fast_hidden` of `append_queries`' sequence -> (the FAST part or None, query outputs `(B, Q, H)`)."""
        n_q = self.queries.shape[0]
        fast = shifted[:, :n_fast] if n_fast else None
        return fast, shifted[:, n_fast + 1 : n_fast + 1 + n_q]

    @torch.no_grad()
    def targets(self, batch: dict) -> Tensor:
        """Depth features `(B, Q, D)` of every stream, in query order."""
        maps = [as_maps(batch[k]) * (1e-3 if k in self.millimetre_keys else 1.0) for k in self.keys]
        encoder = self.encoder.to(maps[0].device)
        return torch.cat([encoder(m) for m in maps], dim=1)

    def loss(self, query_hidden: Tensor, batch: dict) -> Tensor:
        """Per-sample smooth-L1 to the depth features `(B,)` (LingBot's `query` alignment loss)."""
        pred = self.proj(query_hidden.to(self.proj[0].weight.dtype)).float()
        target = self.targets(batch)
        if target.shape != pred.shape:
            raise LabVLAError(f"depth targets {tuple(target.shape)} do not match the queries' {tuple(pred.shape)}")
        return F.smooth_l1_loss(pred, target, reduction="none").mean(dim=(1, 2))


def make_encoder(source: str | None, grid: int) -> nn.Module:
    return PooledDepthEncoder(grid) if source is None else ScriptedDepthEncoder(source, grid)


def build_depth_distill(config, hidden_size: int) -> DepthDistill | None:
    """The module when `--policy.depth_distill=true` and the dataset has a depth stream, else None (said once)."""
    if not config.depth_distill:
        return None
    keys = depth_keys(config.input_features)
    if not keys:
        logger.warning(
            "--policy.depth_distill=true but the dataset has no depth stream (a feature named %s.<camera>); "
            "depth distillation is off",
            DEPTH_PREFIX,
        )
        return None
    if config.depth_feature_dim is None:
        probe = make_encoder(config.depth_encoder, config.depth_grid)(torch.zeros(1, 1, 64, 64))
        config.depth_feature_dim = int(probe.shape[-1])  # saved in config.json: loading needs no encoder
    logger.info("depth distillation on %s: %d query tokens, loss weight %s", keys, len(keys) * config.depth_grid**2, config.depth_loss_weight)
    videos = tuple(k for k in keys if config.input_features[k].type is FeatureType.VISUAL)
    return DepthDistill(hidden_size, keys, grid=config.depth_grid, feature_dim=config.depth_feature_dim,
                        encoder=config.depth_encoder, millimetre_keys=videos)
