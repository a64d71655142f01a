"""The DiT action expert of the official LabVLA (zjunlp/LabVLA `dit_action_head.py`), in plain PyTorch.

Module and parameter names follow the official checkpoint (diffusers' `Attention`/`FeedForward`
layout: `attn1.to_q`, `ff.net.0.proj`, ...), so converting it is a prefix rename.

Flow convention (official): t = 0 is noise, t = 1 the clean chunk, `x_t = t*a + (1-t)*eps`, and the
expert predicts the velocity `a - eps`. Each block:
    h = AdaLN(x, t) + sinusoid positions -> attention (cross to the VLM prefix in even blocks,
    self over [state, actions] in odd blocks when `interleave_self_attention`) -> + x
    -> LayerNorm -> GELU-tanh MLP -> + residual
and the output is `LayerNorm(x)*(1+scale)+shift` from `proj_out_1` (shift first, as the official
checkpoints were trained).

Two things the official head does not have, both inert when unused (no padding, one context):
- `action_mask`: padded chunk steps (LeRobot's `action_is_pad`) are removed from the self-attention
  keys, so the real steps never read them. In the official code the noised padded steps are
  self-attention inputs, so the FM loss of the real steps depends on the (arbitrary) action values
  at padded steps; with the mask it does not, and a chunk without padding is computed exactly as
  the official one.
- a list of contexts (official `dit_layerwise_vlm_features`): cross-attention block i reads the
  i-th of the VLM's deepest hidden states instead of all reading the last one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TIME_CHANNELS = 256
MAX_POSITIONS = 512


def timestep_embedding(t: Tensor, dim: int = TIME_CHANNELS, max_period: float = 10_000.0) -> Tensor:
    """diffusers `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=1)` of raw t: `(B,)` -> `(B, dim)`."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    args = t.float()[:, None] * torch.exp(exponent)[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sinusoid_positions(length: int, dim: int) -> Tensor:
    """diffusers `SinusoidalPositionalEmbedding.pe`: `(1, length, dim)`, sin on even and cos on odd channels."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.linear_1 = nn.Linear(TIME_CHANNELS, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, t: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(timestep_embedding(t).to(self.linear_1.weight.dtype))))


class TimestepEncoder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(width)

    def forward(self, t: Tensor) -> Tensor:
        return self.timestep_embedder(t)


class AdaLayerNorm(nn.Module):
    """`LayerNorm(x) * (1 + scale) + shift`, `(scale, shift) = Linear(SiLU(temb))` (scale first)."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.linear = nn.Linear(width, 2 * width)
        self.norm = nn.LayerNorm(width, eps=eps, elementwise_affine=False)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class SinusoidalPositions(nn.Module):
    def __init__(self, width: int, max_length: int):
        super().__init__()
        self.register_buffer("pe", sinusoid_positions(max_length, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class Attention(nn.Module):
    """diffusers `Attention` (SDPA processor): `to_q/to_k/to_v` with bias, `to_out.0`."""

    def __init__(self, width: int, heads: int, head_dim: int, kv_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(width, inner)
        self.to_k = nn.Linear(kv_dim, inner)
        self.to_v = nn.Linear(kv_dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, width)])

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        kv = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(kv)), self._split(self.to_v(kv))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out[0](y.transpose(1, 2).flatten(2))


