"""Generation on robot profiles other than the FR3: each writes a LeRobot dataset with its own state dims and
robot_type that loads and scans clean (the FR3's own dataset is tests/genesis/test_generate.py's)."""

from __future__ import annotations

import numpy as np
import pytest

from genesis_helpers import EXAMPLES

WF = EXAMPLES / "robots" / "pick_place.yaml"
IMAGE = 32


@pytest.mark.slow
# One profile here (~100 s under load: a worker process, a rollout with cameras, video encoding); the 7-DoF xArm7
# and Kinova Gen3 take the same path (README: `labvla-genesis generate` on each, scanned by hand; the sim core's
# pick-and-place on every profile is tests/sim/test_robot_profiles.py).
@pytest.mark.parametrize("robot, dof", [("ur5e", 6)])
def test_generation_on_a_profile_writes_its_own_dims_and_scans_clean(robot, dof, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.data_process.scan import scan_dataset
    from lerobot_labvla.genesis.generate import generate
    from lerobot_labvla.genesis.workflow import load_workflow

    out = tmp_path / robot
    # `robot=` is `generate --robot`: the same workflow file (robot: fr3) on another profile.
    report = generate(load_workflow(WF), out, episodes=1, workers=1, seed=0, image_size=IMAGE, progress=False,
                      max_attempts=3, robot=robot)
    assert report["kept"] == 1 and report["robot"] == robot, report["rejected"]
    ds = LeRobotDataset("local/pick_place_beaker", root=out)
    assert ds.meta.robot_type == robot
    assert tuple(ds.meta.features["observation.state"]["shape"]) == (dof + 1,)
    assert ds.meta.features["observation.state"]["names"][-1] == "gripper"
    frame = ds[0]
    assert frame["observation.state"].shape == (dof + 1,) and frame["action"].shape == (7,)
    assert frame["annotation.robot_state"].shape == (8 + dof,)
    # The recorded state is this arm's: the first frame is near its home pose (the start is jittered around it).
    from lerobot_labvla.sim.robots import get_profile

    home = np.asarray(get_profile(robot).arms[0].home)
    assert np.abs(frame["observation.state"][:dof].numpy() - home).max() < 1.0
    report = scan_dataset(out)
    # `action_outlier` (8 sigma from the median) is a statistic of the whole dataset: in a one-episode dataset the
    # approach from the jittered start stands out against the near-zero x motion of the rest. Every other check
    # (video/row agreement, NaN, stuck frames, annotations, ...) must pass.
    errors = [f for ep in report["episodes"] for f in ep["findings"]
              if f["severity"] == "error" and f["check"] != "action_outlier"]
    assert not errors, errors


BIMANUAL = EXAMPLES / "robots" / "aloha_handover.yaml"


def test_bimanual_workflow_runs_to_success_through_the_env():
    """ALOHA: pick (left) -> handover (two-arm step) -> place (right), through LabUtopiaEnv's 14-dim ee_delta
    actions, judged by the same checkers and safety filter as `generate` (cameras off)."""
    from lerobot_labvla.genesis.runner import EpisodeJob, run_episode

    for seed in (0, 1):
        s = run_episode(EpisodeJob(BIMANUAL.read_text(), str(BIMANUAL), seed, seed, 32, "/nonexistent", record=False))
        assert s.kept, (seed, s.reason, s.detail)


def test_bimanual_env_spaces_and_a_blind_policy_fails():
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.genesis.skills import WorkflowTask
    from lerobot_labvla.genesis.workflow import load_workflow

    env = LabUtopiaEnv(WorkflowTask.from_workflow(load_workflow(BIMANUAL).workflow), obs_type="agent_pos",
                       render_mode=None, episode_length=60)
    obs, _ = env.reset(seed=0)
    assert env.action_space.shape == (14,) and obs["agent_pos"].shape == (14,)
    assert "aloha/left/" in env.camera_names["wrist"]
    bottle = env.sim.body_pos("bottle").copy()
    for _ in range(60):  # close both grippers and push down: nothing is picked, nothing succeeds
        obs, _, terminated, truncated, info = env.step(np.tile([0, 0, -1, 0, 0, 0, -1], 2).astype(np.float32))
    assert not info["is_success"] and truncated
    assert env.sim.body_pos("bottle")[2] < bottle[2] + 0.02
    env.close()


@pytest.mark.parametrize("text, message", [
    ("robot: aloha\nsteps:\n  - pick: {object: b}\n", "has two arms; the step names none"),
    ("robot: aloha\nsteps:\n  - pick: {object: b}\n    arm: middle\n", "names arm 'middle'"),
    ("robot: ur5e\nsteps:\n  - pick: {object: b}\n  - handover: {object: b, to: right, at: [0.5, 0]}\n",
     "a hand-over needs two arms"),
    ("robot: aloha\nsteps:\n  - pick: {object: b}\n    arm: left\n  - handover: {object: b, to: left, at: [0.42, 0]}\n"
     "    arm: left\n", "must be the other arm"),
    ("robot: aloha\nsteps:\n  - handover: {object: b, to: right, at: [0.42, 0]}\n    arm: left\n", "is not in the left hand"),
])
def test_validator_checks_arms_of_bimanual_steps(text, message):
    from lerobot_labvla.genesis.validate import validate
    from lerobot_labvla.genesis.workflow import parse_workflow

    wf = ("name: x\ninstruction: x\nscene:\n  objects:\n    - {name: b, type: reagent_bottle, size: small, at: [0.42, 0.12]}\n"
          + text)
    issues = [str(i) for i in validate(parse_workflow(wf))]
    assert any(message in i for i in issues), issues


def test_robots_cli_lists_every_profile_with_dims_and_licence(capsys):
    import json

    from lerobot_labvla.genesis.cli import main

    with pytest.raises(SystemExit) as done:
        main(["robots", "--json"])
    assert done.value.code == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"fr3", "ur5e", "xarm7", "kinova3", "aloha"}
    assert rows["aloha"]["arms"] == "left+right" and rows["aloha"]["state/action"] == "14/14"
    assert rows["ur5e"]["dof"] == "6" and "MIT" in rows["ur5e"]["model files (licence)"]
    assert "Apache-2.0" in rows["fr3"]["model files (licence)"]
