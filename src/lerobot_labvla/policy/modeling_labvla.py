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

import numpy as np
import torch
import torch.nn.functional as F
from lerobot.configs import FeatureType, NormalizationMode, PreTrainedConfig
from lerobot.policies.common.flow_matching import euler_integrate, sample_noise, sample_time_beta
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_STATE
from torch import Tensor

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.action_expert import ActionExpert
from lerobot_labvla.policy.backbone import QwenBackbone, build_vlm, load_tokenizer
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
from lerobot_labvla.policy.processor_labvla import PROMPT_KEY  # importing it registers the steps checkpoints name
from lerobot_labvla.policy.fast_tokenizer import FILE_NAME as FAST_FILE, FastTokenizer

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
REQUIRED_STATS = {
    NormalizationMode.MEAN_STD: ("mean", "std"),
    NormalizationMode.MIN_MAX: ("min", "max"),
    NormalizationMode.QUANTILES: ("q01", "q99"),
    NormalizationMode.QUANTILE10: ("q10", "q90"),
}


def check_stats(config: LabVLAConfig, stats: dict | None, *, source: str = "dataset stats") -> None:
    """Raise if `stats` lacks anything the normalizer needs.

    LeRobot's normalizer passes a feature through unnormalized when its stats are missing; a
    policy trained or run that way fails silently, so labvla refuses instead.
    """
    missing, not_finite = [], []
    for key, feature in {**config.input_features, **config.output_features}.items():
        mode = config.normalization_mapping.get(feature.type.value, NormalizationMode.IDENTITY)
        if mode is NormalizationMode.IDENTITY:
            continue
        have = (stats or {}).get(key) or {}
        lacking = [name for name in REQUIRED_STATS[mode] if name not in have]
        if lacking:
            missing.append(f"{key} [{', '.join(lacking)}]")
        elif not all(np.isfinite(np.asarray(have[name], dtype=np.float64)).all() for name in REQUIRED_STATS[mode]):
            not_finite.append(key)
    if not_finite:
        raise LabVLAError(
            f"{source} contain NaN/Inf for {', '.join(not_finite)}: the data has NaN/Inf values; "
            "find and drop those episodes with `labvla-data scan` / `labvla-data clean`"
        )
    if missing:
        raise LabVLAError(
            f"{source} lack what labvla normalizes ({config.normalization_mapping['STATE'].value} state/action): "
            f"{'; '.join(missing)}. Recompute them: `lerobot-edit-dataset --operation.type recompute_stats`"
        )


