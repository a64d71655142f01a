"""`labvla-convert official --from-hub REPO` and `LabVLAPolicy.from_pretrained(REPO)` through huggingface_hub's
own cache resolution, offline: the test writes a Hugging Face cache in the standard layout (blobs, snapshots
linking to them, refs/main) and the real `snapshot_download` / `hf_hub_download` find the files there."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from test_official_checkpoint import CAMS, IMG, STATE, write_official

COMMIT = "3f1c2a9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"


def put_in_hub_cache(cache: Path, repo_id: str, src: Path, commit: str = COMMIT) -> None:
    """`src`'s files as huggingface_hub stores a downloaded snapshot of `repo_id` at `commit`."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / commit / path.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def hub_upload_layout(ckpt: Path, out: Path) -> None:
    """The official checkpoint as a Hub repo holds it: flat, weights in two shards with an index."""
    out.mkdir()
    for name in ("norm_stats.json", "labvla_schema.json"):
        shutil.copyfile(ckpt / name, out / name)
    config = json.loads((ckpt / "pretrained_model" / "config.json").read_text())
    config["vlm_pretrained_path"] = "/all-flash-data/vlm/Qwen3-VL-4B-Instruct"  # the authors' cluster path
    (out / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(ckpt / "pretrained_model" / "model.safetensors"))
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, names in shards.items():
        save_file({k: tensors[k] for k in names}, str(out / name))
    index = {"metadata": {}, "weight_map": {k: name for name, names in shards.items() for k in names}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))


SCRIPT = textwrap.dedent(
    """
    import sys
    from lerobot_labvla.policy.convert_official import main

    out, vlm = sys.argv[1], sys.argv[2]
    assert main(["official", "--from-hub", "zjunlp/LabVLA", out, "--vlm", vlm]) == 0
    print("MISSING_RC", main(["official", "--from-hub", "zjunlp/NotInTheCache", out + "_missing", "--vlm", vlm]))
    """
)

LOAD = textwrap.dedent(
    """
    import json, sys
    import torch
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    local, cams, img, state_dim = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    g = torch.Generator().manual_seed(0)
    raw = {c: torch.rand(1, 3, img, img, generator=g) for c in cams}
    raw |= {"observation.state": torch.randn(1, state_dim, generator=g), "task": "pour the liquid"}
    outs = []
    for source in ("local/labvla-converted", local):
        policy = LabVLAPolicy.from_pretrained(source).eval()
        pre, post = make_pre_post_processors(policy.config, pretrained_path=source)
        noise = torch.randn(1, policy.config.chunk_size, policy.config.max_action_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            outs.append(post(policy.predict_action_chunk(pre(dict(raw)), noise=noise)))
    print("RESULT", json.dumps({"max_diff": float((outs[0] - outs[1]).abs().max()), "spread": float(outs[1].std())}))
    """
)


def run(code: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow  # two interpreters with torch + a conversion: ~30 s of CPU
def test_from_hub_convert_and_load_resolve_through_an_offline_hub_cache(tmp_path):
    ckpt, *_ = write_official(tmp_path, ki=False)
    hub_upload_layout(ckpt, tmp_path / "upload")
    cache = tmp_path / "hf" / "hub"
    put_in_hub_cache(cache, "zjunlp/LabVLA", tmp_path / "upload")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache),
           "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "converted"
    proc = run(SCRIPT, str(out), str(tmp_path / "qwen"), env=env)
    assert "MISSING_RC 2" in proc.stdout, proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("labvla-convert: error:")]
    assert len(errors) == 1 and "--from-hub zjunlp/NotInTheCache:" in errors[0], proc.stderr[-2000:]
    assert (out / "model.safetensors").exists() and not (tmp_path / "converted_missing").exists()

    # The converted checkpoint published under a repo id: LeRobot's loaders resolve it from the cache.
    put_in_hub_cache(cache, "local/labvla-converted", out)
    proc = run(LOAD, str(out), json.dumps(CAMS), str(IMG), str(STATE), env=env)
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert result["max_diff"] == 0.0 and result["spread"] > 0, result
