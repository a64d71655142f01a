"""`labutopia list | expert | view` and LeRobot's own CLIs on the env (slow: subprocesses)."""

import json

import pytest

from envs_helpers import IMAGE, run_cli


def labutopia(*args: str) -> int:
    """Run the `labutopia` console script's main in this process; returns its exit code."""
    from lerobot_labvla.envs.labutopia.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_list_prints_tasks_and_splits(capsys):
    assert labutopia("list") == 0
    out = capsys.readouterr().out
    for name in ("pick_up", "LabUtopia/TransportBeaker-v0", "ood"):
        assert name in out


def test_expert_writes_the_json_report(tmp_path):
    out = tmp_path / "r.json"
    assert labutopia("expert", "--task", "press_button", "--split", "ood", "--episodes", "2", "--json", str(out)) == 0
    report = json.loads(out.read_text())
    assert report == {"task": "press_button", "split": "ood", "episodes": 2, "success_rate": 1.0, "mean_progress": 1.0}


def test_view_writes_an_mp4(tmp_path, capsys):
    out = tmp_path / "v.mp4"
    assert labutopia("view", "--task", "open_door", "--size", "64", "--out", str(out)) == 0
    assert out.stat().st_size > 1000 and "success=True" in capsys.readouterr().out


def test_frame_writes_the_three_cameras_side_by_side(tmp_path):
    from PIL import Image

    out = tmp_path / "f.png"
    assert labutopia("frame", "--task", "press_button", "--split", "ood", "--size", "32", "--step", "3", "--out", str(out)) == 0
    img = Image.open(out)
    assert img.size == (96, 32) and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("args,needle", [
    (["expert", "--task", "nope"], "unknown task 'nope'; expected one of ['pick_up'"),
    (["expert", "--task", "pick_up", "--split", "x"], "invalid choice: 'x'"),
    (["view", "--task", "pick_up", "--out", "x.gif"], "must end in .mp4"),
    (["frame", "--task", "pick_up", "--out", "x.jpg"], "must end in .png"),
])
def test_bad_arguments_fail_with_one_clear_line(args, needle, capsys):
    assert labutopia(*args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_console_script_is_installed_and_exits_2_on_bad_input():
    proc = run_cli("labutopia", "expert", "--task", "nope")
    assert proc.returncode == 2 and "unknown task 'nope'" in proc.stderr


@pytest.mark.slow
def test_lerobot_eval_runs_a_labvla_checkpoint(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    proc = run_cli("lerobot-eval", f"--policy.path={tiny_checkpoint}", "--policy.device=cpu", "--env.type=labutopia",
                   "--env.task=pick_up", f"--env.image_size={IMAGE}", "--env.episode_length=12",
                   "--eval.n_episodes=2", "--eval.batch_size=2", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2 and 0.0 <= info["overall"]["avg_max_reward"] <= 1.0
    assert len(list((out / "videos").rglob("*.mp4"))) == 2


@pytest.mark.slow
def test_lerobot_train_evaluates_in_the_loop(expert_dataset, tmp_path):
    from envs_helpers import TINY_LABVLA

    out = tmp_path / "train"
    proc = run_cli("lerobot-train", *TINY_LABVLA, f"--dataset.repo_id={expert_dataset.repo_id}",
                   f"--dataset.root={expert_dataset.root}", f"--output_dir={out}", "--steps=2", "--batch_size=2",
                   "--num_workers=0", "--save_freq=2", "--wandb.enable=false", "--env.type=labutopia",
                   "--env.task=pick_up", f"--env.image_size={IMAGE}", "--env.episode_length=5", "--env_eval_freq=2",
                   "--eval.n_episodes=1", "--eval.batch_size=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((out / "eval").rglob("*.mp4")), "in-loop evaluation wrote no video"