class LabVLAPolicy(PreTrainedPolicy):
    """LabVLA: a vision-language-action policy for laboratory robots."""

    config_class = LabVLAConfig
    name = "labvla"
    _fsdp_wrap_modules: ClassVar[list[str]] = ["DiTBlock", "Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock"]

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
            vlm, load_tokenizer(tokenizer_source), image_size=config.image_size, max_prompt_tokens=config.max_prompt_tokens
        )
        self.expert = ActionExpert(
            action_dim=config.max_action_dim,
            state_dim=config.max_state_dim,
            context_dim=self.backbone.hidden_size,
            chunk_size=config.chunk_size,
            layers=config.expert_layers,
            width=config.expert_width,
            heads=config.expert_heads,
            mlp_ratio=config.expert_mlp_ratio,
        )
        self.fast: FastTokenizer | None = None
        self.fast_fit_report: dict | None = None
        if checkpoint_dir is not None and (Path(checkpoint_dir) / FAST_FILE).exists():
            self.fast = FastTokenizer.load(Path(checkpoint_dir) / FAST_FILE)
        elif config.uses_fast:
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
    def get_optim_params(self):
        return [p for p in self.parameters() if p.requires_grad]

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
        valid = self._valid_mask(batch, actions)
        targets = self._fast_targets(actions) if self.config.uses_fast else None
        frozen = self.config.mode == "finetune" and self.config.freeze_backbone
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            prefix = self.backbone(self.backbone.build_inputs(images, prompts, targets))

        metrics: dict[str, float] = {}
        loss = torch.zeros((), device=actions.device)
        per_sample = torch.zeros(actions.shape[0], device=actions.device)
        if self.config.uses_fast:
            fast_loss = F.cross_entropy(prefix.fast_logits, prefix.fast_labels)
            metrics["fast_loss"] = fast_loss.item()
            metrics["fast_acc"] = (prefix.fast_logits.argmax(-1) == prefix.fast_labels).float().mean().item()
            weight = 1.0 if self.config.mode == "fast_pretrain" else self.config.fast_loss_weight
            loss = loss + weight * fast_loss
            per_sample = per_sample + weight * fast_loss.detach()
        if self.config.uses_expert:
            # Knowledge insulation: in `ki` the expert reads detached VLM states, so the FM loss
            # trains the expert only and the backbone learns from the FAST loss alone.
            context = prefix.hidden.detach() if self.config.mode == "ki" or frozen else prefix.hidden
            fm = self._fm_loss(actions, self._pad_state(state), context, prefix.mask, valid)
            metrics["fm_loss"] = fm.mean().item()
            weight = self.config.fm_loss_weight if self.config.mode == "ki" else 1.0
            loss = loss + weight * fm.mean()
            per_sample = per_sample + weight * fm
        if reduction == "none":
            return per_sample, metrics
        return loss, metrics

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, noise: Tensor | None = None, **rtc_kwargs) -> Tensor:
        """Sample one chunk `(B, chunk_size, action_dim)` in normalized action space."""
        images, state, prompts = self._inputs(batch)
        if self.config.mode == "fast_pretrain":
            chunk = self._generate_fast(images, prompts)
        else:
            prefix = self.backbone(self.backbone.build_inputs(images, prompts))  # once per chunk
            ctx_kv, ctx_mask = self.expert.context_kv(prefix.hidden, prefix.mask)
            state_p = self._pad_state(state)
            bsz = state.shape[0]
            if noise is None:
                noise = sample_noise((bsz, self.config.chunk_size, self.config.max_action_dim), state.device)
            rtc_enabled = self.rtc_processor is not None and self.config.rtc_config.enabled
            chunk = euler_integrate(
                lambda x, t: self._denoise(x, t, state_p, ctx_kv, ctx_mask),
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
    def _inputs(self, batch: dict) -> tuple[list[Tensor], Tensor, list[str]]:
        missing = [k for k in self.config.camera_keys if k not in batch]
        if missing:
            raise LabVLAError(
                f"batch is missing camera(s) {missing}; the policy was trained with {self.config.camera_keys} "
                "(map yours with --rename_map)"
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
        prompts = batch[PROMPT_KEY]
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return [batch[k] for k in self.config.camera_keys], state, prompts

    def _pad_state(self, state: Tensor) -> Tensor:
        return _pad_last(state.to(self.expert.state_in.weight.dtype), self.config.max_state_dim)

    def _valid_mask(self, batch: dict, actions: Tensor) -> Tensor:
        """`(B, T, max_action_dim)`: real action dims of real (not padded) chunk steps."""
        valid = torch.zeros_like(actions, dtype=torch.bool)
        valid[..., : self.config.action_dim] = True
        is_pad = batch.get(f"{ACTION}_is_pad")
        if is_pad is not None:
            valid &= ~is_pad[..., None]
        return valid

    def _fm_loss(self, actions: Tensor, state: Tensor, context: Tensor, context_mask: Tensor, valid: Tensor) -> Tensor:
        """Per-sample flow-matching MSE, `x_t = t*noise + (1-t)*a`, target `noise - a`."""
        bsz = actions.shape[0]
        t = sample_time_beta(
            bsz, actions.device, alpha=self.config.time_beta_alpha, beta=self.config.time_beta_beta, scale=0.999, offset=0.001
        )
        noise = torch.randn_like(actions)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        ctx_kv, ctx_mask = self.expert.context_kv(context, context_mask)
        v = self.expert(x_t, t, state, ctx_kv, ctx_mask)
        err = (v.float() - (noise - actions).float()) ** 2 * valid
        return err.sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp(min=1)

    def _denoise_step(self, x_t: Tensor, t: Tensor, state: Tensor, ctx_kv, ctx_mask) -> Tensor:
        return self.expert(x_t, t, state, ctx_kv, ctx_mask)

    # --- FAST ------------------------------------------------------------------------------
    def _fast_offset(self) -> int:
        """VLM vocab id of FAST token 0 is `offset`, token k is `offset - k` (pi0-FAST's layout)."""
        return self.backbone.vocab_size - 1 - self.config.fast_skip_tokens

    def _check_fast_vocab(self) -> None:
        lowest = self._fast_offset() - self.fast.vocab_size + 1
        if lowest <= len(self.backbone.tokenizer) and self.config.backbone == "tiny":
            raise LabVLAError(f"FAST vocab {self.fast.vocab_size} does not fit the tiny backbone; lower --policy.fast_vocab_size")
        if lowest < 0:
            raise LabVLAError(
                f"FAST vocab {self.fast.vocab_size} + skip {self.config.fast_skip_tokens} exceed the backbone vocab "
                f"{self.backbone.vocab_size}; lower --policy.fast_vocab_size"
            )

    def _fast_targets(self, actions: Tensor) -> list[list[int]]:
        if self.fast is None:
            raise LabVLAError(
                f"--policy.mode={self.config.mode} needs a FAST tokenizer: train from a dataset (it is fitted "
                "at start) or from a checkpoint that has fast_tokenizer.json"
            )
        offset = self._fast_offset()
        ids = self.fast.encode(actions.detach().float().cpu().numpy())
        return [[offset - k for k in seq[: self.config.max_fast_tokens]] for seq in ids]

    def _generate_fast(self, images: list[Tensor], prompts: list[str]) -> Tensor:
        """Greedy FAST decoding (fast_pretrain inference), restricted to FAST ids and <eos>."""
        from transformers import LogitsProcessor, LogitsProcessorList

        offset, n_fast = self._fast_offset(), self.fast.vocab_size
        eos = self.backbone.eos_id

        class OnlyFast(LogitsProcessor):
            def __call__(self, input_ids, scores):
                keep = torch.full_like(scores, float("-inf"))
                keep[:, offset - n_fast + 1 : offset + 1] = 0
                keep[:, eos] = 0
                return scores + keep

        sequences = []
        for i in range(len(prompts)):  # one by one: generation needs left padding, the prefix is right-padded
            inputs = self.backbone.build_inputs([im[i : i + 1] for im in images], prompts[i : i + 1])
            out = self.backbone.vlm.generate(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                pixel_values=inputs["pixel_values"].to(self.backbone.vlm.dtype),
                image_grid_thw=inputs["image_grid_thw"],
                mm_token_type_ids=inputs["mm_token_type_ids"],
                max_new_tokens=self.config.max_fast_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=self.backbone.pad_id,
                logits_processor=LogitsProcessorList([OnlyFast()]),
            )
            self.backbone.vlm.model.rope_deltas = None
            new = out[0, inputs["input_ids"].shape[1] :].tolist()
            new = new[: new.index(eos)] if eos in new else new
            sequences.append([offset - t for t in new])
        result = self.fast.decode(sequences)
        if result.errors:
            self.fast_decode_errors += len(result.errors)
            logger.warning(
                "FAST: %d of %d sequences did not decode to a full chunk (fast_decode_errors=%d so far)",
                len(result.errors), len(sequences), self.fast_decode_errors,
            )
        return torch.from_numpy(result.actions).to(images[0].device)

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
        return super().from_pretrained(path, config=config, checkpoint_dir=checkpoint_dir, **kwargs)


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
            revision=hub.get("revision"),
            cache_dir=hub.get("cache_dir"),
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


def fit_fast_tokenizer(config: LabVLAConfig, dataset_meta, dataset_stats: dict | None) -> tuple[FastTokenizer | None, dict | None]:
    """Fit FAST on the training set's normalized, padded action chunks; hold out 10% to report error."""
    from lerobot_labvla.policy.fast_data import load_action_chunks

    if dataset_meta is None:
        return None, None
    chunks = load_action_chunks(dataset_meta.root, config.chunk_size, max_chunks=config.fast_fit_max_chunks)
    if dataset_stats is not None and ACTION in dataset_stats:
        chunks = normalize_actions(config, dataset_stats, chunks)
    chunks = np.pad(chunks, ((0, 0), (0, 0), (0, config.max_action_dim - chunks.shape[-1])))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(chunks))
    n_hold = max(1, len(chunks) // 10) if len(chunks) > 1 else 0
    held, train = chunks[order[:n_hold]], chunks[order[n_hold:]]
    fast = FastTokenizer.fit(train, vocab_size=config.fast_vocab_size, scale=config.fast_scale)
    report = {"train_chunks": int(len(train)), "heldout_chunks": int(len(held))}
    if len(held):
        mae, errors = fast.round_trip_error(held)
        lengths = [len(s) for s in fast.encode(held)]
        report.update(heldout_mae=mae, heldout_decode_errors=errors, mean_tokens=float(np.mean(lengths)))
    logger.info("FAST tokenizer fitted: %s", report)
    return fast, report


def normalize_actions(config: LabVLAConfig, stats: dict, chunks: np.ndarray) -> np.ndarray:
    """Normalize `(N, T, A)` actions exactly as the preprocessor will (LeRobot's own normalizer)."""
    from lerobot.processor import NormalizerProcessorStep
    from lerobot.processor.converters import create_transition
    from lerobot.lerobot_types import TransitionKey

    step = NormalizerProcessorStep(
        features={ACTION: config.output_features[ACTION]},
        norm_map={FeatureType.ACTION: config.normalization_mapping["ACTION"]},
        stats={ACTION: stats[ACTION]},
    )
    out = step(create_transition(action=torch.from_numpy(chunks).float()))
    return out[TransitionKey.ACTION].numpy()
