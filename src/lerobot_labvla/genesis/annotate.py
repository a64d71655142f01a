"""The 15 annotation streams of the LabVLA paper, computed from the sim state at every recorded frame.

Per-frame streams become `annotation.<stream>` dataset features (`frame_features`); per-episode
streams become `annotation.<stream>` columns of LeRobot's episode metadata, meta/episodes/*.parquet
(genesis/export.py).
"""

from __future__ import annotations

import math

import numpy as np

from lerobot_labvla.sim.scene import Sim
from lerobot_labvla.sim.skills import particles_inside

# stream -> (where, what) for the README table; shapes depend on the scene and are in frame_features.
STREAMS = {
    "robot_state": ("frame", "TCP position (3), TCP quaternion wxyz (4), gripper width m (1), arm joint velocities (7)"),
    "camera_extrinsics": ("frame", "world-to-camera 4x4 (OpenCV axes), row-major, per camera in CAMERAS order"),
    "camera_intrinsics": ("episode", "3x3 pinhole matrix per camera at the dataset's image size"),
    "step_timing": ("frame", "[episode time s, time in the current step s, step index]"),
    "instruction_alignment": ("frame", "'<step index>: <sub-instruction>' of the step this frame belongs to"),
    "object_state": ("frame", "pose per object (x, y, z, qw, qx, qy, qz), in feature-name order"),
    "scene_relations": ("frame", "'; '-joined facts: 'held beaker', 'beaker on hot_plate', 'liquid in beaker', 'beaker near flask'"),
    "object_semantics": ("episode", "per object: category, material, volume_ml, graspable"),
    "success_explanation": ("episode", "why the episode counts as a success: one sentence per step checker"),
    "collision_events": ("frame", "'none' or unintended contacts 'robot-bottle 3.2N' joined by '; '"),
    "temporal_segments": ("episode", "per step: skill, start/end frame, sub-instruction, checker result"),
    "subgoals": ("frame", "the expert's current target: TCP position (3), quaternion wxyz (4), gripper opening 0..1 (1)"),
    "quality_scores": ("episode", "path length m, mean jerk, max contact force N, duration s, steps per skill"),
    "intervention_flags": ("frame", "1 where the expert's action was clipped to the action limits, else 0"),
    "episode_metadata": ("episode", "seed, attempt, workflow name, robot, split, image size, timings"),
    "depth": ("frame", "first camera's depth in metres (0 = nothing within 10 m), (D*D,) = row-major (D, D), D = image_size // 4 (max 64)"),
}
FRAME_STREAMS = [k for k, (where, _) in STREAMS.items() if where == "frame"]
GLASS = {"beaker", "flask", "graduated_cylinder", "test_tube", "bottle", "stirring_rod"}


