"""The Qwen3-VL backbone: building it (Hub id, local dir or `tiny`), its tokenizer, and the prefix.

The prefix of one sample is
    [<vision_start> <image_pad> x n <vision_end>] per camera, prompt tokens, (FAST tokens, <eos>)
right-padded in the batch. The expert reads the hidden states of the images + prompt; the FAST
tokens (training only) follow them, so with Qwen's causal attention they never leak into the
states the expert sees.
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
    """`(N, 3, H, W)` floats in [0, 1] -> Qwen-VL flattened patches `(N * gh * gw, 3 * temporal * patch**2)`.

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


@dataclass
class Prefix:
    """The VLM's output for a batch: states the expert reads and, in FAST modes, target logits."""

    hidden: Tensor  # (B, L, H) hidden states of images + prompt (zero beyond each sample's prefix)
    mask: Tensor  # (B, L) True on real prefix tokens
    fast_logits: Tensor | None = None  # (N_targets, V) logits at the positions predicting FAST targets
    fast_labels: Tensor | None = None  # (N_targets,) the targets (VLM vocab ids)


class QwenBackbone(nn.Module):
    """Wraps `Qwen3VLForConditionalGeneration`: builds the token layout and runs one forward."""

    def __init__(self, vlm, tokenizer, *, image_size: int, max_prompt_tokens: int):
        super().__init__()
        self.vlm = vlm
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.max_prompt_tokens = max_prompt_tokens
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
        self.eos_id = tokenizer.eos_token_id

    @property
    def hidden_size(self) -> int:
        return self.vlm.config.text_config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.vlm.config.text_config.vocab_size

    def build_inputs(self, images: list[Tensor], prompts: list[str], targets: list[list[int]] | None = None) -> dict:
        """Token ids, masks and pixel values for a batch. `images`: one `(B, 3, H, W)` per camera."""
        device = images[0].device
        bsz = images[0].shape[0]
        vision = []
        for _ in images:
            vision += [self.vision_start_id] + [self.image_token_id] * self.tokens_per_image + [self.vision_end_id]
        prompt_ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        rows, prefix_lens, target_spans = [], [], []
        for i in range(bsz):
            ids = vision + prompt_ids[i][: self.max_prompt_tokens]
            prefix_lens.append(len(ids))
            if targets is not None:
                tgt = list(targets[i]) + [self.eos_id]
                target_spans.append((len(ids), len(ids) + len(tgt)))
                ids = ids + tgt
            rows.append(ids)
        length = max(map(len, rows))
        input_ids = torch.full((bsz, length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((bsz, length), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
        positions = torch.arange(length)
        prefix_mask = positions[None, :] < torch.tensor(prefix_lens)[:, None]
        # Cameras are interleaved per sample (sample 0: cam 0, cam 1, sample 1: ...), the order the
        # image tokens appear in the flattened batch.
        pix = torch.stack(images, dim=1).flatten(0, 1)
        pixel_values = patchify(pix, size=self.image_size, patch=self.patch, temporal=self.temporal, merge=self.merge)
        grid = torch.tensor([[1, self.grid, self.grid]] * pix.shape[0], dtype=torch.long)
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": attention.to(device),
            "mm_token_type_ids": (input_ids == self.image_token_id).int().to(device),
            "pixel_values": pixel_values,
            "image_grid_thw": grid.to(device),
            "prefix_mask": prefix_mask.to(device),
            "target_spans": target_spans,
        }

    def forward(self, inputs: dict) -> Prefix:
        out = self.vlm.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"].to(self.vlm.dtype),
            image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            use_cache=False,
        )
        # Qwen3VLModel keeps rope_deltas as state for generation; a training/prefix forward must not reuse it.
        self.vlm.model.rope_deltas = None
        hidden = out.last_hidden_state
        prefix = Prefix(hidden=hidden, mask=inputs["prefix_mask"])
        if inputs["target_spans"]:
            rows, cols = [], []
            for i, (start, end) in enumerate(inputs["target_spans"]):
                rows += [i] * (end - start)
                cols += list(range(start, end))
            rows_t = torch.tensor(rows, device=hidden.device)
            cols_t = torch.tensor(cols, device=hidden.device)
            # Position p predicts token p + 1.
            prefix.fast_logits = self.vlm.lm_head(hidden[rows_t, cols_t - 1]).float()
            prefix.fast_labels = inputs["input_ids"][rows_t, cols_t]
        return prefix
