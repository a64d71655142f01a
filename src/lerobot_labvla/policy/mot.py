"""Mixture-of-Transformers action expert (`--policy.expert_attention=mot`), after LingBot-VLA.

What we took from LingBot-VLA (GitHub Robbyant/lingbot-vla, `lingbotvla/models/vla/pi0/
modeling_lingbot_vla.py`, `QwenvlWithExpertModel.forward` and `FlowMatching.embed_suffix`):
- one expert layer per backbone layer; at every layer the two streams compute their own Q/K/V with
  their own weights, attend jointly over the concatenated sequence, and each applies its own output
  projection, MLP and norms (Mixture-of-Transformers);
- the blockwise causal mask over [images+text | state | action chunk]: the prefix never attends to
  the suffix, the state token attends to the prefix and itself, the action tokens to everything
  (`att_masks[:, :2] = True` in `embed_suffix`); actions attend to each other bidirectionally;
- RoPE positions continue after the prefix; the expert's heads and head_dim equal the backbone's
  (so the keys can be concatenated), its width and MLP are its own;
- time enters through pi0's action-time MLP (`action_time_mlp_in/out` over [action, sin-cos(t)]),
  LingBot's default (`separate_time_proj=False`);
- knowledge insulation detaches the backbone's K/V for the expert (LingBot detaches them in
  `use_ki`).

What we do differently, and why: because the prefix never attends to the suffix, the backbone's
per-layer K/V are exactly those of its ordinary causal pass. So we run the backbone once as usual
(the FAST tokens and the `ki` FAST loss keep working unchanged), read its per-layer keys and
values with forward hooks, and run the expert's layers against them. Training and inference then
share one code path, inference is KV-cached by construction (prefix once, each Euler step runs the
expert only) and, unlike LingBot's `use_ki` (which detaches the VLM's Q/K/V for the whole joint
pass), the FAST loss still trains the backbone through its own attention in `ki` mode.
`tests/policy/test_mot.py` checks the result against a literal joint pass with the block mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.action_expert import timestep_embedding


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """`x (B, heads, N, D)`, `cos/sin (B, N, D)` as Qwen3-VL's rotary embedding returns them."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def block_mask(prefix_mask: Tensor, n_actions: int) -> Tensor:
    """Boolean attention mask `(B, 1 + T, L + 1 + T)` of the suffix [state, actions] over [prefix | state | actions].

    Row 0 (the state token) sees the valid prefix tokens and itself; the action rows see the valid
    prefix, the state and every action. The prefix rows are the backbone's own causal mask: no
    prefix token attends to the suffix.
    """
    bsz, _ = prefix_mask.shape
    n = 1 + n_actions
    suffix = torch.ones(n, n, dtype=torch.bool, device=prefix_mask.device)
    suffix[0, 1:] = False
    rows = prefix_mask.bool()[:, None, :].expand(bsz, n, -1)
    return torch.cat([rows, suffix[None].expand(bsz, -1, -1)], dim=2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class MoTLayer(nn.Module):
    """The expert's half of one MoT layer: Qwen-style pre-norm attention (own QKV, q/k norms) + SwiGLU MLP."""

    def __init__(self, width: int, heads: int, kv_heads: int, head_dim: int, eps: float):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.input_layernorm = RMSNorm(width, eps)
        self.q_proj = nn.Linear(width, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, width, bias=False)
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)
        self.post_attention_layernorm = RMSNorm(width, eps)
        self.gate_proj = nn.Linear(width, 4 * width, bias=False)
        self.up_proj = nn.Linear(width, 4 * width, bias=False)
        self.down_proj = nn.Linear(4 * width, width, bias=False)

    def qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`x (B, N, W)` -> q `(B, heads, N, D)`, k, v `(B, kv_heads, N, D)` (q/k normed and rotated)."""
        b, n, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_norm(self.q_proj(h).view(b, n, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(h).view(b, n, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(h).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def finish(self, x: Tensor, attn: Tensor) -> Tensor:
        """Residual updates after attention: `attn (B, heads, N, D)` -> new `x (B, N, W)`."""
        x = x + self.o_proj(attn.transpose(1, 2).flatten(2))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))

    def forward(self, x: Tensor, prefix_k: Tensor, prefix_v: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self.qkv(x, cos, sin)
        keys = torch.cat([prefix_k.to(k.dtype), k], dim=2)
        values = torch.cat([prefix_v.to(v.dtype), v], dim=2)
        attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None], enable_gqa=self.heads != self.kv_heads)
        return self.finish(x, attn)


@dataclass
class PrefixKV:
    """The backbone's per-layer keys/values over the prefix, read once per chunk."""

    keys: list[Tensor]  # per layer (B, kv_heads, L, D), q/k-normed and rotated as the backbone attends
    values: list[Tensor]  # per layer (B, kv_heads, L, D)
    next_position: Tensor  # (3, B, 1) the M-RoPE position after the prefix


