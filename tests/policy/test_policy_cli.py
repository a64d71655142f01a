"""LeRobot's real CLIs on labvla, offline, on CPU, tiny backbone (subprocesses)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from policy_helpers import TINY_POLICY, assert_ok, losses, run_cli, stderr_without_noise, train_args
from synthetic import make_dataset

pytestmark = pytest.mark.slow

FAST_LR = ["--policy.optimizer_lr=3e-3", "--policy.scheduler_warmup_steps=0"]
STEPS = 50


def last_ckpt(out: Path) -> Path:
    return out / "checkpoints" / "last" / "pretrained_model"


@pytest.fixture(scope="module")
def chain(ds7, ds14, tmp_path_factory):
    """fast_pretrain (ds7) -> ki from that checkpoint (ds7) -> finetune from that one on ds14."""
    root = tmp_path_factory.mktemp("chain")
    runs = {}
    runs["fast_pretrain"] = run_cli(
        "lerobot-train", *TINY_POLICY, "--policy.mode=fast_pretrain", *FAST_LR, *train_args(ds7, root / "fast", steps=STEPS)
    )
    assert_ok(runs["fast_pretrain"])
    runs["ki"] = run_cli(
        "lerobot-train", f"--policy.path={last_ckpt(root / 'fast')}", "--policy.mode=ki", "--policy.device=cpu",
        *FAST_LR, *train_args(ds7, root / "ki", steps=STEPS),
    )
    assert_ok(runs["ki"])
    runs["finetune"] = run_cli(
        "lerobot-train", f"--policy.path={last_ckpt(root / 'ki')}", "--policy.mode=finetune", "--policy.device=cpu",
        *FAST_LR, *train_args(ds14, root / "ft", steps=STEPS),
    )
    assert_ok(runs["finetune"])
    return root, runs


@pytest.mark.parametrize("mode", ["fast_pretrain", "ki", "finetune"])
def test_each_mode_trains_and_loss_falls(chain, mode):
    _, runs = chain
    curve = losses(runs[mode])
    assert len(curve) == STEPS
    assert all(math.isfinite(x) for x in curve)
    # Averages over 10 steps: the FM loss is noisy (random flow time and noise per sample).
    first, last = sum(curve[:10]) / 10, sum(curve[-10:]) / 10
    assert last < 0.85 * first, f"{mode}: loss {first:.3f} -> {last:.3f}"


def test_metrics_logged_per_mode(chain):
    _, runs = chain
    log = {m: runs[m].stdout + runs[m].stderr for m in runs}
    assert "fast_loss:" in log["fast_pretrain"] and "fast_acc:" in log["fast_pretrain"] and "fm_loss:" not in log["fast_pretrain"]
    assert all(k in log["ki"] for k in ("fm_loss:", "fast_loss:", "fast_acc:"))
    assert "fm_loss:" in log["finetune"] and "fast_loss:" not in log["finetune"]


def test_chain_carries_the_fast_tokenizer_and_switches_embodiment(chain):
    root, _ = chain
    fast_tok = (last_ckpt(root / "fast") / "fast_tokenizer.json").read_text()
    assert (last_ckpt(root / "ki") / "fast_tokenizer.json").read_text() == fast_tok  # loaded, not refitted
    ft = json.loads((last_ckpt(root / "ft") / "config.json").read_text())
    assert ft["mode"] == "finetune"
    assert ft["output_features"]["action"]["shape"] == [14]
    assert ft["input_features"]["observation.state"]["shape"] == [16]


def test_finetuned_checkpoint_returns_the_new_datasets_action_dim(chain, ds14):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    root, _ = chain
    path = last_ckpt(root / "ft")
    policy = LabVLAPolicy.from_pretrained(path)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(path))
    frame = LeRobotDataset(ds14.repo_id, root=ds14.root)[0]
    action = post(policy.select_action(pre(frame)))
    assert action.shape == (1, 14) and torch.isfinite(action).all()


def test_resume_continues_from_the_checkpoint(chain):
    root, _ = chain
    out = root / "fast"
    proc = run_cli(
        "lerobot-train", f"--config_path={last_ckpt(out) / 'train_config.json'}", "--resume=true", f"--steps={STEPS + 5}",
        f"--save_freq={STEPS + 5}",
    )
    assert_ok(proc)
    steps = [int(line.split("step:")[1].split()[0]) for line in (proc.stdout + proc.stderr).splitlines() if " step:" in line]
    assert steps and steps[0] == STEPS + 1 and steps[-1] == STEPS + 5
    assert (out / "checkpoints" / f"{STEPS + 5:06d}" / "pretrained_model" / "model.safetensors").exists()


# A sitecustomize that stands in for the Hub: LeRobot's own push code runs, only the HfApi network
# calls are replaced, and the folder it uploads (filtered by its allow/ignore patterns, as the real
# client does) is copied where the test can read it.
FAKE_HUB = '''
import os, shutil
from pathlib import Path
from types import SimpleNamespace
import huggingface_hub
import huggingface_hub.repocard
from huggingface_hub.utils import filter_repo_objects

def create_repo(self, repo_id, **kw):
    return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kw):
    dest = Path(os.environ["LABVLA_FAKE_HUB"]) / repo_id
    files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
    for rel in filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(folder_path) / rel, dest / rel)
    return SimpleNamespace(repo_url=SimpleNamespace(url=f"https://huggingface.co/{repo_id}"), oid="0" * 40)

def validate(self, repo_type=None):  # the card's YAML check is a POST to the Hub as well
    assert self.data is not None

huggingface_hub.HfApi.create_repo = create_repo
huggingface_hub.HfApi.upload_folder = upload_folder
huggingface_hub.repocard.RepoCard.validate = validate
'''


def test_push_to_hub_uploads_a_loadable_labvla_repo(ds7, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_HUB)
    hub = tmp_path / "hub"
    proc = run_cli(
        "lerobot-train", *TINY_POLICY, "--policy.mode=ki", "--policy.push_to_hub=true", "--policy.repo_id=user/x",
        *train_args(ds7, tmp_path / "out", steps=2),
        env={"PYTHONPATH": str(site), "LABVLA_FAKE_HUB": str(hub)},
    )
    assert_ok(proc)
    repo = hub / "user" / "x"
    config = json.loads((repo / "config.json").read_text())
    assert config["type"] == "labvla"
    for name in (
        "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json", "README.md",
        "tokenizer/tokenizer.json", "fast_tokenizer.json", "train_config.json",
    ):
        assert (repo / name).is_file(), f"{name} missing from the upload: {sorted(p.name for p in repo.rglob('*'))}"
    assert list(repo.glob("policy_preprocessor_step_*_normalizer_processor.safetensors"))
    assert "labvla" in (repo / "README.md").read_text()

    # What was uploaded is a complete checkpoint: it loads and acts with no other files.
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    policy = LabVLAPolicy.from_pretrained(repo)
    pre, _ = make_pre_post_processors(policy.config, pretrained_path=str(repo))
    assert policy.fast is not None and pre is not None


def one_line_error(proc) -> str:
    """The CLI failed with exactly one error line of ours and no Python traceback."""
    err = stderr_without_noise(proc)
    assert proc.returncode != 0
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def test_unknown_mode_is_one_line(ds7, tmp_path):
    proc = run_cli("lerobot-train", *TINY_POLICY, "--policy.mode=pretrain", *train_args(ds7, tmp_path / "out"))
    assert "--policy.mode='pretrain' is not one of fast_pretrain, ki, finetune" in one_line_error(proc)


def test_state_beyond_max_state_dim_is_one_line(tmp_path):
    ds = make_dataset(tmp_path / "wide", repo_id="local/wide", n_episodes=1, frames=12, state_dim=40, cameras=("front",))
    proc = run_cli("lerobot-train", *TINY_POLICY, *train_args(ds, tmp_path / "out"))
    assert "state dim 40 > --policy.max_state_dim=32" in one_line_error(proc)


def test_nan_in_state_is_one_line(tmp_path):
    ds = make_dataset(tmp_path / "nan", repo_id="local/nan", n_episodes=1, frames=12, cameras=("front",), nan_state_at=(3, 2))
    proc = run_cli("lerobot-train", *TINY_POLICY, "--policy.mode=finetune", *train_args(ds, tmp_path / "out", steps=12))
    assert "dataset stats contain NaN/Inf for observation.state" in one_line_error(proc)
