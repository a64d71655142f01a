"""A tiny checkpoint in the OFFICIAL zjunlp/LabVLA layout, converted with `labvla-convert official`, must
compute what the official model computes. The reference below is written from the official equations
(`dit_action_head.py`, `modeling_labvla.py`, `transforms/core.py`), on the raw official tensors, with
none of our modules: diffusers' Timesteps/SinusoidalPositionalEmbedding/AdaLayerNorm/Attention/
FeedForward, the KI state soft token, t = 0 noise Euler 0 -> 1, per-dim normalization, delta actions.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.backbone import TINY_TOKENIZER_DIR, tiny_backbone_config

W_HEADS, W_HEAD_DIM, LAYERS, CHUNK, VOCAB = 2, 16, 4, 10, 64
WIDTH = W_HEADS * W_HEAD_DIM
STATE, ACT, MAXD, IMG, PROMPT = 8, 8, 32, 64, 48
CAMS = ["observation.images.cam_high", "observation.images.cam_wrist", "observation.images.cam_side"]


def official_tensors(ki: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    vlm = Qwen3VLForConditionalGeneration._from_config(Qwen3VLConfig(**tiny_backbone_config()))
    sd = {f"model.vlm.{k}": v.clone() for k, v in vlm.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)

    def rnd(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    hidden = vlm.config.text_config.hidden_size
    head = "model.dit_action_head."
    sd[head + "timestep_encoder.timestep_embedder.linear_1.weight"] = rnd(WIDTH, 256)
    sd[head + "timestep_encoder.timestep_embedder.linear_1.bias"] = rnd(WIDTH)
    sd[head + "timestep_encoder.timestep_embedder.linear_2.weight"] = rnd(WIDTH, WIDTH)
    sd[head + "timestep_encoder.timestep_embedder.linear_2.bias"] = rnd(WIDTH)
    pos = torch.arange(512, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, WIDTH, 2).float() * (-math.log(10000.0) / WIDTH))
    pe = torch.zeros(1, 512, WIDTH)
    pe[0, :, 0::2], pe[0, :, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    for i in range(LAYERS):
        b = f"{head}transformer_blocks.{i}."
        sd[b + "norm1.linear.weight"], sd[b + "norm1.linear.bias"] = rnd(2 * WIDTH, WIDTH), rnd(2 * WIDTH)
        for n in ("to_q", "to_k", "to_v"):
            sd[b + f"attn1.{n}.weight"], sd[b + f"attn1.{n}.bias"] = rnd(WIDTH, WIDTH), rnd(WIDTH)
        sd[b + "attn1.to_out.0.weight"], sd[b + "attn1.to_out.0.bias"] = rnd(WIDTH, WIDTH), rnd(WIDTH)
        sd[b + "ff.net.0.proj.weight"], sd[b + "ff.net.0.proj.bias"] = rnd(4 * WIDTH, WIDTH), rnd(4 * WIDTH)
        sd[b + "ff.net.2.weight"], sd[b + "ff.net.2.bias"] = rnd(WIDTH, 4 * WIDTH), rnd(WIDTH)
        sd[b + "pos_embed.pe"] = pe.clone()
    sd[head + "proj_out_1.weight"], sd[head + "proj_out_1.bias"] = rnd(2 * WIDTH, WIDTH), rnd(2 * WIDTH)
    sd["model.proj_vlm_to_dit.weight"], sd["model.proj_vlm_to_dit.bias"] = rnd(WIDTH, hidden), rnd(WIDTH)
    sd["model.state_proj.weight"], sd["model.state_proj.bias"] = rnd(WIDTH, MAXD), rnd(WIDTH)
    sd["model.action_in_proj.weight"], sd["model.action_in_proj.bias"] = rnd(WIDTH, MAXD), rnd(WIDTH)
    sd["model.action_out_proj.weight"], sd["model.action_out_proj.bias"] = rnd(MAXD, WIDTH), rnd(MAXD)
    if ki:
        sd["model.ki_head.embedding.weight"], sd["model.ki_head.classifier.weight"] = rnd(VOCAB, hidden), rnd(VOCAB, hidden)
        sd["model.state_vlm_proj.weight"], sd["model.state_vlm_proj.bias"] = rnd(hidden, MAXD), rnd(hidden)
    return sd


def write_official(root, *, ki: bool, interleave: bool = True):
    """The official trainer's layout: pretrained_model/{model.safetensors,config.json} + stats + schema."""
    vlm_dir = root / "qwen"
    shutil.copytree(TINY_TOKENIZER_DIR, vlm_dir)
    (vlm_dir / "config.json").write_text(json.dumps(tiny_backbone_config()))
    # The processor's pixel budget decides the token count (Qwen3-VL ships shortest_edge 65536: 224 -> 256).
    (vlm_dir / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": IMG * IMG, "longest_edge": 16777216}}))
    model_dir = root / "ckpt" / "pretrained_model"
    model_dir.mkdir(parents=True)
    tensors = official_tensors(ki)
    save_file(tensors, str(model_dir / "model.safetensors"))
    config = {
        "type": "labvla", "dtype": "float32", "dit_num_layers": LAYERS, "dit_num_heads": W_HEADS, "dit_head_dim": W_HEAD_DIM,
        "dit_dropout": 0.0, "dit_cross_attention_dim": None, "dit_interleave_self_attention": interleave,
        "dit_layerwise_vlm_features": False, "n_obs_steps": 1, "chunk_size": CHUNK, "n_action_steps": CHUNK,
        "max_state_dim": MAXD, "max_action_dim": MAXD, "num_inference_steps": 10, "time_sampling_beta_alpha": 1.5,
        "time_sampling_beta_beta": 1.0, "time_sampling_scale": 0.999, "time_sampling_offset": 0.0,
        "image_resolution": [IMG, IMG], "vlm_pretrained_path": str(vlm_dir), "attn_implementation": "sdpa",
        "tokenizer_max_length": PROMPT, "training_phase": "posttrain", "action_mode": "delta",
        "knowledge_isolation": ki, "use_fast_tokenizer": ki, "discrete_action_vocab_size": VOCAB,
        "discrete_action_max_length": 240, "ki_mse_weight": 10.0, "pi05_block_attention_mask": False,
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(7)
    stats = {}
    for key, dim in (("observation.state", STATE), ("action", ACT)):
        mean = torch.randn(dim, generator=g) * 0.3
        q01 = mean - 0.5 - torch.rand(dim, generator=g)
        stats[key] = {"mean": mean.tolist(), "std": (0.2 + torch.rand(dim, generator=g)).tolist(),
                      "q01": q01.tolist(), "q99": (q01 + 0.5 + torch.rand(dim, generator=g)).tolist()}
    (root / "ckpt" / "norm_stats.json").write_text(json.dumps(stats))
    schema = {"robot_type": "franka", "delta_mask": [True] * 7 + [False], "gripper_action_dims": [7],
              "image_mapping": {c: f"observation.images.image{i}" for i, c in enumerate(CAMS)}}
    (root / "ckpt" / "labvla_schema.json").write_text(json.dumps(schema))
    return root / "ckpt", tensors, config, stats, schema


# --- the official forward, from its equations -----------------------------------------------------
def ref_timesteps(t):  # diffusers Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - 1))
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def lin(x, sd, name):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def ref_attention(x, kv, sd, name, mask=None):
    b = x.shape[0]
    q, k, v = (lin(src, sd, f"{name}.{n}").view(b, -1, W_HEADS, W_HEAD_DIM).transpose(1, 2)
               for src, n in ((x, "to_q"), (kv, "to_k"), (kv, "to_v")))
    scores = q @ k.transpose(-1, -2) / math.sqrt(W_HEAD_DIM)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, WIDTH)
    return lin(y, sd, f"{name}.to_out.0")


def ref_velocity(sd, interleave, vlm_hidden, vlm_mask, state_p, x_t, t):
    """`LabVLAModel._denoise_step` of the official code: velocity toward the clean chunk (t = 0 noise)."""
    h = "model.dit_action_head."
    ctx = lin(vlm_hidden, sd, "model.proj_vlm_to_dit")
    x = torch.cat([lin(state_p, sd, "model.state_proj")[:, None], lin(x_t, sd, "model.action_in_proj")], dim=1)
    temb = lin(F.silu(lin(ref_timesteps(t), sd, h + "timestep_encoder.timestep_embedder.linear_1")), sd,
               h + "timestep_encoder.timestep_embedder.linear_2")
    for i in range(LAYERS):
        b = f"{h}transformer_blocks.{i}."
        scale, shift = lin(F.silu(temb), sd, b + "norm1.linear").chunk(2, -1)
        n = F.layer_norm(x, (WIDTH,), eps=1e-5) * (1 + scale[:, None]) + shift[:, None]
        n = n + sd[b + "pos_embed.pe"][:, : n.shape[1]]
        if interleave and i % 2 == 1:
            x = x + ref_attention(n, n, sd, b + "attn1")
        else:
            x = x + ref_attention(n, ctx, sd, b + "attn1", vlm_mask)
        f = F.gelu(lin(F.layer_norm(x, (WIDTH,), eps=1e-5), sd, b + "ff.net.0.proj"), approximate="tanh")
        x = x + lin(f, sd, b + "ff.net.2")
    shift, scale = lin(F.silu(temb), sd, h + "proj_out_1").chunk(2, -1)
    x = F.layer_norm(x, (WIDTH,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    return lin(x[:, -CHUNK:], sd, "model.action_out_proj")


def ref_vlm_hidden(sd, images, task, state_p, ki):
    """`_build_prefix_embeds` + (KI) `_run_vlm_forward_with_state_token`: deepstack dropped, state at pos 0."""
    from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    cfg = Qwen3VLConfig(**tiny_backbone_config())
    vlm = Qwen3VLForConditionalGeneration._from_config(cfg)
    vlm.load_state_dict({k[len("model.vlm."):]: v for k, v in sd.items() if k.startswith("model.vlm.")})
    vlm.eval()
    proc = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                 image_std=[0.5] * 3, do_resize=False, do_rescale=False)
    n_tok = (IMG // 32) ** 2
    ids, mask, pix = [], [], []
    for img in images:  # slot order; None = camera missing -> first valid image, attention 0
        use = img if img is not None else next(i for i in images if i is not None)
        pix.append(proc(images=[use[0]], return_tensors="pt")["pixel_values"])
        ids += [cfg.vision_start_token_id] + [cfg.image_token_id] * n_tok + [cfg.vision_end_token_id]
        mask += [int(img is not None)] * (n_tok + 2)
    tok = AutoTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR))
    text = tok(task, max_length=PROMPT, padding="max_length", truncation=True, padding_side="right")
    ids = torch.tensor([ids + text["input_ids"]])
    mask = torch.tensor([mask + text["attention_mask"]])
    grid = torch.tensor([[1, IMG // 16, IMG // 16]] * len(images))
    with torch.no_grad():
        image_embs = vlm.model.visual(torch.cat(pix), grid_thw=grid, return_dict=True).pooler_output
        embs = vlm.model.get_input_embeddings()(ids).clone()
        embs[ids == cfg.image_token_id] = image_embs
        pos, _ = vlm.model.get_rope_index(ids, (ids == cfg.image_token_id).int(), grid, attention_mask=mask)
        if ki:
            embs = torch.cat([lin(state_p, sd, "model.state_vlm_proj")[:, None], embs], dim=1)
            pos = torch.cat([torch.zeros(3, 1, 1, dtype=pos.dtype), pos + 1], dim=2)
            attn = torch.cat([torch.ones(1, 1, dtype=mask.dtype), mask], dim=1)
        else:
            attn = mask
        out = vlm.model.language_model(inputs_embeds=embs, attention_mask=attn, position_ids=pos, use_cache=False)
    hidden = out.last_hidden_state[:, 1:] if ki else out.last_hidden_state
    return hidden, mask.bool()


def ref_normalize(x, st, grippers):
    y = (x - torch.tensor(st["mean"])) / (torch.tensor(st["std"]) + 1e-6)
    q01, q99 = torch.tensor(st["q01"]), torch.tensor(st["q99"])
    yq = 2 * (x - q01) / (q99 - q01 + 1e-6) - 1
    y[..., grippers] = yq[..., grippers]
    return y


def ref_unnormalize(y, st, grippers):
    x = y * (torch.tensor(st["std"]) + 1e-6) + torch.tensor(st["mean"])
    q01, q99 = torch.tensor(st["q01"]), torch.tensor(st["q99"])
    xq = (y + 1) / 2 * (q99 - q01 + 1e-6) + q01
    x[..., grippers] = xq[..., grippers]
    return x


# --- tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("ki", [True, False], ids=["ki", "posttrain"])
def test_converted_official_checkpoint_matches_the_official_forward(tmp_path, ki):
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_labvla.policy.convert_official import convert
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    interleave = ki  # both official DiT layouts: interleaved cross/self (ki) and all-cross (posttrain)
    ckpt, sd, _, stats, schema = write_official(tmp_path, ki=ki, interleave=interleave)
    out = convert(ckpt, tmp_path / "lerobot")
    policy = LabVLAPolicy.from_pretrained(out)
    policy.eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(out))
    assert policy.config.chunk_size == CHUNK and policy.config.mode == ("ki" if ki else "finetune")

    g = torch.Generator().manual_seed(3)
    images = [torch.rand(1, 3, IMG, IMG, generator=g), None, torch.rand(1, 3, IMG, IMG, generator=g)]
    state = torch.randn(1, STATE, generator=g)
    task = "pour the liquid into the beaker"
    raw = {"observation.state": state, "task": task, CAMS[0]: images[0], CAMS[2]: images[2]}
    batch = pre(raw)
    grippers = schema["gripper_action_dims"]
    state_p = F.pad(ref_normalize(state, stats["observation.state"], grippers), (0, MAXD - STATE))
    hidden, vmask = ref_vlm_hidden(sd, images, task, state_p, ki)

    # 1. the VLM prefix (3 slots, one masked; prompt padded to 48; deepstack off; KI state token)
    ours = policy.backbone(policy._build_inputs(*policy._inputs(batch)[::2]), state=state_p if ki else None)
    assert torch.equal(ours.mask, vmask)
    torch.testing.assert_close(ours.hidden[vmask], hidden[vmask], atol=1e-5, rtol=1e-5)

    # 2. the expert's velocity for fixed inputs, at several times (official convention)
    x_t = torch.randn(1, CHUNK, MAXD, generator=g)
    for t in (0.0, 0.37, 0.9):
        tt = torch.tensor([t])
        ref_v = ref_velocity(sd, interleave, hidden, vmask, state_p, x_t, tt)
        with torch.no_grad():
            our_v = policy.expert(x_t, tt, state_p, policy.expert.project_context(hidden), vmask)
        torch.testing.assert_close(our_v, ref_v, atol=1e-5, rtol=1e-5)

    # 3. a whole chunk from fixed noise: 10 Euler steps 0 -> 1, then unnormalize and undo the delta
    noise = torch.randn(1, CHUNK, MAXD, generator=g)
    x = noise.clone()
    with torch.no_grad():
        for k in range(10):
            x = x + 0.1 * ref_velocity(sd, interleave, hidden, vmask, state_p, x, torch.tensor([k * 0.1]))
        chunk = policy.predict_action_chunk(batch, noise=noise)
    torch.testing.assert_close(chunk, x[..., :ACT], atol=1e-5, rtol=1e-5)
    absolute = ref_unnormalize(x[..., :ACT], stats["action"], grippers)
    absolute[..., :7] += state[:, None, :7]
    torch.testing.assert_close(post(chunk), absolute, atol=1e-5, rtol=1e-5)


def test_unknown_and_missing_keys_are_one_line(tmp_path):
    from safetensors.torch import load_file

    from lerobot_labvla.policy.convert_official import convert

    ckpt, *_ = write_official(tmp_path, ki=False)
    weights = ckpt / "pretrained_model" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["model.surprise.weight"] = torch.zeros(1)
    del tensors["model.dit_action_head.proj_out_1.bias"]
    save_file(tensors, str(weights))
    with pytest.raises(LabVLAError) as err:
        convert(ckpt, tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "unknown keys (1): model.surprise.weight" in msg
    assert "missing keys (1): expert.dit_action_head.proj_out_1.bias" in msg
    assert not (tmp_path / "out").exists()


def test_labvla_convert_cli_bad_dir_is_one_line_exit_2(tmp_path):
    from policy_helpers import run_cli, stderr_without_noise

    proc = run_cli("labvla-convert", "official", str(tmp_path / "nothing"), str(tmp_path / "out"))
    err = stderr_without_noise(proc).strip()
    assert proc.returncode == 2, err
    assert err.startswith("labvla-convert: error: not an official LabVLA checkpoint: missing") and "\n" not in err
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_gripper_dims_normalize_by_quantiles_and_the_rest_by_mean_std():
    from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.processor import NormalizerProcessorStep
    from lerobot.processor.converters import create_transition
    from lerobot.lerobot_types import TransitionKey

    from lerobot_labvla.policy.processor_labvla import quantile_dims_as_mean_std

    g = torch.Generator().manual_seed(0)
    q01 = -torch.rand(4, generator=g)
    stats = {"action": {"mean": torch.randn(4, generator=g), "std": 0.5 + torch.rand(4, generator=g),
                        "q01": q01, "q99": q01 + 0.5 + torch.rand(4, generator=g)}}
    step = NormalizerProcessorStep(
        features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(4,))},
        norm_map={FeatureType.ACTION: NormalizationMode.MEAN_STD},
        stats=quantile_dims_as_mean_std(stats, [3]),
    )
    x = torch.randn(5, 4, generator=g)
    y = step(create_transition(action=x))[TransitionKey.ACTION]
    s = stats["action"]
    torch.testing.assert_close(y[:, :3], (x[:, :3] - s["mean"][:3]) / (s["std"][:3] + 1e-8))
    torch.testing.assert_close(y[:, 3], 2 * (x[:, 3] - s["q01"][3]) / (s["q99"][3] - s["q01"][3]) - 1)


@pytest.mark.slow
def test_converted_checkpoint_fine_tunes_with_lerobot_train(tmp_path, ds7):
    """The user path: `labvla-convert official` then `lerobot-train --policy.path` on another embodiment.

    The new dataset's stats replace the checkpoint's (LeRobot's override), normalized as the official fine-tuning
    does: mean/std, except the gripper dims, scaled by the new dataset's q01/q99 (ds7's names hold no "gripper",
    so the test names dim 6)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from policy_helpers import assert_ok, losses, run_cli, train_args
    from safetensors.torch import load_file

    ckpt, *_ = write_official(tmp_path, ki=True)
    proc = run_cli("labvla-convert", "official", str(ckpt), str(tmp_path / "converted"))
    assert_ok(proc)
    proc = run_cli(
        "lerobot-train",
        f"--policy.path={tmp_path / 'converted'}",
        "--policy.mode=finetune",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--policy.quantile_dims=[6]",
        *train_args(ds7, tmp_path / "train", steps=2),
    )
    assert_ok(proc)
    assert len(losses(proc)) == 2 and all(math.isfinite(v) for v in losses(proc))
    saved = tmp_path / "train" / "checkpoints" / "000002" / "pretrained_model"
    assert (saved / "model.safetensors").exists()
    stats = LeRobotDatasetMetadata(ds7.repo_id, root=ds7.root).stats
    normalizer = load_file(str(next(saved.glob("policy_preprocessor_step_*_normalizer_processor.safetensors"))))
    for key in ("observation.state", "action"):
        raw = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in stats[key].items()}
        mean, std = normalizer[f"{key}.mean"], normalizer[f"{key}.std"]
        torch.testing.assert_close(mean[:6], raw["mean"][:6])
        torch.testing.assert_close(std[:6], raw["std"][:6])
        torch.testing.assert_close(mean[6], (raw["q01"][6] + raw["q99"][6]) / 2)
        torch.testing.assert_close(std[6], (raw["q99"][6] - raw["q01"][6]) / 2)


def test_official_224_images_become_the_processors_256_and_64_tokens():
    from lerobot_labvla.policy.backbone import QwenBackbone, build_tiny_tokenizer, build_vlm
    from lerobot_labvla.policy.convert_official import processor_image_size

    assert processor_image_size(224, "Qwen/Qwen3-VL-4B-Instruct") == 256  # Qwen3-VL min_pixels 65536
    vlm, _ = build_vlm("tiny", None, load_weights=True, attn_implementation="sdpa", dtype=torch.float32)
    backbone = QwenBackbone(vlm, build_tiny_tokenizer(), image_size=256, num_camera_slots=3, pad_image_size=224)
    wide = torch.rand(1, 3, 240, 320)
    out = backbone.resize(wide)
    assert out.shape == (1, 3, 256, 256) and backbone.tokens_per_image == 64
    assert out[..., :20, :].abs().max() < 1e-3 < out[..., 120:136, :].abs().max()  # letterboxed, centred