class MoTActionExpert(nn.Module):
    """`(x_t (B, T, A), t (B,), state (B, S), PrefixKV, mask (B, L))` -> velocity `(B, T, A)`.

    Same interface as `ActionExpert`, so the policy's flow-matching code is shared: the backbone's
    forward hooks fill a `PrefixKV`, `project_context` hands it out (once per chunk), and each call
    runs only the expert's layers against it.
    """

    def __init__(self, backbone, *, action_dim: int, state_dim: int, width: int):
        super().__init__()
        text = backbone.vlm.config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.state_proj = nn.Linear(state_dim, width)
        self.action_in_proj = nn.Linear(action_dim, width)
        self.action_time_mlp_in = nn.Linear(2 * width, width)
        self.action_time_mlp_out = nn.Linear(width, width)
        self.layers = nn.ModuleList(
            MoTLayer(width, text.num_attention_heads, text.num_key_value_heads, head_dim, text.rms_norm_eps)
            for _ in range(text.num_hidden_layers)
        )
        self.norm = RMSNorm(width, text.rms_norm_eps)
        self.action_out_proj = nn.Linear(width, action_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Not a submodule: the backbone is the policy's, we only read from it.
        self._lm = [backbone.vlm.model.language_model]
        self._captured: dict = {}
        _capture_hooks(backbone, self._captured)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.layers

    def project_context(self, hidden: Tensor) -> PrefixKV:
        """The K/V the backbone computed in its last forward, over the prefix that `hidden (B, L, H)` covers.

        The K/V carry gradient exactly when `hidden` does: the policy passes `prefix.hidden.detach()`
        in `ki` mode (knowledge insulation: the FM loss must not reach the backbone through the shared
        attention either) and for a frozen backbone.
        """
        cap = self._captured
        if "keys" not in cap or len(cap["keys"]) != len(self.layers):
            raise LabVLAError("the MoT expert found no backbone K/V: run the backbone before project_context")
        n = cap["n_before_prefix"] + hidden.shape[1]  # + the ki state token when the backbone had one
        cos, sin = cap["cos"][:, :n], cap["sin"][:, :n]
        keys, values = [], []
        # The hooks keep the k_norm and v_proj outputs the layers computed; RoPE (no parameters) is applied
        # here. Nothing here may use a layer's weights: each decoder layer is an FSDP unit, whose weights
        # are sharded outside its forward (tests/policy/test_policy_fsdp_cpu.py).
        for k, v in zip(cap["keys"], cap["values"], strict=True):
            b, head_dim = k.shape[0], k.shape[-1]
            k = apply_rope(k[:, :n].transpose(1, 2), cos, sin)
            v = v[:, :n].view(b, n, -1, head_dim).transpose(1, 2)
            keys.append(k if hidden.requires_grad else k.detach())
            values.append(v if hidden.requires_grad else v.detach())
        positions = cap["position_ids"][:, :, :n]
        cap.clear()  # read once per chunk; do not keep the graph alive until the next forward
        return PrefixKV(keys, values, positions.max(dim=2, keepdim=True).values + 1)

    def embed_suffix(self, x_t: Tensor, t: Tensor, state: Tensor) -> Tensor:
        """`[state token, action tokens]` `(B, 1 + T, W)`; time enters by pi0's action-time MLP."""
        dtype = self.state_proj.weight.dtype
        temb = timestep_embedding(t * 1000.0, self.action_in_proj.out_features).to(dtype)
        actions = self.action_in_proj(x_t.to(dtype))
        actions = torch.cat([actions, temb[:, None].expand_as(actions)], dim=-1)
        actions = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(actions)))
        return torch.cat([self.state_proj(state.to(dtype))[:, None], actions], dim=1)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        state: Tensor,
        context: PrefixKV,
        context_mask: Tensor | None,
        action_mask: Tensor | None = None,
    ) -> Tensor:
        """`action_mask (B, T)` True on real chunk steps: padded steps leave the keys (as `ActionExpert`)."""
        dtype = self.state_proj.weight.dtype
        bsz, n_actions = x_t.shape[:2]
        x = self.embed_suffix(x_t, t, state)
        n_prefix = context.keys[0].shape[2]
        prefix_mask = torch.ones(bsz, n_prefix, dtype=torch.bool, device=x.device)
        if context_mask is not None:
            prefix_mask[:, n_prefix - context_mask.shape[1] :] = context_mask.bool()
        mask = block_mask(prefix_mask, n_actions)
        if action_mask is not None:
            mask[:, :, n_prefix + 1 :] &= action_mask.bool()[:, None, :]
        positions = context.next_position + torch.arange(1 + n_actions, device=x.device)
        cos, sin = self._lm[0].rotary_emb(x, positions)
        for layer, k, v in zip(self.layers, context.keys, context.values, strict=True):
            x = layer(x, k, v, cos.to(dtype), sin.to(dtype), mask)
        return self.action_out_proj(self.norm(x)[:, 1:]).float()


