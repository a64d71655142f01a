"""The Qwen3-VL backbone: building it (Hub id, local dir or `tiny`), its tokenizer, and the prefix.

The sequence of one sample is the official LabVLA one:
    [state soft token (ki)] [<vision_start> <image_pad> x n <vision_end>] x camera slots
    [prompt right-padded to a fixed length] [FAST tokens (training)]
The expert reads the last hidden states of the camera slots + prompt; the FAST tokens follow
them, so with Qwen's causal attention they never leak into the states the expert sees.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lerobot_labvla.errors import LabVLAError

logger = logging.getLogger(__name__)

TINY_TOKENIZER_DIR = Path(__file__).parent / "tiny_tokenizer"
# 256 bytes + 7 specials + room for a 1024-token FAST vocab and 128 skipped ids at the top.
TINY_VOCAB_SIZE = 1536
# Qwen's special tokens, in the order the tiny tokenizer numbers them after the 256 bytes.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen3-VL's image processor normalizes with mean = std = 0.5.
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5


def tiny_backbone_config() -> dict:
    """A random-weight Qwen3-VL small enough for CPU tests (about 0.4M parameters)."""
    ids = {tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)}
    return {
        "model_type": "qwen3_vl",
        "text_config": {
            "vocab_size": TINY_VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True},
            "tie_word_embeddings": False,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [0],
        },
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": False,
    }


def qwen3_vl_4b_config() -> dict:
    """Qwen/Qwen3-VL-4B-Instruct's architecture (from its config.json), for building the full-size
    model with random weights where the Hub is out of reach: shape checks, parameter counts,
    speed benchmarks. Real training loads the weights with `from_pretrained`."""
    return {
        "model_type": "qwen3_vl",
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 2560,
            "intermediate_size": 9728,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True},
            "tie_word_embeddings": True,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
        },
        "vision_config": {
            "depth": 24,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_heads": 16,
            "out_hidden_size": 2560,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [5, 11, 17],
            "hidden_act": "gelu_pytorch_tanh",
        },
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "tie_word_embeddings": True,
    }


REFERENCE_CONFIGS = {"tiny": tiny_backbone_config, "Qwen/Qwen3-VL-4B-Instruct": qwen3_vl_4b_config}


def build_tiny_tokenizer():
    """A byte-level tokenizer (256 bytes + Qwen's special tokens, no merges) for the tiny backbone.

    Built with `tokenizers` so no file has to be downloaded; the package ships the result in
    `tiny_tokenizer/` and a test checks that the shipped files equal a fresh build.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # The 256 byte symbols of GPT-2-style byte-level BPE; their order only fixes the ids.
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(source: str | Path):
    """The prompt tokenizer: `tiny`, a local dir, or a Hub id (from the HF cache when offline)."""
    from transformers import AutoTokenizer

    if str(source) == "tiny":
        source = TINY_TOKENIZER_DIR
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except OSError as exc:
        raise LabVLAError(
            f"cannot load the backbone tokenizer from {source!r}: {exc}. Use a local Qwen3-VL dir, "
            "a Hub id that is in the HF cache, or --policy.backbone=tiny"
        ) from exc


def resolve_attn_implementation(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def build_vlm(backbone: str, backbone_config: dict | None, *, load_weights: bool, attn_implementation: str, dtype: torch.dtype):
    """Return `(vlm, config_dict)`.

    `load_weights=True` with a Hub id / local dir calls `from_pretrained` (the real path);
    otherwise the VLM is built from `backbone_config` (a checkpoint's stored config, or the
    tiny one) with random weights that the caller overwrites from `model.safetensors`.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    attn = resolve_attn_implementation(attn_implementation)
    if backbone_config is None and (backbone == "tiny" or not load_weights) and backbone in REFERENCE_CONFIGS:
        backbone_config = REFERENCE_CONFIGS[backbone]()
    if load_weights and backbone != "tiny":
        try:
            vlm = Qwen3VLForConditionalGeneration.from_pretrained(backbone, dtype=dtype, attn_implementation=attn)
        except OSError as exc:
            raise LabVLAError(
                f"cannot load the backbone {backbone!r}: {exc}. Pass a local Qwen3-VL dir, a Hub id in the HF "
                "cache (the Hub is offline here), or --policy.backbone=tiny"
            ) from exc
        return vlm, vlm.config.to_dict()
    if backbone_config is None:
        raise LabVLAError(f"no stored backbone_config to rebuild {backbone!r} offline")
    cfg = Qwen3VLConfig(**{k: v for k, v in backbone_config.items() if k not in ("architectures", "transformers_version")})
    cfg._attn_implementation = attn
    for sub in (cfg.text_config, cfg.vision_config):
        sub._attn_implementation = attn
    vlm = Qwen3VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    return vlm, backbone_config


def patchify(images: Tensor, *, size: int, patch: int, temporal: int, merge: int) -> Tensor:
    """`(N, 3, size, size)` floats in [0, 1] -> Qwen-VL flattened patches `(N * gh * gw, 3 * temporal * patch**2)`.

    The same layout as transformers' `Qwen2VLImageProcessor` (view + permute below are copied from
    it), but batched on the model's device with one fixed output size, where the HF processor
    resizes each image on its own grid; a test checks both give the same patches.
    """
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (images - IMAGE_MEAN) / IMAGE_STD
    x = x.unsqueeze(1).expand(-1, temporal, -1, -1, -1)  # a still image repeats over the temporal patch
    n, c = x.shape[0], x.shape[2]
    g = size // patch
    x = x.reshape(n, 1, temporal, c, g // merge, merge, patch, g // merge, merge, patch)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return x.reshape(n * g * g, c * temporal * patch * patch)


def resize_with_pad(images: Tensor, size: int) -> Tensor:
    """`(N, 3, H, W)` -> `(N, 3, size, size)`: keep the aspect ratio, pad with black (openpi's resize_with_pad)."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    ratio = max(h, w) / size
    nh, nw = int(h / ratio), int(w / ratio)
    resized = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (size - nh) // 2, (size - nw) // 2
    return F.pad(resized, (left, size - nw - left, top, size - nh - top))


@dataclass
class Prefix:
    """The VLM's output for a batch: states the expert reads and, in FAST modes, the FAST positions."""

    hidden: Tensor  # (B, L, H) last hidden states of the camera slots + prompt
    mask: Tensor  # (B, L) True on real tokens (masked camera slots and prompt padding are False)
    fast_hidden: Tensor | None = None  # (B, L_fast, H) hidden states that predict the FAST tokens
    # The prefix slice of the deepest `hidden_layers` LM hidden states, shallow -> deep (layerwise expert).
    layers: list[Tensor] | None = None


class QwenBackbone(nn.Module):
    """Wraps `Qwen3VLForConditionalGeneration` as the official LabVLA uses it.

    Sequence: `[state token?] [<vision_start> <image_pad> x n <vision_end>] x num_camera_slots
    [prompt padded to a fixed length] [FAST tokens?]`. The vision tower's deepstack features are
    dropped (the official model runs `visual` and then `language_model` on the merged embeddings).
    """

    def __init__(
        self, vlm, tokenizer, *, image_size: int, num_camera_slots: int, state_dim: int | None = None, pad_image_size: int | None = None
    ):
        super().__init__()
        self.pad_image_size = pad_image_size
        self.vlm = vlm
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.num_camera_slots = num_camera_slots
        cfg = vlm.config
        vc = cfg.vision_config
        self.patch, self.merge, self.temporal = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size
        if image_size % (self.patch * self.merge):
            raise LabVLAError(
                f"--policy.image_size={image_size} must be a multiple of patch*merge={self.patch * self.merge}"
            )
        self.grid = image_size // self.patch
        self.tokens_per_image = (self.grid // self.merge) ** 2
        self.image_token_id = cfg.image_token_id
        self.vision_start_id = cfg.vision_start_token_id
        self.vision_end_id = cfg.vision_end_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # Knowledge insulation's state soft token (official `state_vlm_proj`).
        self.state_vlm_proj = nn.Linear(state_dim, self.hidden_size) if state_dim else None

    @property
    def hidden_size(self) -> int:
        return self.vlm.config.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.vlm.config.text_config.vocab_size

    def build_inputs(self, images: list[Tensor | None], prompts: list[str], max_prompt_tokens: int) -> dict:
        """Token ids, masks and pixels. `images`: one `(B, 3, H, W)` in [0, 1] or None per camera slot.

        A missing slot is filled with the first present camera's pixels and masked out of attention
        (the official processor does the same, so the vision tower sees a fixed number of images).
        """
        present = [im for im in images if im is not None]
        if not present:
            raise LabVLAError("no camera image in the batch")
        device = present[0].device
        bsz = present[0].shape[0]
        slots = [im if im is not None else present[0] for im in images]
        slot_mask = [im is not None for im in images]
        n = self.tokens_per_image
        vision_ids, vision_mask = [], []
        for keep in slot_mask:
            vision_ids += [self.vision_start_id] + [self.image_token_id] * n + [self.vision_end_id]
            vision_mask += [int(keep)] * (n + 2)
        text = self.tokenizer(
            list(prompts), max_length=max_prompt_tokens, padding="max_length", truncation=True, padding_side="right"
        )
        input_ids = torch.tensor([vision_ids + row for row in text["input_ids"]], dtype=torch.long)
        attention = torch.tensor([vision_mask + row for row in text["attention_mask"]], dtype=torch.long)
        # Cameras interleaved per sample (sample 0: slot 0, slot 1, ..., sample 1: ...), the order the
        # image tokens appear in the flattened batch.
        pix = torch.stack([self.resize(im) for im in slots], dim=1).flatten(0, 1)
        pixel_values = patchify(pix, size=self.image_size, patch=self.patch, temporal=self.temporal, merge=self.merge)
        grid = torch.tensor([[1, self.grid, self.grid]] * pix.shape[0], dtype=torch.long)
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": attention.to(device),
            "mm_token_type_ids": (input_ids == self.image_token_id).int().to(device),
            "pixel_values": pixel_values,
            "image_grid_thw": grid.to(device),
            "batch_size": bsz,
        }

    def resize(self, images: Tensor) -> Tensor:
        """Resize-with-pad (to `pad_image_size` first, then bicubic to `image_size`, as the HF processor)."""
        if self.pad_image_size is None or self.pad_image_size == self.image_size:
            return resize_with_pad(images, self.image_size)
        padded = resize_with_pad(images, self.pad_image_size)
        size = (self.image_size, self.image_size)
        return F.interpolate(padded, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)

    def embed_prefix(self, inputs: dict) -> tuple[Tensor, Tensor, Tensor]:
        """Vision-merged embeddings `(B, L, H)`, M-RoPE positions `(3, B, L)`, attention `(B, L)`."""
        model = self.vlm.model
        ids = inputs["input_ids"]
        embeds = model.get_input_embeddings()(ids)
        vision = model.visual(inputs["pixel_values"].to(model.visual.dtype), grid_thw=inputs["image_grid_thw"], return_dict=True)
        image_mask = (ids == self.image_token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(image_mask, vision.pooler_output.to(embeds.dtype))
        positions, _ = model.get_rope_index(
            ids, inputs["mm_token_type_ids"], inputs["image_grid_thw"], attention_mask=inputs["attention_mask"]
        )
        return embeds, positions, inputs["attention_mask"]

    def forward(
        self,
        inputs: dict,
        state: Tensor | None = None,
        fast_embeds: Tensor | None = None,
        fast_mask: Tensor | None = None,
        hidden_layers: int = 0,
    ) -> Prefix:
        """One causal LM pass over `[state token?] prefix [FAST?]`; the expert reads the prefix slice.

        `hidden_layers=n` also returns the prefix slice of the last n of the LM's hidden states
        (`output_hidden_states`: the embeddings, each layer's output, the last one normed), as the
        official `dit_layerwise_vlm_features` takes them.
        """
        if hidden_layers > self.vlm.config.text_config.num_hidden_layers + 1:
            raise LabVLAError(
                f"{hidden_layers} layerwise VLM features requested but the LM has only "
                f"{self.vlm.config.text_config.num_hidden_layers + 1} hidden states"
            )
        embeds, positions, attention = self.embed_prefix(inputs)
        bsz, length = attention.shape
        parts, masks, n_pre = [embeds], [attention], 0
        if state is not None:
            if self.state_vlm_proj is None:
                raise LabVLAError("this policy has no state_vlm_proj (vlm_state_token is off)")
            parts.insert(0, self.state_vlm_proj(state.to(self.state_vlm_proj.weight.dtype)).to(embeds.dtype)[:, None])
            masks.insert(0, attention.new_ones(bsz, 1))
            n_pre = 1
            positions = torch.cat([positions.new_zeros(3, bsz, 1), positions + 1], dim=2)
        if fast_embeds is not None:
            n_fast = fast_embeds.shape[1]
            parts.append(fast_embeds.to(embeds.dtype))
            masks.append(fast_mask.to(attention.dtype))
            last = positions.max(dim=2).values
            positions = torch.cat([positions, last[:, :, None] + torch.arange(1, n_fast + 1, device=positions.device)], dim=2)
        out = self.vlm.model.language_model(
            inputs_embeds=torch.cat(parts, dim=1),
            attention_mask=torch.cat(masks, dim=1),
            position_ids=positions,
            use_cache=False,
            output_hidden_states=hidden_layers > 0,
        )
        hidden = out.last_hidden_state
        prefix = Prefix(hidden=hidden[:, n_pre : n_pre + length], mask=attention.bool())
        if hidden_layers > 0:
            prefix.layers = [h[:, n_pre : n_pre + length] for h in out.hidden_states[-hidden_layers:]]
        if fast_embeds is not None:
            start = n_pre + length - 1  # position p predicts token p + 1
            prefix.fast_hidden = hidden[:, start : start + fast_embeds.shape[1]]
        return prefix
