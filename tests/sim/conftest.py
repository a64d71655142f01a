"""Fixtures for the sim core: one small scene with every asset kind, built per test (~20 ms)."""

import pytest


def build_lab_scene(grasp_assist: bool = False):
    from lerobot_labvla.sim import assets as A
    from lerobot_labvla.sim.robots.fr3 import HOME_QPOS
    from lerobot_labvla.sim.scene import SceneBuilder

    b = SceneBuilder(grasp_assist=grasp_assist)
    b.add_robot()
    b.add(A.beaker, "beaker", [0.5, -0.1, 0.0], radius=0.024)
    b.add(A.particles, "liquid", [0.5, -0.1, 0.004], 0.02, count=12)
    b.add(A.beaker, "target", [0.5, 0.1, 0.0], radius=0.045, height=0.08)
    b.add(A.hot_plate, "hot_plate", [0.45, -0.35, 0.0])
    b.add(A.button_panel, "panel", [0.3, 0.3, 0.0])
    b.add(A.cabinet, "cabinet", [0.75, 0.28, 0.0])
    b.add(A.flask, "flask", [0.3, -0.2, 0.0])
    b.add(A.graduated_cylinder, "cylinder", [0.25, 0.15, 0.0])
    b.add(A.test_tube_rack, "rack", [0.7, -0.3, 0.0])
    b.add(A.test_tube, "tube", [0.7, -0.2, 0.0])
    b.add(A.reagent_bottle, "bottle", [0.65, 0.0, 0.0])
    b.add(A.target_zone, "zone", [0.35, 0.0, 0.0])
    b.add_camera("front", [1.0, -0.42, 0.55], [0.5, 0.04, 0.1])
    b.add_light([0.5, 0, 1.5], [0, 0, -1])
    sim = b.build()
    sim.reset(HOME_QPOS)
    return sim


@pytest.fixture
def lab_scene():
    """Physical grasps only (no weld assist)."""
    return build_lab_scene()


@pytest.fixture
def lab_scene_assisted():
    """The same scene with the grasp-assist weld (what pour_liquid uses)."""
    return build_lab_scene(grasp_assist=True)
