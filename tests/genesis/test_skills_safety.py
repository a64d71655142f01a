"""The new skills (stir, shake, pressZ) succeed by doing the job, their checkers fail when the motion is
skipped, and the safety monitor rejects tipped glassware, spills, unintended contacts and drops."""

from __future__ import annotations

import numpy as np
import pytest

from genesis_helpers import EXAMPLES, write
from lerobot_labvla.genesis import skills as genesis_skills
from lerobot_labvla.genesis.runner import EpisodeJob, episode_seed, run_episode


def dry_run(path, attempt: int = 0):
    """Roll out one attempt of a workflow file without cameras; returns its summary."""
    return run_episode(EpisodeJob(path.read_text(), str(path), attempt, episode_seed(0, attempt), 32, "/nonexistent",
                                  record=False))


def _hold(m, *args, **kwargs):
    yield from m.hold(30)


@pytest.mark.parametrize("workflow, skill", [("stir_solution", "stir"), ("shake_beaker", "shake"),
                                             ("press_z_panel", "press_z")])
def test_new_skill_passes_its_checker_only_by_moving(workflow, skill, monkeypatch):
    path = EXAMPLES / f"{workflow}.yaml"
    done = dry_run(path)
    assert done.kept, (done.reason, done.detail)
    monkeypatch.setattr(genesis_skills, skill, _hold)  # same scene, same checker, the arm just waits
    idle = dry_run(path)
    assert not idle.kept
    assert idle.reason == f"step_failed:{'pressZ' if skill == 'press_z' else skill}", idle


def test_unintended_contact_is_rejected(tmp_path):
    wf = write(tmp_path, """name: knock_bottle
instruction: touch the bottle by mistake
scene:
  objects:
    - {name: bottle, type: reagent_bottle, at: [0.5, 0.0]}
    - {name: panel, type: button_panel, at: [0.45, 0.3]}
steps:
  - move: {to: [0.5, 0.0, 0.06]}
  - press: {target: panel.button}
""")
    s = dry_run(wf)
    assert not s.kept and s.reason == "safety:collision" and "bottle" in s.detail, s


def _scene_sim(add):
    from lerobot_labvla.envs.labutopia.splits import get_split
    from lerobot_labvla.genesis.randomize import _labutopia_scene

    b = _labutopia_scene(get_split("id"))(get_split("id"))
    add(b)
    sim = b.build()
    from lerobot_labvla.sim.robots.fr3 import HOME_QPOS

    sim.reset(HOME_QPOS)
    return sim


def test_tipped_glassware_and_spilled_liquid_are_flagged():
    from lerobot_labvla.genesis.safety import SafetyMonitor
    from lerobot_labvla.sim import assets as A

    def add(b):
        b.add(A.beaker, "upright", [0.5, 0.2, 0.0], radius=0.024, height=0.1)
        b.add(A.particles, "liquid", [0.5, 0.2, 0.004], 0.02, count=12)
        b.add(A.beaker, "lying", [0.5, -0.2, 0.03], radius=0.024, height=0.1)

    sim = _scene_sim(add)
    lying = sim.model.body("lying")
    sim.data.qpos[sim.model.jnt_qposadr[lying.jntadr[0]] + 3:][:4] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0]
    mon = SafetyMonitor(sim, {"upright": "liquid"})
    for t in range(20):
        sim.step(sim.arm_qpos)
        mon.step(t, set(), gripper_closed=False)
    mon.finish(20)
    assert [r for r, *_ in mon.violations] == ["tipped"], mon.violations
    assert "lying" in mon.violations[0][2]
    # Now pour the liquid out on the bench: teleport the particles next to the beaker.
    for i in range(12):
        body = sim.model.body(f"liquid{i}")
        adr = sim.model.jnt_qposadr[body.jntadr[0]]
        sim.data.qpos[adr:adr + 3] = [0.6 + 0.015 * (i % 4), -0.05 + 0.015 * (i // 4), 0.01]
    for t in range(20, 30):
        sim.step(sim.arm_qpos)
    mon.finish(30)
    assert "spill" in [r for r, *_ in mon.violations], mon.violations


def test_custom_scenes_vary_layout_light_and_wording_per_seed():
    from lerobot_labvla.envs.labutopia.splits import get_split
    from lerobot_labvla.genesis.randomize import build_scene
    from lerobot_labvla.genesis.workflow import load_workflow

    wf = load_workflow(EXAMPLES / "heat_beaker_custom.yaml").workflow
    scenes = [build_scene(wf, np.random.default_rng(seed), get_split("id")) for seed in range(8)]
    sims = [b.build() for b, _ in scenes]
    xs = {round(float(s.model.body("beaker_small").pos[0]), 4) for s in sims}
    lights = {round(float(s.model.light_diffuse[0, 0]), 4) for s in sims}
    wordings = {ctx["instruction"] for _, ctx in scenes}
    assert len(xs) == 8 and len(lights) == 8 and len(wordings) == 3
    assert all(abs(x - 0.5) <= wf.scene.jitter for x in xs)


def test_an_attempt_that_raises_is_rejected_not_fatal(tmp_path, monkeypatch):
    wf = write(tmp_path, """name: into_oven
instruction: put the beaker into the oven
scene:
  objects:
    - {name: beaker, type: beaker, at: [0.45, -0.1]}
    - {name: oven, type: cabinet, at: [0.72, 0.3]}
steps:
  - open: {target: oven.door}
  - pick: {object: beaker}
  - place: {object: beaker, on: oven}
""")
    from lerobot_labvla.genesis.validate import validate
    from lerobot_labvla.genesis.workflow import load_workflow

    found = validate(load_workflow(wf))
    assert [i.severity for i in found] == ["warning"] and "not simulated yet" in found[0].message

    def boom(m, *args, **kwargs):
        yield from m.hold(2)
        raise RuntimeError("simulation went unstable")

    monkeypatch.setattr(genesis_skills, "press_z", boom)
    s = dry_run(EXAMPLES / "press_z_panel.yaml")
    assert not s.kept and s.reason == "error:RuntimeError" and "unstable" in s.detail, s