def depth_size(image_size: int) -> int:
    return min(64, max(4, image_size // 4))


def tracked_objects(sim: Sim) -> list[str]:
    """Objects whose poses are annotated: everything but the bench and liquid particles."""
    return [n for n, a in sim.assets.items() if a.category not in ("bench", "liquid")]


def frame_features(objects: list[str], cameras: tuple[str, ...], image_size: int, dof: int = 7) -> dict[str, dict]:
    """LeRobot feature specs of the per-frame streams (`dof`: the robot profile's arm joints)."""
    d = depth_size(image_size)
    return {
        "annotation.robot_state": {"dtype": "float32", "shape": (8 + dof,), "names": [
            "tcp_x", "tcp_y", "tcp_z", "tcp_qw", "tcp_qx", "tcp_qy", "tcp_qz", "gripper_width"] + [f"dq{i}" for i in range(1, dof + 1)]},
        "annotation.camera_extrinsics": {"dtype": "float32", "shape": (16 * len(cameras),),
                                         "names": [f"{c}_T{r}{k}" for c in cameras for r in range(4) for k in range(4)]},
        "annotation.step_timing": {"dtype": "float32", "shape": (3,), "names": ["t_episode", "t_step", "step"]},
        "annotation.instruction_alignment": {"dtype": "string", "shape": (1,), "names": None},
        "annotation.object_state": {"dtype": "float32", "shape": (7 * len(objects),),
                                    "names": [f"{o}.{k}" for o in objects for k in ("x", "y", "z", "qw", "qx", "qy", "qz")]},
        "annotation.scene_relations": {"dtype": "string", "shape": (1,), "names": None},
        "annotation.collision_events": {"dtype": "string", "shape": (1,), "names": None},
        "annotation.subgoals": {"dtype": "float32", "shape": (8,), "names": [
            "x", "y", "z", "qw", "qx", "qy", "qz", "gripper"]},
        "annotation.intervention_flags": {"dtype": "int64", "shape": (1,), "names": None},
        # Flattened row-major (D, D): 2-D float features are nested lists in parquet, which readers (and
        # `labvla-data scan`) treat as objects, not numbers.
        "annotation.depth": {"dtype": "float32", "shape": (d * d,), "names": None},
    }


def scene_relations(sim: Sim, liquids: dict[str, str]) -> str:
    facts = []
    glass = [n for n, a in sim.assets.items() if a.category in GLASS]
    for n in glass:
        if sim.fingers_touch(sim.assets[n].body):
            facts.append(f"held {n}")
    for n in glass:
        p = sim.body_pos(sim.assets[n].body)
        support = "bench" if abs(p[2]) < 0.01 else None
        for s, a in sim.assets.items():
            if a.category == "hot_plate":
                c = sim.site_pos(a.parts["plate"])
                if math.hypot(*(p[:2] - c[:2])) < a.params["plate_radius"] and abs(p[2] - c[2]) < 0.015:
                    support = s
            elif a.category == "target_zone":
                c = sim.body_pos(a.body)
                if abs(p[0] - c[0]) <= a.params["half_x"] and abs(p[1] - c[1]) <= a.params["half_y"] and abs(p[2]) < 0.01:
                    support = s
        if support:
            facts.append(f"{n} on {support}")
    for vessel, liquid in liquids.items():
        for v in glass:
            if "radius" in sim.assets[v].params and sim.assets[v].category != "stirring_rod" \
                    and particles_inside(sim, liquid, v) >= 0.5:
                facts.append(f"{liquid} in {v}")
    for i, a in enumerate(glass):
        for b in glass[i + 1:]:
            if np.linalg.norm(sim.body_pos(sim.assets[a].body)[:2] - sim.body_pos(sim.assets[b].body)[:2]) < 0.15:
                facts.append(f"{a} near {b}")
    return "; ".join(facts) or "nothing held; all objects on the bench"


def object_state(sim: Sim, objects: list[str]) -> np.ndarray:
    return np.concatenate([np.concatenate([sim.body_pos(sim.assets[o].body), sim.body_quat(sim.assets[o].body)])
                           for o in objects]).astype(np.float32) if objects else np.zeros(0, np.float32)


def robot_state(sim: Sim) -> np.ndarray:
    return np.concatenate([sim.tcp_pos, sim.tcp_quat, [sim.gripper_width], sim.data.qvel[sim.arm_vadr]]).astype(np.float32)


def object_semantics(sim: Sim) -> dict:
    return {n: {"category": a.category, "material": a.material, "volume_ml": a.volume_ml,
                "graspable": bool(a.graspable_sites)}
            for n, a in sim.assets.items() if a.category not in ("bench",)}


def quality_scores(tcp_path: np.ndarray, fps: int, max_force: float, results) -> dict:
    """Smoothness and economy of the recorded TCP path (lower jerk, shorter path = better)."""
    steps = np.diff(tcp_path, axis=0) if len(tcp_path) > 1 else np.zeros((0, 3))
    jerk = np.diff(tcp_path, n=3, axis=0) * fps**3 if len(tcp_path) > 3 else np.zeros((0, 3))
    return {"path_length_m": round(float(np.linalg.norm(steps, axis=1).sum()), 4),
            "mean_jerk_m_s3": round(float(np.linalg.norm(jerk, axis=1).mean()) if len(jerk) else 0.0, 3),
            "max_contact_force_n": round(float(max_force), 2),
            "duration_s": round(len(tcp_path) / fps, 3),
            "frames_per_step": {f"{r.index}:{r.skill}": r.end - r.start for r in results}}
