"""`LabVLAPolicy`: Qwen3-VL prefix -> DiT flow-matching expert (and FAST tokens in the VLM).

Reads top-down like the paper: `forward` is the training loss of the configured mode,
`predict_action_chunk` samples one chunk (prefix once, then `num_inference_steps` Euler steps of
the expert), `select_action` serves it step by step from a queue. Compile, gradient
checkpointing and freezing are applied from outside, in `parallelize.py`.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from lerobot.configs import PreTrainedConfig
from lerobot.policies.common.flow_matching import euler_integrate, sample_noise, sample_time_beta
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_STATE
from torch import Tensor, nn

from lerobot_labvla.data_process.merge import ACTION_DIM_PAD, STATE_DIM_PAD
from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.action_expert import ActionExpert
from lerobot_labvla.policy.backbone import QwenBackbone, build_vlm, load_tokenizer
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.depth_distill import build_depth_distill
from lerobot_labvla.policy.processor_labvla import (  # importing it registers the steps checkpoints name
    PROMPT_KEY,
    PROMPT_WITH_STATE_KEY,
    adopt_quantile_dims,
)
from lerobot_labvla.policy.fast_data import fit_fast_tokenizer
from lerobot_labvla.policy.fast_tokenizer import FILE_NAME as FAST_FILE, FastTokenizer
from lerobot_labvla.policy.normalization_checks import check_stats

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
class FastHead(nn.Module):
    """The official KI head: FAST token embedding into the VLM width and a float32 classifier back."""

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.classifier = nn.Linear(hidden_size, vocab_size, bias=False)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def logits(self, hidden: Tensor) -> Tensor:
        """`(B, L, H)` -> float32 logits `(B, L, V)`."""
        return F.linear(hidden.float(), self.classifier.weight.float())


class LabVLAPolicy(PreTrainedPolicy):
    """LabVLA: a vision-language-action policy for laboratory robots."""

    config_class = LabVLAConfig
    name = "labvla"
    # FSDP shard units: accelerate's TRANSFORMER_BASED_WRAP reads `_no_split_modules` (configs/accelerate/fsdp.yaml).
    _no_split_modules: ClassVar[list[str]] = ["DiTBlock", "MoTLayer", "Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock"]

    def __init__(
        self,
        config: LabVLAConfig,
        dataset_stats: dict | None = None,
        dataset_meta=None,
        checkpoint_dir: str | Path | None = None,
        **kwargs,
    ):
        super().__init__(config)
        config.validate_features()
        if dataset_stats is not None:
            check_stats(config, dataset_stats)
            if config.pretrained_path:
                # lerobot-train --policy.path overrides the saved normalizer with this very dict (raw stats);
                # fresh processors apply the quantile dims themselves, so only then is it rewritten in place.
                adopt_quantile_dims(config, dataset_stats)
        self.config = config
        dtype = torch.bfloat16 if config.dtype == "bfloat16" else torch.float32
        vlm, config.backbone_config = build_vlm(
            config.backbone,
            config.backbone_config,
            load_weights=checkpoint_dir is None and not config.random_init_backbone,
            attn_implementation=config.attn_implementation,
            dtype=dtype,
        )
        tokenizer_source = Path(checkpoint_dir) / TOKENIZER_DIR if checkpoint_dir else (config.tokenizer or config.backbone)
        self.backbone = QwenBackbone(
            vlm,
            load_tokenizer(tokenizer_source),
            image_size=config.image_size,
            num_camera_slots=config.num_camera_slots,
            pad_image_size=config.pad_image_size,
            state_dim=config.max_state_dim if config.uses_vlm_state_token else None,
        )
        if config.expert_attention == "mot":  # LingBot-style Mixture-of-Transformers (mot.py)
            from lerobot_labvla.policy.mot import MoTActionExpert

            self.expert = MoTActionExpert(
                self.backbone,
                action_dim=config.max_action_dim,
                state_dim=config.max_state_dim,
                width=config.expert_width,
            )
        else:
            self.expert = ActionExpert(
                action_dim=config.max_action_dim,
                state_dim=config.max_state_dim,
                context_dim=self.backbone.hidden_size,
                layers=config.expert_layers,
                heads=config.expert_heads,
                head_dim=config.expert_width // config.expert_heads,
                interleave_self_attention=config.expert_interleave_self_attention,
            )
        # Layerwise VLM features (official, off by default): one LM hidden state per cross-attention block.
        self._context_layers = self.expert.dit_action_head.num_cross_attention_blocks if config.expert_layerwise_vlm_features else 0
        # FAST tokens live in their own vocabulary (official `ki_head`), not in Qwen's: the last id is <eos>.
        self.ki_head = FastHead(config.fast_vocab_size + 1, self.backbone.hidden_size) if config.uses_fast else None
        self.depth = build_depth_distill(config, self.backbone.hidden_size)
        self.fast: FastTokenizer | None = None
        self.fast_fit_report: dict | None = None
        if checkpoint_dir is not None and (Path(checkpoint_dir) / FAST_FILE).exists():
            self.fast = FastTokenizer.load(Path(checkpoint_dir) / FAST_FILE)
        elif config.uses_fast:
            # Fitted here because LeRobot 0.6 gives the dataset (`dataset_meta`) to the policy constructor
            # only: the processor factory gets the stats alone and lerobot-train has no later hook (fast_data.py).
            self.fast, self.fast_fit_report = fit_fast_tokenizer(config, dataset_meta, dataset_stats)
        if self.fast is not None:
            self._check_fast_vocab()
        self.fast_decode_errors = 0
        self.init_rtc_processor()
        self._denoise = self._denoise_step

        from lerobot_labvla.policy.parallelize import apply_runtime_options

        apply_runtime_options(self)
        self.reset()

    # --- LeRobot policy API ---------------------------------------------------------------
    def get_optim_params(self) -> list[dict]:
        """AdamW parameter groups of the official recipe (see `parallelize.optim_param_groups`)."""
        from lerobot_labvla.policy.parallelize import optim_param_groups

        return optim_param_groups(self)

    def reset(self) -> None:
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)

    def forward(self, batch: dict, reduction: str = "mean") -> tuple[Tensor, dict]:
        """Training loss of `config.mode` and the logged metrics (`fm_loss`, `fast_loss`, `fast_acc`)."""
        images, state, prompts = self._inputs(batch)
        actions = batch[ACTION]
        if actions.shape[-1] != self.config.action_dim:
            raise LabVLAError(
                f"action dim {actions.shape[-1]} != the policy's {self.config.action_dim} ({ACTION} feature)"
            )
        actions = _pad_last(actions, self.config.max_action_dim)
        # A mixed-robot dataset's padded dims (per sample) become zeros: neither the FAST targets nor the
        # expert's noisy input x_t may carry what the normalizer made of the padding.
        dim_pad = _dim_is_pad(batch, ACTION_DIM_PAD, actions)
        if dim_pad is not None:
            actions = actions.masked_fill(dim_pad[:, None, :], 0.0)
        valid = self._valid_mask(batch, actions)
        state_p = self._pad_state(state, batch)
        fast_ids = fast_mask = fast_embeds = None
        if self.config.uses_fast:
            fast_ids, fast_mask = self._fast_targets(actions)
            fast_embeds = self.ki_head.embedding(fast_ids)
        frozen = self.config.mode == "finetune" and self.config.freeze_backbone
        tail_embeds, tail_mask = fast_embeds, fast_mask
        depth = self.depth if self.depth is not None and not frozen and self.depth.has_depth(batch) else None
        if depth is not None:  # depth_distill.py: learnable queries after every other token
            tail_embeds, tail_mask = depth.append_queries(fast_embeds, fast_mask, state.shape[0])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            prefix = self.backbone(
                self._build_inputs(images, prompts),
                state=state_p if self.config.uses_vlm_state_token else None,
                fast_embeds=tail_embeds,
                fast_mask=tail_mask,
                hidden_layers=self._context_layers if self.config.uses_expert else 0,
            )

        if depth is not None:
            prefix.fast_hidden, query_hidden = depth.split(prefix.fast_hidden, 0 if fast_ids is None else fast_ids.shape[1])

        metrics: dict[str, float] = {}
        loss = torch.zeros((), device=actions.device)
        per_sample = torch.zeros(actions.shape[0], device=actions.device)
        if depth is not None:
            depth_err = depth.loss(query_hidden, batch)
            metrics["depth_loss"] = depth_err.mean().item()
            loss = loss + self.config.depth_loss_weight * depth_err.mean()
            per_sample = per_sample + self.config.depth_loss_weight * depth_err
        if self.config.uses_fast:
            logits = self.ki_head.logits(prefix.fast_hidden)
            token_ce = F.cross_entropy(logits.flatten(0, 1), fast_ids.flatten(), reduction="none").view_as(fast_mask)
            fast_loss = (token_ce * fast_mask).sum() / fast_mask.sum().clamp(min=1)
            metrics["fast_loss"] = fast_loss.item()
            hits = (logits.argmax(-1) == fast_ids) & fast_mask
            metrics["fast_acc"] = (hits.sum() / fast_mask.sum().clamp(min=1)).item()
            weight = 1.0 if self.config.mode == "fast_pretrain" else self.config.fast_loss_weight
            loss = loss + weight * fast_loss
            per_sample = per_sample + weight * (token_ce * fast_mask).sum(1) / fast_mask.sum(1).clamp(min=1)
        if self.config.uses_expert:
            # Knowledge insulation: in `ki` the expert reads detached VLM states, so the FM loss
            # trains the expert only and the backbone learns from the FAST loss alone.
            context = self._context(prefix, detach=self.config.mode == "ki" or frozen)
            is_pad = batch.get(f"{ACTION}_is_pad")
            err = self._fm_error(actions, state_p, context, prefix.mask, valid, None if is_pad is None else ~is_pad)
            # One mean over every valid element of the batch (official; the gripper weight does not
            # enter the count), per sample for reduction="none".
            fm = err.sum() / valid.sum().clamp(min=1)
            metrics["fm_loss"] = fm.item()
            weight = self.config.fm_loss_weight if self.config.mode == "ki" else 1.0
            loss = loss + weight * fm
            per_sample = per_sample + weight * err.sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp(min=1)
        if reduction == "none":
            return per_sample, metrics
        return loss, metrics

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, noise: Tensor | None = None, **rtc_kwargs) -> Tensor:
        """Sample one chunk `(B, chunk_size, action_dim)` in normalized action space."""
        images, state, prompts = self._inputs(batch)
        if self.config.mode == "fast_pretrain":
            chunk = self._generate_fast(images, prompts, self._pad_state(state, batch))
        else:
            state_p = self._pad_state(state, batch)
            prefix = self.backbone(  # once per chunk
                self._build_inputs(images, prompts),
                state=state_p if self.config.uses_vlm_state_token else None,
                hidden_layers=self._context_layers,
            )
            context, ctx_mask = self.expert.project_context(self._context(prefix)), prefix.mask
            bsz = state.shape[0]
            if noise is None:
                noise = sample_noise((bsz, self.config.chunk_size, self.config.max_action_dim), state.device)
            rtc_enabled = self.rtc_processor is not None and self.config.rtc_config.enabled
            chunk = euler_integrate(
                lambda x, t: self._denoise(x, t, state_p, context, ctx_mask),
                noise.to(state.device),
                self.config.num_inference_steps,
                rtc_processor=self.rtc_processor,
                rtc_enabled=rtc_enabled,
                inference_delay=rtc_kwargs.get("inference_delay"),
                prev_chunk_left_over=rtc_kwargs.get("prev_chunk_left_over"),
                execution_horizon=rtc_kwargs.get("execution_horizon"),
            )
        return chunk[..., : self.config.action_dim].float()

    @torch.no_grad()
    def select_action(self, batch: dict, noise: Tensor | None = None) -> Tensor:
        """One action `(B, action_dim)`; a new chunk is sampled when the queue is empty."""
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch, noise=noise)
            self._action_queue.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))
        return self._action_queue.popleft()

    def supports_rtc(self) -> bool:
        return self.config.mode != "fast_pretrain"

    def init_rtc_processor(self) -> None:
        from lerobot.policies.rtc.modeling_rtc import RTCProcessor

        self.rtc_processor = RTCProcessor(self.config.rtc_config) if self.config.rtc_config is not None else None

    # --- pieces ---------------------------------------------------------------------------
    def _inputs(self, batch: dict) -> tuple[list[Tensor | None], Tensor, list[str]]:
        """Camera slots (None = absent, masked), raw state `(B, S)`, prompt strings."""
        cameras = self.config.camera_keys
        if not any(k in batch for k in cameras):
            raise LabVLAError(
                f"batch has none of the policy's cameras {cameras} (map yours with --rename_map)"
            )
        if OBS_STATE not in batch:
            raise LabVLAError(f"batch is missing {OBS_STATE!r}")
        state = batch[OBS_STATE]
        if state.shape[-1] != self.config.state_dim:
            raise LabVLAError(f"state dim {state.shape[-1]} != the policy's {self.config.state_dim}")
        if PROMPT_KEY not in batch:
            raise LabVLAError(
                f"batch has no {PROMPT_KEY!r}; run it through the labvla preprocessor "
                "(lerobot.policies.factory.make_pre_post_processors)"
            )
        # fast_pretrain reads the state as text (official vlm_pretrain); posttrain modes the raw instruction.
        prompts = batch.get(PROMPT_WITH_STATE_KEY, batch[PROMPT_KEY]) if self.config.mode == "fast_pretrain" else batch[PROMPT_KEY]
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        slots = [batch.get(k) for k in cameras]
        slots += [None] * (self.config.num_camera_slots - len(slots))
        return slots, state, prompts

    def _build_inputs(self, images: list[Tensor | None], prompts: list[str]) -> dict:
        budget = self.config.max_prompt_tokens_with_state if self.config.mode == "fast_pretrain" else self.config.max_prompt_tokens
        return self.backbone.build_inputs(images, prompts, budget)

    def _pad_state(self, state: Tensor, batch: dict | None = None) -> Tensor:
        """`(B, max_state_dim)`: zero-padded, and zero on the dims a mixed-robot dataset padded for the sample."""
        state = _pad_last(state.to(self.expert.state_proj.weight.dtype), self.config.max_state_dim)
        dim_pad = None if batch is None else _dim_is_pad(batch, STATE_DIM_PAD, state)
        return state if dim_pad is None else state.masked_fill(dim_pad, 0.0)

    def _valid_mask(self, batch: dict, actions: Tensor) -> Tensor:
        """`(B, T, max_action_dim)`: real action dims (of the dataset, and of this sample's robot in a mixed-robot
        dataset) of real (not padded) chunk steps."""
        valid = torch.zeros_like(actions, dtype=torch.bool)
        valid[..., : self.config.action_dim] = True
        is_pad = batch.get(f"{ACTION}_is_pad")
        if is_pad is not None:
            valid &= ~is_pad[..., None]
        dim_pad = _dim_is_pad(batch, ACTION_DIM_PAD, actions)
        if dim_pad is not None:
            valid &= ~dim_pad[:, None, :]
        return valid

    def _context(self, prefix, detach: bool = False) -> Tensor | list[Tensor]:
        """What the expert cross-attends to: the last hidden state, or one per cross block (layerwise)."""
        context = prefix.layers if self._context_layers else prefix.hidden
        if not detach:
            return context
        return [h.detach() for h in context] if isinstance(context, list) else context.detach()

    def _fm_error(
        self,
        actions: Tensor,
        state: Tensor,
        context: Tensor | list[Tensor],
        context_mask: Tensor,
        valid: Tensor,
        real_steps: Tensor | None = None,
    ) -> Tensor:
        """Masked, gripper-weighted squared flow-matching error `(B, T, A)` in the official convention.

        t = 0 is noise: `x_t = t*a + (1-t)*eps`, the expert's target is `a - eps`. `real_steps`
        `(B, T)` (not `action_is_pad`) keeps the padded steps out of the expert's self-attention, so
        what the dataset put at padded steps cannot move the loss of the real ones.
        """
        t = sample_time_beta(
            actions.shape[0], actions.device, alpha=self.config.time_beta_beta, beta=self.config.time_beta_alpha,
            scale=0.999, offset=0.0,
        )
        noise = torch.randn_like(actions)
        x_t = t[:, None, None] * actions + (1 - t[:, None, None]) * noise
        v = self.expert(x_t, t, state, self.expert.project_context(context), context_mask, action_mask=real_steps)
        weight = valid.float()
        grippers = [d for d in self.config.resolved_gripper_action_dims if d < self.config.action_dim]
        if grippers and self.config.gripper_loss_weight != 1.0:
            weight[..., grippers] *= self.config.gripper_loss_weight
        return (v.float() - (actions - noise).float()) ** 2 * weight

    def _denoise_step(self, x_t: Tensor, t: Tensor, state: Tensor, context: Tensor, ctx_mask: Tensor) -> Tensor:
        """Velocity in LeRobot's sampler convention (t = 1 noise, integrated 1 -> 0): the official expert
        at time `1 - t`, negated. Each Euler step then equals the official 0 -> 1 step."""
        return -self.expert(x_t, 1.0 - t, state, context, ctx_mask)

    # --- FAST ------------------------------------------------------------------------------
    def _check_fast_vocab(self) -> None:
        if self.fast.vocab_size > self.config.fast_vocab_size:
            raise LabVLAError(
                f"FAST tokenizer vocab {self.fast.vocab_size} > --policy.fast_vocab_size={self.config.fast_vocab_size} "
                "(the size of the FAST head); raise it"
            )

    @property
    def _fast_eos(self) -> int:
        return self.config.fast_vocab_size

    def _fast_targets(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """FAST ids `(B, L)` (+ <eos>, right-padded) and their mask `(B, L)` for the FAST head."""
        if self.fast is None:
            raise LabVLAError(
                f"--policy.mode={self.config.mode} needs a FAST tokenizer: train from a dataset (it is fitted "
                "at start) or from a checkpoint that has fast_tokenizer.json"
            )
        encoded = self.fast.encode_targets(actions.detach().float().cpu().numpy(), self.config.max_fast_tokens)
        seqs = [seq + [self._fast_eos] for seq in encoded]
        length = max(map(len, seqs))
        ids = torch.zeros(len(seqs), length, dtype=torch.long)
        mask = torch.zeros(len(seqs), length, dtype=torch.bool)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = True
        return ids.to(actions.device), mask.to(actions.device)

    def _generate_fast(self, images: list[Tensor | None], prompts: list[str], state: Tensor) -> Tensor:
        """Greedy FAST decoding with the FAST head (fast_pretrain inference)."""
        bsz = len(prompts)
        device = self.ki_head.embedding.weight.device
        ids = torch.zeros(bsz, 0, dtype=torch.long, device=device)
        done = torch.zeros(bsz, dtype=torch.bool, device=device)
        inputs = self._build_inputs(images, prompts)
        for _ in range(self.config.max_fast_tokens + 1):
            # The prefix is re-run each step (no KV cache to keep in sync with training's layout);
            # fast_pretrain inference is a diagnostic, the deployed modes sample with the expert.
            query = torch.cat([ids, torch.zeros(bsz, 1, dtype=torch.long, device=device)], dim=1)
            prefix = self.backbone(
                inputs,
                state=state if self.config.uses_vlm_state_token else None,
                fast_embeds=self.ki_head.embedding(query),
                fast_mask=torch.ones_like(query, dtype=torch.bool),
            )
            nxt = self.ki_head.logits(prefix.fast_hidden[:, -1:])[:, 0].argmax(-1)
            ids = torch.cat([ids, torch.where(done, self._fast_eos, nxt)[:, None]], dim=1)
            done |= nxt == self._fast_eos
            if done.all():
                break
        rows = [row.tolist() for row in ids]
        sequences = [row[: row.index(self._fast_eos)] if self._fast_eos in row else row for row in rows]
        result = self.fast.decode(sequences)
        if result.errors:
            self.fast_decode_errors += len(result.errors)
            logger.warning(
                "FAST: %d of %d sequences did not decode to a full chunk (fast_decode_errors=%d so far)",
                len(result.errors), len(sequences), self.fast_decode_errors,
            )
        return torch.from_numpy(result.actions).to(device)

    # --- checkpoints -------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path, *args, **kwargs) -> None:
        super()._save_pretrained(save_directory, *args, **kwargs)
        self.backbone.tokenizer.save_pretrained(str(Path(save_directory) / TOKENIZER_DIR))
        if self.fast is not None:
            self.fast.save(Path(save_directory))

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path: str | Path, *, config: PreTrainedConfig | None = None, **kwargs):
        """LeRobot's loader, plus the tokenizer files that live beside `model.safetensors`."""
        hub = {k: kwargs[k] for k in ("revision", "cache_dir", "force_download", "token", "local_files_only") if k in kwargs}
        path = str(pretrained_name_or_path)
        if config is None:
            config = PreTrainedConfig.from_pretrained(path, **hub)
        checkpoint_dir = _checkpoint_files(path, hub)
        check_stats(config, _saved_normalizer_stats(checkpoint_dir), source=f"the normalizer stats saved in {path}")
        # Built on the meta device, weights assigned from the file: one copy in memory, no random init (loading.py).
        from lerobot_labvla.policy.loading import load_policy

        strict = kwargs.pop("strict", False)
        for key in ("revision", "cache_dir", "force_download", "token", "local_files_only", "resume_download", "proxies"):
            kwargs.pop(key, None)
        return load_policy(cls, path, config=config, hub=hub, strict=strict, checkpoint_dir=checkpoint_dir, **kwargs)


