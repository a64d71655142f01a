"""The DiT action expert: denoises an action chunk while cross-attending to the VLM's states.

Each block: adaLN(t) -> self-attention over [state token, action tokens] -> cross-attention to
the projected VLM prefix -> adaLN(t) -> MLP. The prefix's per-layer keys/values are computed once
per chunk (`context_kv`), so each of the Euler steps costs only the expert's own tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of flow time `t` in [0, 1]: `(B,)` -> `(B, dim)`."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention on SDPA; keys/values may come from a precomputed context."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor] | None = None, mask: Tensor | None = None) -> Tensor:
        k, v = self.project_kv(x) if kv is None else kv
        q = self.split(self.q(x))
        y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        return self.out(y.transpose(1, 2).flatten(2))


class DiTBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(width, heads)
        self.norm_cross = nn.LayerNorm(width, eps=1e-6)
        self.cross_attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor, ctx_kv: tuple[Tensor, Tensor], ctx_mask: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.self_attn(modulate(self.norm1(x), shift1, scale1))
        x = x + self.cross_attn(self.norm_cross(x), kv=ctx_kv, mask=ctx_mask)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class ActionExpert(nn.Module):
    """`(x_t (B, T, A), t (B,), state (B, S), context (B, L, H))` -> velocity `(B, T, A)`."""

    def __init__(
        self,
        *,
        action_dim: int,
        state_dim: int,
        context_dim: int,
        chunk_size: int,
        layers: int,
        width: int,
        heads: int,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.width = width
        self.action_in = nn.Linear(action_dim, width)
        self.state_in = nn.Linear(state_dim, width)
        self.pos = nn.Parameter(torch.zeros(1, chunk_size + 1, width))
        nn.init.normal_(self.pos, std=0.02)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.context_proj = nn.Sequential(nn.Linear(context_dim, width), nn.LayerNorm(width, eps=1e-6))
        self.blocks = nn.ModuleList(DiTBlock(width, heads, mlp_ratio) for _ in range(layers))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.action_out = nn.Linear(width, action_dim)
        # adaLN-Zero on the modulations, but not on `action_out`: a zero output layer would cut the
        # gradient to everything upstream (the VLM included) until it has moved.
        nn.init.zeros_(self.ada_out[1].weight)
        nn.init.zeros_(self.ada_out[1].bias)

    def context_kv(self, context: Tensor, context_mask: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """Per-layer cross-attention keys/values of the VLM prefix, and the SDPA mask `(B, 1, 1, L)`."""
        ctx = self.context_proj(context.to(self.context_proj[0].weight.dtype))
        kvs = [block.cross_attn.project_kv(ctx) for block in self.blocks]
        return kvs, context_mask[:, None, None, :]

    def forward(self, x_t: Tensor, t: Tensor, state: Tensor, ctx_kv: list[tuple[Tensor, Tensor]], ctx_mask: Tensor) -> Tensor:
        tokens = torch.cat([self.state_in(state)[:, None], self.action_in(x_t)], dim=1) + self.pos
        c = self.time_mlp(timestep_embedding(t, self.width).to(tokens.dtype))
        for block, kv in zip(self.blocks, ctx_kv, strict=True):
            tokens = block(tokens, c, kv, ctx_mask)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        return self.action_out(modulate(self.norm_out(tokens[:, 1:]), shift, scale))
