"""`make demo` (lerobot_labvla.demo): protocol grounding, the wall-time budget, the report, and one
end-to-end smoke run at a toy budget that then drives every script in examples/."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lerobot_labvla import demo
from lerobot_labvla.errors import LabVLAError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("task", sorted(demo.PROTOCOLS))
def test_protocol_grounds_on_the_labutopia_scene(task, tmp_path):
    wf = yaml.safe_load(demo.compile_workflow(task, tmp_path).read_text())
    assert wf["scene"] == {"labutopia": task}
    roles = set(demo.PROTOCOLS[task][1].values())
    named = {v.split(".")[0] for step in wf["steps"] for skill, a in step.items() if skill != "instruction"
             for v in a.values() if isinstance(v, str)}
    assert named and named <= roles, (named, roles)  # every reference is one of the scene's roles


def test_grounding_refuses_an_object_the_scene_lacks():
    compiled = "name: x\ninstruction: stir\nscene: {objects: [{name: rod, type: stirring_rod, at: [0.5, 0]}]}\nsteps: []\n"
    with pytest.raises(LabVLAError, match="rod"):
        demo.ground(compiled, "pick_up")


def test_open_door_workflow_asks_for_the_benchmarks_angle(tmp_path):
    wf = yaml.safe_load(demo.compile_workflow("open_door", tmp_path).read_text())
    assert wf["steps"][0]["open"]["angle"] >= 1.2  # LabUtopia's rule is >= 1.0 rad; the skill stops at angle - 0.2


def test_diffusion_is_an_opt_in_peer():
    assert demo.parse_args([]).policies == ["labvla", "act", "do_nothing", "blind_replay", "expert"]
    assert "diffusion" in demo.parse_args(["--policies", "labvla,diffusion"]).policies


def test_labvla_lr_schedule_is_planned_for_the_speed_it_will_train_at():
    # Beside ACT, or with more cameras to decode, the tiny labvla trains slower than alone on one camera: planning
    # --steps (over which the LR decays) at the faster speed leaves the LR high when the budget stops it.
    side = demo.planned_steps(demo.parse_args(["--minutes", "10", "--parallel-train"]))
    alone = demo.planned_steps(demo.parse_args(["--minutes", "10"]))
    solo = demo.planned_steps(demo.parse_args(["--minutes", "10", "--policies", "labvla,expert", "--parallel-train"]))
    three = demo.planned_steps(demo.parse_args(["--minutes", "10", "--cameras", "all"]))
    assert side["labvla"] == int(demo.LABVLA_STEPS_PER_S[1] * demo.SIDE_BY_SIDE * 600) < alone["labvla"] == solo["labvla"]
    assert alone["labvla"] == int(demo.LABVLA_STEPS_PER_S[1] * 600) > three["labvla"] == int(demo.LABVLA_STEPS_PER_S[3] * 600)
    assert side["act"] == alone["act"] == 1200
    assert demo.planned_steps(demo.parse_args(["--minutes", "12", "--labvla-steps-per-s", "3"]))["labvla"] == 3 * 12 * 60
    assert set(demo.planned_steps(demo.parse_args(["--steps", "50"])).values()) == {50}


def test_cli_rejects_unknown_task_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "lerobot_labvla.demo", "--tasks", "juggle"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "juggle" in proc.stderr and "Traceback" not in proc.stderr


FAKE_TRAINER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    every, pause = (int(sys.argv[2]), float(sys.argv[3])) if len(sys.argv) > 2 else (5, 0.05)
    for step in range(1, 10_000):
        time.sleep(pause)
        print(f"INFO step:{step} smpl:{step * 4} loss:{1.0 / step:.4f} grdn:1.0", flush=True)
        sys.stdout.write(f"Training: {step}/10000\\r"); sys.stdout.flush()
        if step % every == 0:
            ck = out / "checkpoints" / f"{step:06d}"
            (ck / "pretrained_model").mkdir(parents=True)
            (ck / "training_state").mkdir()
""")


def test_training_stops_at_the_budget_and_keeps_the_newest_checkpoint(tmp_path, capfd):
    script = tmp_path / "trainer.py"
    script.write_text(FAKE_TRAINER)
    out = tmp_path / "train"
    run = demo.train("fake", [sys.executable, script, out], out, minutes=3 / 60, log_freq=1)
    assert 2.5 < run.seconds < 20
    assert run.steps % 5 == 0 and run.steps >= 5
    assert run.checkpoint == out / "checkpoints" / f"{run.steps:06d}" / "pretrained_model"
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"{run.steps:06d}"]  # the others are removed
    # every logged loss was parsed, in order, from a stream that mixes \r progress redraws with lines
    assert [v for _, v in run.losses[:3]] == [1.0, 0.5, 0.3333]
    assert "Training: 3/10000\r" in capfd.readouterr().out  # passed through live, byte for byte