class GELUProj(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(width, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """diffusers `FeedForward(activation_fn="gelu-approximate")`: `net.0.proj` -> GELU-tanh -> `net.2`."""

    def __init__(self, width: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.ModuleList([GELUProj(width, mult * width), nn.Dropout(dropout), nn.Linear(mult * width, width)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class DiTBlock(nn.Module):
    """One block; `is_self_attention` blocks attend over the expert's own tokens, the others to the context."""

    def __init__(self, width: int, heads: int, head_dim: int, *, is_self_attention: bool, norm_eps: float = 1e-5):
        super().__init__()
        self.is_self_attention = is_self_attention
        self.norm1 = AdaLayerNorm(width, norm_eps)
        self.pos_embed = SinusoidalPositions(width, MAX_POSITIONS)
        self.attn1 = Attention(width, heads, head_dim, kv_dim=width)
        self.norm3 = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.ff = FeedForward(width)

    def forward(
        self, x: Tensor, temb: Tensor, context: Tensor | None, context_mask: Tensor | None, self_mask: Tensor | None = None
    ) -> Tensor:
        h = self.pos_embed(self.norm1(x, temb))
        if self.is_self_attention:
            x = x + self.attn1(h, mask=self_mask)
        else:
            x = x + self.attn1(h, context=context, mask=context_mask)
        return x + self.ff(self.norm3(x))


class DiTActionHead(nn.Module):
    """`(tokens (B, N, W), context (B, L, W) or one per cross block, t (B,), context_mask (B, L) bool,
    token_mask (B, N) bool)` -> `(B, N, W)`."""

    def __init__(self, *, layers: int, heads: int, head_dim: int, interleave_self_attention: bool):
        super().__init__()
        width = heads * head_dim
        self.timestep_encoder = TimestepEncoder(width)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(width, heads, head_dim, is_self_attention=interleave_self_attention and i % 2 == 1)
            for i in range(layers)
        )
        self.norm_out = nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(width, 2 * width)

    @property
    def num_cross_attention_blocks(self) -> int:
        return sum(not block.is_self_attention for block in self.transformer_blocks)

    def forward(
        self,
        tokens: Tensor,
        context: Tensor | list[Tensor],
        t: Tensor,
        context_mask: Tensor | None = None,
        token_mask: Tensor | None = None,
    ) -> Tensor:
        temb = self.timestep_encoder(t)
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        self_mask = None if token_mask is None else token_mask.bool()[:, None, None, :]
        if isinstance(context, (list, tuple)) and len(context) != self.num_cross_attention_blocks:
            raise ValueError(f"{len(context)} layerwise contexts for {self.num_cross_attention_blocks} cross-attention blocks")
        cross = 0
        for block in self.transformer_blocks:
            if block.is_self_attention:
                tokens = block(tokens, temb, None, None, self_mask)
                continue
            block_context = context[cross] if isinstance(context, (list, tuple)) else context
            cross += 1
            tokens = block(tokens, temb, block_context, mask)
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        return self.norm_out(tokens) * (1 + scale[:, None]) + shift[:, None]


class ActionExpert(nn.Module):
    """Projections around the DiT: `(x_t (B, T, A), t (B,), state (B, S), vlm (B, L, H), mask (B, L))` -> `(B, T, A)`."""

    def __init__(
        self,
        *,
        action_dim: int,
        state_dim: int,
        context_dim: int,
        layers: int,
        heads: int,
        head_dim: int,
        interleave_self_attention: bool = True,
    ):
        super().__init__()
        width = heads * head_dim
        self.proj_vlm_to_dit = nn.Linear(context_dim, width) if context_dim != width else nn.Identity()
        self.state_proj = nn.Linear(state_dim, width)
        self.action_in_proj = nn.Linear(action_dim, width)
        self.action_out_proj = nn.Linear(width, action_dim)
        self.dit_action_head = DiTActionHead(
            layers=layers, heads=heads, head_dim=head_dim, interleave_self_attention=interleave_self_attention
        )

    @property
    def blocks(self) -> nn.ModuleList:
        return self.dit_action_head.transformer_blocks

    def project_context(self, vlm_hidden: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
        """VLM hidden state `(B, L, H)` (or one per cross-attention block, layerwise) -> DiT width, with
        the one shared `proj_vlm_to_dit` (official); computed once per chunk."""
        if isinstance(vlm_hidden, (list, tuple)):
            return [self.project_context(h) for h in vlm_hidden]
        return self.proj_vlm_to_dit(vlm_hidden.to(self.state_proj.weight.dtype))

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        state: Tensor,
        context: Tensor | list[Tensor],
        context_mask: Tensor | None,
        action_mask: Tensor | None = None,
    ) -> Tensor:
        """`action_mask` `(B, T)` bool, True on real chunk steps: padded steps leave the self-attention keys."""
        dtype = self.state_proj.weight.dtype
        tokens = torch.cat([self.state_proj(state.to(dtype))[:, None], self.action_in_proj(x_t.to(dtype))], dim=1)
        token_mask = None
        if action_mask is not None:
            token_mask = torch.cat([action_mask.new_ones(action_mask.shape[0], 1), action_mask.bool()], dim=1)
        out = self.dit_action_head(tokens, context, t, context_mask, token_mask)
        return self.action_out_proj(out[:, -x_t.shape[1] :]).float()