def _dim_is_pad(batch: dict, key: str, like: Tensor) -> Tensor | None:
    """`(B, D)` bool on `like`'s device (D = its last dim), True on the dims `labvla-data merge --pad` padded for
    each sample (`key`: its `dim_is_pad.*` mask over the dataset's width; dims past it count as padded), or None."""
    mask = batch.get(key)
    if mask is None:
        return None
    width = like.shape[-1]
    mask = torch.as_tensor(mask, device=like.device).bool()
    mask = mask[None] if mask.ndim == 1 else mask
    if mask.shape[-1] > width:
        raise LabVLAError(f"{key} has {mask.shape[-1]} dims > the padded max {width}")
    return torch.cat([mask, mask.new_ones(mask.shape[0], width - mask.shape[-1])], dim=-1)


def _pad_last(x: Tensor, size: int) -> Tensor:
    if x.shape[-1] > size:
        raise LabVLAError(f"dim {x.shape[-1]} exceeds the padded max {size}")
    return F.pad(x, (0, size - x.shape[-1]))


def _checkpoint_files(path: str, hub: dict) -> Path:
    """The checkpoint dir holding tokenizer files: `path` itself, or a Hub snapshot of those files."""
    if os.path.isdir(path):
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            path,
            allow_patterns=[f"{TOKENIZER_DIR}/*", FAST_FILE, "policy_preprocessor*"],
            **hub,
        )
    )


def _saved_normalizer_stats(checkpoint_dir: Path) -> dict | None:
    """Stats of the checkpoint's saved normalizer step, `{feature: {stat: tensor}}`, or None if absent."""
    import json

    from safetensors.torch import load_file

    config_file = checkpoint_dir / "policy_preprocessor.json"
    if not config_file.exists():
        return None
    for step in json.loads(config_file.read_text()).get("steps", []):
        if step.get("registry_name") == "normalizer_processor" and step.get("state_file"):
            stats: dict = {}
            for flat, tensor in load_file(str(checkpoint_dir / step["state_file"])).items():
                key, stat = flat.rsplit(".", 1)
                stats.setdefault(key, {})[stat] = tensor
            return stats
    return None