def test_training_failure_names_the_log(tmp_path):
    out = tmp_path / "train"
    with pytest.raises(LabVLAError, match="fake.*exit code 3.*train.log"):
        demo.train("fake", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], out, 1.0, 1)


def test_stopping_a_trainer_that_already_exited_and_was_reaped_is_not_an_error():
    # The watchdog thread and the main thread both poll the trainer: one can reap it between the other's poll() and
    # its SIGTERM, and the demo then died with "error: ProcessLookupError" after every trainer had finished.
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait()
    demo._stop(proc)


def _rows(task, split, episodes, **success):
    return [demo.Row(task, split, p, s, s, episodes) for p, s in success.items()]


def test_margin_needs_both_blind_baselines_enough_episodes_and_30_points():
    summary, lines = demo.verdict(
        _rows("open_door", "id", 20, labvla=0.6, act=0.5, do_nothing=0.0, blind_replay=0.25, expert=1.0)
        + _rows("press_button", "id", 20, labvla=0.9, do_nothing=0.0, blind_replay=0.8)  # passable blind
        + _rows("pick_up", "id", 20, labvla=0.9, do_nothing=0.0)  # blind replay not measured
        + _rows("pick_up", "ood", 5, labvla=1.0, do_nothing=0.0, blind_replay=0.0))  # too few episodes
    text = "\n".join(lines)
    assert summary == "Learning target met by: labvla on open_door/id."
    assert "| open_door | id | labvla | 0.60 | blind_replay 0.25 | +35 points | **target met**" in text
    assert "| open_door | id | act | 0.50 | blind_replay 0.25 | +25 points | below the target" in text
    assert "| press_button | id | labvla | 0.90 | blind_replay 0.80 | +10 points | below the target" in text
    assert "blind_replay alone scores 0.80 here, so this task/split says little" in text
    assert "| pick_up | id | labvla | 0.90 | - | - | no claim: blind_replay not measured" in text
    assert "| pick_up | ood | labvla | 1.00 | do_nothing 0.00 | +100 points | no claim: 5 episodes" in text
    assert not any("| expert |" in line or "| do_nothing |" in line for line in lines)  # only trained policies


def test_a_replaying_policy_claims_nothing():
    # a policy that learned to replay one trajectory scores what blind replay scores on the same seeds
    summary, lines = demo.verdict(_rows("open_door", "id", 20, labvla=0.55, do_nothing=0.0, blind_replay=0.55))
    assert summary.startswith("Learning target not met") and "no better than a blind baseline" in lines[-1]


def test_report_table_plots_and_links(tmp_path):
    rows = [demo.Row("open_door", "id", p, s, s, 4, str(tmp_path / f"{p}.gif"))
            for p, s in [("labvla", 0.75), ("act", 0.25), ("do_nothing", 0.0), ("blind_replay", 0.0), ("expert", 1.0)]]
    for r in rows:
        Path(r.video).write_bytes(b"GIF89a")
    runs = [demo.TrainRun("labvla", tmp_path / "ck", [(10, 2.0), (20, 1.0)], 20, 60.0, ready_minutes=27.25)]
    args = demo.parse_args(["--tasks", "open_door", "--minutes", "1", "--out", str(tmp_path)])
    report = demo.write_report(args, rows, runs, "Data: x", tmp_path).read_text()
    assert "| open_door | id | labvla | 0.75 | 0.75 | 4 |" in report
    assert "| labvla | 20 | 20 | 1.0 | 27.2 | 2.000 | 1.000 |" in report
    assert "labvla's evaluated result came 27.2 min after the demo started" in report
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000 and (tmp_path / "success.png").stat().st_size > 1000
    assert "(expert.gif)" in report
    assert "| open_door | id | labvla | 0.75 | do_nothing 0.00 | +75 points | no claim: 4 episodes" in report
    assert json.loads((tmp_path / "results.json").read_text())[0]["policy"] == "labvla"


