"""`LabVLAConfig`: the single source of shapes for the LabVLA policy (registered as `labvla`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lerobot.configs import FeatureType, NormalizationMode, PreTrainedConfig
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig
from lerobot.utils.constants import ACTION, OBS_STATE

from lerobot_labvla.errors import LabVLAError

MODES = ("fast_pretrain", "ki", "finetune")
EXPERT_ATTENTION = ("cross", "mot")
DTYPES = ("float32", "bfloat16")
TINY_BACKBONE = "tiny"


@PreTrainedConfig.register_subclass("labvla")
@dataclass
class LabVLAConfig(PreTrainedConfig):
    """Qwen3-VL backbone + DiT flow-matching action expert, trained in three modes.

    `mode`: `fast_pretrain` (CE on FAST action tokens, expert unused), `ki` (knowledge
    insulation: `fm_loss_weight`*FM + `fast_loss_weight`*FAST CE, the expert reads detached VLM
    states), `finetune` (FM only; `freeze_backbone` keeps the VLM fixed).
    """

    mode: str = "ki"

    # Backbone: a Hub id or local dir of a Qwen3-VL checkpoint, or `tiny` (random weights, offline).
    backbone: str = "Qwen/Qwen3-VL-4B-Instruct"
    # The backbone's own config (Qwen3VLConfig.to_dict()), filled at first build so that a
    # checkpoint rebuilds the VLM without the Hub.
    backbone_config: dict[str, Any] | None = None
    # Build the backbone from `backbone_config` (or the known config of `backbone`) with random
    # weights instead of downloading them: shape checks, benchmarks, training from scratch.
    random_init_backbone: bool = False
    # Prompt tokenizer: defaults to the backbone's; `tiny` is the byte-level one shipped here.
    tokenizer: str | None = None
    freeze_backbone: bool = False
    # `finetune` only: keep the Qwen3-VL vision encoder fixed (the official LabUtopia fine-tuning recipe).
    freeze_vision_encoder: bool = False
    image_size: int = 224
    # Two-stage resize of the official pipeline: resize-with-pad to `pad_image_size` (official
    # image_resolution, 224), then the Qwen3-VL processor's smart resize to `image_size` (its
    # min_pixels 65536 turns 224 into 256, i.e. 64 tokens per camera). None = pad straight to image_size.
    pad_image_size: int | None = None
    # The official layout: `num_camera_slots` fixed camera slots (resize-with-pad to `image_size`);
    # slots without a configured camera, or whose camera is absent from the batch, are masked out.
    num_camera_slots: int = 3
    # Prompt token budget: the instruction is right-padded/truncated to this many tokens (official
    # posttrain: 48); fast_pretrain prompts that carry the discretized state use the second budget (192).
    max_prompt_tokens: int = 48
    max_prompt_tokens_with_state: int = 192
    # Official knowledge insulation: `state_vlm_proj(state)` as one soft token at VLM position 0.
    # None = on in `ki` mode only (a converted checkpoint records its own value).
    vlm_state_token: bool | None = None

    # Action expert (DiT).
    expert_layers: int = 18
    expert_width: int = 1024
    expert_heads: int = 8
    # `cross` = the official DiT above; `mot` = LingBot-style Mixture-of-Transformers (mot.py): one
    # expert layer per backbone layer sharing its attention, `expert_width` wide, with the backbone's
    # heads and head_dim (expert_layers / expert_heads are not used).
    expert_attention: str = "cross"
    # Official (2026-05-13+) layout: even blocks cross-attend to the VLM, odd blocks self-attend over
    # [state, actions]. False = every block cross-attends (the official pre-2026-05-13 layout).
    expert_interleave_self_attention: bool = True
    # Official `dit_layerwise_vlm_features` (starVLA-style, off by default): with n cross-attention
    # blocks, block i reads the i-th of the VLM's n deepest hidden states (shallow -> deep, the last
    # being the final normed one) through the one shared projection, instead of all reading the last.
    expert_layerwise_vlm_features: bool = False

    # Chunking and sampling.
    n_obs_steps: int = 1
    chunk_size: int = 10
    n_action_steps: int = 10
    num_inference_steps: int = 10
    # Real-time chunking: an `RTCConfig`, which `lerobot-rollout --inference.type=rtc` assigns to
    # `policy.config.rtc_config`; sampling goes through LeRobot's euler_integrate. Typed `Any`
    # because importing `lerobot.policies.rtc` here would run `lerobot.policies`' factory and
    # `lerobot.datasets` in every process that imports the plugin (+210 MB, +1 s per CLI start).
    rtc_config: Any = None
    # Official flow time (t = 0 noise, 1 clean): t = Beta(time_beta_beta, time_beta_alpha) * 0.999,
    # i.e. noise-side time 1 - t ~ Beta(1.5, 1) as in pi0 (the official code's swapped argument order).
    time_beta_alpha: float = 1.5
    time_beta_beta: float = 1.0

    # Embodiment-agnostic padding.
    max_state_dim: int = 32
    max_action_dim: int = 32
    state_bins: int = 256

    # Delta actions with LeRobot's own relative/absolute processor steps (as pi05): the model sees
    # `action - state` on every dim except those whose name contains one of `relative_exclude_joints`
    # (the official LabVLA `delta_mask`: arm as chunk delta against the t0 state, gripper absolute);
    # the postprocessor adds the state back, so served actions are absolute.
    use_relative_actions: bool = False
    relative_exclude_joints: list[str] = field(default_factory=lambda: ["gripper"])
    # Set by LeRobot's make_policy from the dataset's action names.
    action_feature_names: list[str] | None = None
    # Per-dim normalization (official posttrain): STATE/ACTION use MEAN_STD, except these dims of
    # both, which are scaled by their q01/q99 to [-1, 1]. None = the dims whose action name contains
    # "gripper", and every dim in fast_pretrain (official pretrain: q01/q99 everywhere, so the
    # `<state>` bins, uniform over [-1, 1], cover the state range).
    quantile_dims: list[int] | None = None

    # Losses.
    fm_loss_weight: float = 10.0
    fast_loss_weight: float = 1.0
    # Official `gripper_loss_weight`: the squared FM error on `gripper_action_dims` is multiplied by it
    # before the mean over valid elements (the count is not reweighted); 1.0 = off (official default).
    # None = the dims whose action name contains "gripper" (the official fills them from the schema).
    gripper_loss_weight: float = 1.0
    gripper_action_dims: list[int] | None = None

    # FAST action tokenizer (DCT + BPE), fitted on the training set's action chunks.
    fast_vocab_size: int = 1024
    fast_scale: float = 10.0
    fast_skip_tokens: int = 128
    max_fast_tokens: int = 256
    fast_fit_max_chunks: int = 20_000

    # Depth distillation (LingBot-VLA, depth_distill.py): learnable query tokens at the end of the
    # backbone's sequence, projected to depth features of the dataset's `observation.depth.<camera>`
    # streams (depth_grid**2 queries per stream), smooth-L1, times depth_loss_weight. Off (with a log
    # line) when the dataset has no depth stream. `depth_encoder`: a TorchScript depth model at a local
    # path ((N, 1, H, W) -> (N, D, h, w)); None = the built-in pooled-depth targets.
    depth_distill: bool = False
    depth_loss_weight: float = 0.1
    depth_grid: int = 4
    depth_encoder: str | None = None
    depth_feature_dim: int | None = None  # filled at first build from the encoder

    # Memory / speed. `dtype` also drives LeRobot 0.6's accelerate mixed precision.
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    attn_implementation: str = "auto"  # auto | sdpa | flash_attention_2 | eager
    compile: bool = False

    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    # Optimizer / scheduler presets (pi05's, scaled for a from-scratch expert).
    optimizer_lr: float = 1e-4
    # Per-part learning rates (official KI recipe: VLM 1e-5, expert 1e-4); unset = optimizer_lr.
    # "expert" is everything outside the VLM: the DiT, the FAST head, the projections.
    optimizer_lr_vlm: float | None = None
    optimizer_lr_expert: float | None = None
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-2
    optimizer_grad_clip_norm: float = 1.0
    scheduler_warmup_steps: int = 100
    scheduler_decay_steps: int = 30_000
    scheduler_decay_lr: float = 2.5e-6

    # Offline-first: pushing needs an explicit `--policy.push_to_hub=true --policy.repo_id=...`.
    push_to_hub: bool = False

    def validate_options(self) -> None:
        """Check option values; raises `LabVLAError` naming the flag and its valid values.

        Not in `__post_init__`: draccus turns any exception raised there into a generic
        "Couldn't instantiate class" and drops our message, so the policy calls this first.
        """
        _choice("mode", self.mode, MODES)
        _choice("expert_attention", self.expert_attention, EXPERT_ATTENTION)
        _choice("dtype", self.dtype, DTYPES)
        if self.expert_attention == "mot" and self.expert_layerwise_vlm_features:
            raise LabVLAError(
                "--policy.expert_layerwise_vlm_features=true is for the cross-attention expert; with "
                "--policy.expert_attention=mot the expert already reads every backbone layer"
            )
        if self.expert_width % self.expert_heads:
            raise LabVLAError(
                f"--policy.expert_width={self.expert_width} must be divisible by --policy.expert_heads={self.expert_heads}"
            )
        if self.n_action_steps > self.chunk_size:
            raise LabVLAError(
                f"--policy.n_action_steps={self.n_action_steps} must be <= --policy.chunk_size={self.chunk_size}"
            )
        if not self.gripper_loss_weight > 0:
            raise LabVLAError(
                f"--policy.gripper_loss_weight={self.gripper_loss_weight} must be > 0 (1.0 = no weighting; 0 would "
                "drop the gripper's supervision, a negative value flip its gradient)"
            )
        for name in ("chunk_size", "num_inference_steps", "max_state_dim", "max_action_dim", "image_size", "max_prompt_tokens"):
            if getattr(self, name) <= 0:
                raise LabVLAError(f"--policy.{name} must be positive, got {getattr(self, name)}")

    # --- features -------------------------------------------------------------------------
    def validate_features(self) -> None:
        self.validate_options()
        if not self.image_features:
            raise LabVLAError(
                "labvla needs at least one camera (an `observation.images.*` feature); the dataset has none"
            )
        if len(self.image_features) > self.num_camera_slots:
            raise LabVLAError(
                f"{len(self.image_features)} cameras but --policy.num_camera_slots={self.num_camera_slots}; "
                "raise it or drop cameras with --rename_map"
            )
        state = self.input_features.get(OBS_STATE)
        if state is not None and state.shape[0] > self.max_state_dim:
            raise LabVLAError(
                f"state dim {state.shape[0]} > --policy.max_state_dim={self.max_state_dim}; "
                f"raise it to at least {state.shape[0]}"
            )
        action = self.output_features.get(ACTION)
        if action is None:
            raise LabVLAError("labvla needs an `action` output feature; the dataset has none")
        if action.shape[0] > self.max_action_dim:
            raise LabVLAError(
                f"action dim {action.shape[0]} > --policy.max_action_dim={self.max_action_dim}; "
                f"raise it to at least {action.shape[0]}"
            )

    def set_dataset_feature_metadata(self, dataset_features: dict) -> None:
        """Called by LeRobot's `make_policy` with the training dataset's features.

        A checkpoint keeps its own `input_features`; fine-tuning it on another embodiment (other
        state dim, other cameras) must take the new dataset's, which the padded state/action and
        the camera-count-agnostic prefix allow.
        """
        from lerobot.utils.feature_utils import dataset_to_policy_features

        features = dataset_to_policy_features(dataset_features)
        self.input_features = {k: f for k, f in features.items() if f.type is not FeatureType.ACTION}

    @property
    def state_dim(self) -> int:
        state = self.input_features.get(OBS_STATE)
        return 0 if state is None else int(state.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.output_features[ACTION].shape[0])

    @property
    def image_features(self) -> dict:
        # LeRobot types every video feature VISUAL, depth maps too (`labvla-genesis generate --depth` writes
        # `observation.depth.<camera>`): those feed depth distillation, never a camera slot.
        return {k: f for k, f in super().image_features.items() if not k.startswith("observation.depth")}

    @property
    def camera_keys(self) -> list[str]:
        return list(self.image_features)

    @property
    def uses_vlm_state_token(self) -> bool:
        return self.mode == "ki" if self.vlm_state_token is None else self.vlm_state_token

    @property
    def resolved_quantile_dims(self) -> list[int]:
        if self.quantile_dims is not None:
            return list(self.quantile_dims)
        if self.mode == "fast_pretrain":
            return list(range(max(self.max_state_dim, self.max_action_dim)))
        names = self.action_feature_names or []
        return [i for i, name in enumerate(names) if "gripper" in str(name).lower()]

    @property
    def resolved_gripper_action_dims(self) -> list[int]:
        if self.gripper_action_dims is not None:
            return list(self.gripper_action_dims)
        names = self.action_feature_names or []
        return [i for i, name in enumerate(names) if "gripper" in str(name).lower()]

    @property
    def uses_fast(self) -> bool:
        return self.mode in ("fast_pretrain", "ki")

    @property
    def uses_expert(self) -> bool:
        return self.mode in ("ki", "finetune")

    # --- LeRobot contract -----------------------------------------------------------------
    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            eps=self.optimizer_eps,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            peak_lr=self.optimizer_lr,
            decay_lr=self.scheduler_decay_lr,
            num_warmup_steps=self.scheduler_warmup_steps,
            num_decay_steps=self.scheduler_decay_steps,
        )


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise LabVLAError(f"--policy.{name}={value!r} is not one of {', '.join(choices)}")
