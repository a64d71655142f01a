"""LeRobot's own `lerobot-record` and `lerobot-rollout` driving `--robot.type=franka` on franky-sim."""

from __future__ import annotations

import numpy as np
import pytest
from franka_helpers import _start, _stop, free_port, run_cli, zmq_camera_arg

from lerobot_labvla.robots.franka.franka import STATE_KEYS

pytestmark = pytest.mark.slow

FPS, HOLD, EPISODE_S = 10, 30, 9  # each scripted waypoint is held 3 s; 3 waypoints per episode
ROBOT = ["--robot.type=franka", "--robot.realtime=false", "--robot.relative_dynamics_factor=1.0", "--robot.max_joint_velocity=2.0"]
QUIET = ["--dataset.push_to_hub=false", "--play_sounds=false", "--dataset.reset_time_s=0", f"--dataset.fps={FPS}"]


def record_args(host: str, cam_port: int, root, repo_id: str, episodes: int, episode_s: float) -> list[str]:
    return [
        *ROBOT, f"--robot.ip={host}", zmq_camera_arg(cam_port, ("front",)),
        "--teleop.type=franka_scripted", f"--teleop.steps_per_waypoint={HOLD}",
        f"--dataset.repo_id={repo_id}", f"--dataset.root={root}", "--dataset.single_task=move the arm",
        f"--dataset.num_episodes={episodes}", f"--dataset.episode_time_s={episode_s}", "--display_data=false", *QUIET,
    ]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two episodes recorded with lerobot-record + the scripted teleop (one ZMQ camera)."""
    sim, host = _start(["robot"])
    port = free_port()
    cams, _ = _start(["cameras", f"--port={port}", "--names=front", "--size=96x64"])
    root = tmp_path_factory.mktemp("rec") / "franka_rec"
    try:
        proc = run_cli("lerobot-record", *record_args(host, port, root, "local/franka_rec", 2, EPISODE_S))
    finally:
        _stop(sim)
        _stop(cams)
    assert proc.returncode == 0, proc.stderr[-4000:]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/franka_rec", root=root)


def test_record_writes_the_8_dim_franka_schema(recorded):
    meta = recorded.meta
    assert meta.total_episodes == 2 and meta.robot_type == "franka"
    assert meta.features["observation.state"]["names"] == STATE_KEYS
    assert meta.features["action"]["names"] == STATE_KEYS
    assert meta.features["observation.images.front"]["shape"] == (64, 96, 3)
    assert abs(meta.total_frames - 2 * EPISODE_S * FPS) <= 4


def test_recorded_joints_reach_each_commanded_waypoint(recorded):
    """At the end of every 3 s hold, the recorded state equals the held command, joint by joint (waypoints
    differ by 0.1-0.15 rad per joint; franky-sim's joint impedance leaves up to ~0.025 rad under gravity)."""
    hf = recorded.hf_dataset.with_format("numpy")
    state, action, ep = np.stack(hf["observation.state"]), np.stack(hf["action"]), np.asarray(hf["episode_index"])
    checked = 0
    for e in (0, 1):
        s, a = state[ep == e], action[ep == e]
        for end in range(HOLD - 1, len(a), HOLD):
            assert np.all(a[end] == a[end - HOLD + 1]), "the scripted teleop holds each waypoint"
            np.testing.assert_allclose(s[end, :7], a[end, :7], atol=0.03, err_msg=f"episode {e} frame {end}")
            assert abs(s[end, 7] - a[end, 7]) < 0.005, (e, end, s[end, 7], a[end, 7])
            checked += 1
    assert checked >= 6
    assert np.ptp(state[:, :7], axis=0).max() > 0.2  # the arm really moved between waypoints


def test_rollout_runs_a_labvla_checkpoint_on_the_franka(recorded, franky_sim, zmq_cameras, tmp_path):
    """lerobot-rollout --strategy.type=episodic with a tiny labvla built on the recorded dataset's schema."""
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

    cfg = LabVLAConfig(backbone="tiny", device="cpu", image_size=64, expert_layers=2, expert_width=64,
                       expert_heads=4, fast_vocab_size=512, n_action_steps=5)
    policy = make_policy(cfg, ds_meta=recorded.meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=recorded.meta.stats)
    ckpt = tmp_path / "ckpt"
    for part in (policy, pre, post):
        part.save_pretrained(ckpt)

    host, port = franky_sim(), zmq_cameras(("front",))
    root = tmp_path / "rollout_franka"
    proc = run_cli(
        "lerobot-rollout", "--strategy.type=episodic", f"--policy.path={ckpt}", "--device=cpu", f"--fps={FPS}",
        *ROBOT, f"--robot.ip={host}", zmq_camera_arg(port, ("front",)),
        "--dataset.repo_id=local/rollout_franka", f"--dataset.root={root}", "--dataset.num_episodes=2",
        "--dataset.episode_time_s=3", "--dataset.single_task=move the arm", *QUIET,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/rollout_franka", root=root)
    assert ds.meta.total_episodes == 2 and ds.meta.robot_type == "franka"
    hf = ds.hf_dataset.with_format("numpy")
    state, action = np.stack(hf["observation.state"]), np.stack(hf["action"])
    assert action.shape[1] == 8 and np.isfinite(action).all()
    # the policy's targets reached the arm: it moved, and toward where the actions pointed
    moved = state[-1, :7] - state[0, :7]
    assert np.abs(moved).max() > 0.01
    assert np.corrcoef((action[:-5, :7] - state[:-5, :7]).ravel(), (state[5:, :7] - state[:-5, :7]).ravel())[0, 1] > 0.3


def test_second_reflex_stops_recording_with_one_line_and_keeps_saved_episodes(franky_sim, zmq_cameras, tmp_path):
    """Reflex at 4 s is recovered (episode 1 goes on); the next one, 4 s later, ends the run with a clear error."""
    host, port = franky_sim(reflex_after=4.0, reflexes=2), zmq_cameras(("front",))
    root = tmp_path / "faulted"
    proc = run_cli("lerobot-record", *record_args(host, port, root, "local/faulted", 4, 3))
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert any("Franka at" in line and "recovered (1 of 1" in line for line in err), proc.stderr[-3000:]
    assert err[-1].startswith("error: FrankaFaultError: the Franka at ") and "automatic recovery already used" in err[-1]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/faulted", root=root)  # finalized by lerobot-record, loadable
    # The reflexes fire on the sim's wall clock (4 s, 8 s) while episodes last 3 s plus start-up and resets, so
    # which episode the second one ends depends on the machine (1, 2 or 3 saved: a quiet CI box saved 3). What
    # must hold: the run stops before the 4 asked for with what it saved intact (frame counts depend on the
    # loop's speed, so they are not asserted here).
    assert 1 <= ds.meta.total_episodes <= 3
    assert len(ds) == ds.meta.total_frames and np.isfinite(np.stack(ds.hf_dataset.with_format("numpy")["observation.state"])).all()