SMOKE_TASKS = ("press_button", "open_door")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The whole demo at a toy budget on two tasks (the merged multi-task path) with every policy, diffusion
    included: 2 episodes per task, a few training steps, 1 short eval episode per task, id only."""
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "DEMO_TASKS": ",".join(SMOKE_TASKS)}
    cmd = [sys.executable, "-m", "lerobot_labvla.demo", "--out", str(out), "--episodes", "2", "--eval-episodes", "1",
           "--minutes", "5", "--steps", "3", "--image-size", "32", "--batch-size", "4", "--splits", "id",
           "--episode-length", "30", "--workers", "1", "--policies", ",".join(demo.POLICIES)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=840)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the demo ran past 840 s:\n{(exc.stdout or b'')[-3000:]!r}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.slow
def test_demo_smoke_runs_every_stage(smoke):
    out, log = smoke
    results = json.loads((out / "results.json").read_text())
    # every task has a row for every policy: the trained ones were evaluated on each task of the merged dataset
    assert {(r["task"], r["policy"]) for r in results} == {(t, p) for t in SMOKE_TASKS for p in demo.POLICIES}
    # 30-step episodes: nothing can finish either task, not even the expert; do-nothing moves nothing
    assert all(r["progress"] == 0.0 for r in results if r["policy"] == "do_nothing")
    merged = out / "data" / ("+".join(SMOKE_TASKS) + "_2ep_32px_front")  # the merged training set, front camera only
    features = json.loads((merged / "meta" / "info.json").read_text())["features"]
    assert [k for k in features if k.startswith("observation.images.")] == ["observation.images.front"]
    report = (out / "report.md").read_text()
    for stage in ("1. protocol", "2. RoboGenesis", "merging", "3. labvla-data scan",
                  "4a. lerobot-train labvla for 5 min, alone", "4a. lerobot-eval labvla", "4b. lerobot-train act",
                  "4c. lerobot-train diffusion", "5. baselines", "6. report"):
        assert stage in log, stage
    for name in demo.TRAINED:  # trained one after the other, each evaluated right after (the time it was ready)
        assert f"[{name}] evaluated " in log and (out / f"train_{name}" / "checkpoints").exists()
    assert "labvla's evaluated result came " in report
    assert "step:" in log and (out / "loss_curves.png").exists()
    for task in SMOKE_TASKS:
        for name in demo.TRAINED:
            assert f"| {task} | id | {name} |" in report
            assert any((out / "eval").glob(f"{name}_{task}_id/videos/**/*.mp4"))
        assert (out / "eval" / f"expert_{task}_id.gif").stat().st_size > 1000
    assert "No episode seeds found" not in report and "none of its " in report  # the seed check read real seeds
    # nothing succeeds in 30 steps: the margin table says so and the report claims nothing
    assert "## Margin over the blind baselines" in report and "no better than a blind baseline" in report
    assert "Learning target not met" in report and "target met**" not in report


def _example(name, *args, timeout=600):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_examples_clean_train_evaluate_serve(smoke, tmp_path):
    out, _ = smoke
    raw = out / "data" / "press_button_2ep_32px_front"  # one task's raw dataset, with its annotation streams
    _example("clean_dataset.py", "--src", raw, "--dst", tmp_path / "clean")
    assert json.loads((tmp_path / "clean" / "meta" / "info.json").read_text())["total_episodes"] >= 1
    _example("train.py", "--root", tmp_path / "clean", "--out", tmp_path / "train", "--steps", "2",
             "--batch-size", "2", "--image-size", "32")
    ckpt = tmp_path / "train" / "checkpoints" / "last" / "pretrained_model"
    assert (ckpt / "config.json").exists()
    text = _example("evaluate.py", "--policy", ckpt, "--task", "press_button", "--episodes", "1",
                    "--episode-length", "20", "--image-size", "32", "--out", tmp_path / "eval")
    assert "yours" in text and "expert" in text
    text = _example("serve_and_client.py", "--policy", ckpt, "--task", "press_button", "--steps", "12",
                    "--image-size", "32")
    assert "drove 12 steps" in text


@pytest.mark.slow
def test_example_generate(tmp_path):
    text = _example("generate.py", "--task", "press_button", "--episodes", "1", "--workers", "1",
                    "--image-size", "32", "--out", tmp_path / "gen")
    assert "scene: {labutopia: press_button}" in text
    assert json.loads((tmp_path / "gen" / "meta" / "info.json").read_text())["total_episodes"] == 1


def test_side_by_side_trainers_print_whole_prefixed_lines(tmp_path, capfd):
    script = tmp_path / "trainer.py"
    script.write_text(FAKE_TRAINER)
    out = tmp_path / "train"
    run = demo.train("fake", [sys.executable, script, out], out, minutes=1 / 60, log_freq=1, prefix="fake",
                     env={"OMP_NUM_THREADS": "1"})
    printed = capfd.readouterr().out
    assert "[fake] INFO step:2 smpl:8 loss:0.5000" in printed
    assert "\r" not in printed  # a progress redraw never lands mid-line of the other trainer
    assert [v for _, v in run.losses[:2]] == [1.0, 0.5]


def test_slow_training_runs_past_the_budget_to_its_first_checkpoint(tmp_path, capfd):
    script = tmp_path / "trainer.py"
    script.write_text(FAKE_TRAINER)
    out = tmp_path / "train"
    run = demo.train("fake", [sys.executable, script, out, 12, 0.4], out, minutes=1 / 60, log_freq=1)
    assert run.steps == 12 and run.seconds > 4.5  # no checkpoint to keep before step 12: waited for it
    assert "over the 0.0166667 min budget with no checkpoint yet" in capfd.readouterr().out
