"""Generation on robot profiles other than the FR3: each writes a LeRobot dataset with its own state dims and
robot_type that loads and scans clean (the FR3's own dataset is tests/genesis/test_generate.py's)."""

from __future__ import annotations

import re

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

    wf_file = tmp_path / "wf.yaml"
    wf_file.write_text(re.sub(r"^robot: \w+", f"robot: {robot}", WF.read_text(), flags=re.M))
    out = tmp_path / robot
    report = generate(load_workflow(wf_file), out, episodes=1, workers=1, seed=0, image_size=IMAGE, progress=False,
                      max_attempts=3)
    assert report["kept"] == 1, report["rejected"]
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