def _capture_hooks(backbone, store: dict) -> None:
    """Forward hooks on the Qwen3-VL text model that keep each layer's q/k-normed keys `(B, L, kv_heads, D)`
    (before RoPE) and value projections `(B, L, kv_heads * D)`.

    The hooks are module-level functions that find `store` on the module they fire on, so
    `copy.deepcopy(policy)` gives the copy hooks that fill the copy's store. They only keep
    references (no ops), so activation checkpointing's recomputation sees the same graph.
    """
    lm = backbone.vlm.model.language_model
    backbone._mot_store = lm._mot_store = lm.rotary_emb._mot_store = store
    backbone.register_forward_pre_hook(_on_backbone, with_kwargs=True)
    lm.register_forward_pre_hook(_on_lm, with_kwargs=True)
    lm.register_forward_hook(_after_lm)
    lm.rotary_emb.register_forward_hook(_on_rope)
    for layer in lm.layers:
        layer.self_attn.k_norm._mot = (store, "keys")
        layer.self_attn.v_proj._mot = (store, "values")
        layer.self_attn.k_norm.register_forward_hook(_on_kv)
        layer.self_attn.v_proj.register_forward_hook(_on_kv)


# They capture only inside a text-model forward: not when someone calls a projection directly, nor
# when activation checkpointing re-runs the layers during backward.
def _on_backbone(module, _args, kwargs):
    # QwenBackbone puts the ki state soft token before the camera slots when it is given a state.
    module._mot_store["n_before_prefix"] = int(kwargs.get("state") is not None)


def _on_lm(module, _args, kwargs):
    store = module._mot_store
    n_before = store.get("n_before_prefix", 0)
    store.clear()
    store["n_before_prefix"] = n_before
    store["position_ids"] = kwargs["position_ids"]
    store["keys"], store["values"], store["active"] = [], [], True


def _after_lm(module, _args, _output):
    module._mot_store["active"] = False


def _on_rope(module, _args, output):
    if module._mot_store.get("active"):
        module._mot_store["cos"], module._mot_store["sin"] = output


def _on_kv(module, _args, out):
    store, name = module._mot
    if store.get("active"):
        store[name].append(out)
