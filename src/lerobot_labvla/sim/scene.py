"""Compose a scene (bench, robot, assets, cameras, lights) with MjSpec, then run it as a `Sim`.

A `SceneBuilder` is cheap (a full LabUtopia scene compiles in ~10 ms), so callers build a fresh one
per episode from a seed; a `Sim` owns the compiled model, its data and the device latches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection

import mujoco
import numpy as np

from lerobot_labvla.sim.assets import Asset, bench
from lerobot_labvla.sim.assets.devices import INDICATOR_OFF, INDICATOR_ON
from lerobot_labvla.sim.robots import RobotProfile, get_profile
from lerobot_labvla.sim.robots.fr3 import FR3
from lerobot_labvla.sim.robots.profile import ArmSpec

ROBOT_PREFIX = FR3.prefix  # "fr3/": the default robot's names in a compiled scene
BUTTON_LATCH_FRACTION = 0.6  # a button counts as pressed past 60% of its travel
GRASPABLE_CATEGORIES = {"beaker", "flask", "graduated_cylinder", "test_tube", "bottle"}


class SceneBuilder:
    """Collects assets under one world body; `build()` compiles them into a `Sim`."""

    def __init__(self, timestep: float = 0.005, substeps: int = 10, bench_rgba=(0.55, 0.6, 0.62, 1),
                 grasp_assist: bool | Collection[str] = False):
        spec = mujoco.MjSpec()
        spec.compiler.degree = False  # MjSpec defaults to degrees
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        spec.option.timestep = timestep
        spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC  # with impratio: grasps that do not creep
        spec.option.impratio = 10
        spec.visual.quality.shadowsize = 0
        spec.visual.quality.offsamples = 0
        spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
        spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]
        spec.visual.global_.offwidth = 640
        spec.visual.global_.offheight = 480
        self.spec = spec
        self.world = spec.worldbody
        self.substeps = substeps
        # True: every graspable vessel may be welded; a collection: only the named assets.
        self.grasp_assist = grasp_assist
        self.assets: dict[str, Asset] = {}
        self.profile: RobotProfile | None = None
        self.world.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -0.8],
                            rgba=[0.35, 0.33, 0.3, 1])
        self.add(bench, rgba=bench_rgba)

    def add(self, builder: Callable[..., Asset], *args, **kwargs) -> Asset:
        """Call an asset builder with the world body as parent and remember its semantics."""
        asset = builder(self.world, *args, **kwargs)
        self.assets[asset.name] = asset
        return asset

    def add_robot(self, pos=(0.0, 0.0, 0.0), robot: str | RobotProfile = "fr3") -> None:
        """Attach robot profile `robot` (names prefixed `<name>/`, default the FR3) with its base at `pos` on the bench."""
        self.profile = get_profile(robot)
        site = self.world.add_site(name="robot_mount", pos=list(pos))
        site.attach_body(self.profile.build().body("base"), self.profile.prefix, "")

    def add_camera(self, name: str, pos, lookat, fovy: float = 50.0) -> None:
        """A fixed camera at `pos` looking at `lookat` (world frame, z up)."""
        pos, lookat = np.asarray(pos, float), np.asarray(lookat, float)
        forward = lookat - pos
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        self.world.add_camera(name=name, pos=pos.tolist(), xyaxes=[*right, *up], fovy=fovy)

    def add_light(self, pos, direction, diffuse=(0.6, 0.6, 0.6)) -> None:
        """A directional spot light without shadows (shadows cost 5-20x render time on llvmpipe)."""
        self.world.add_light(pos=list(pos), dir=list(direction), diffuse=list(diffuse), castshadow=False)

    def build(self) -> Sim:
        """Compile the spec into a runnable `Sim`."""
        profile = self.profile or FR3
        hand = profile.prefix + profile.arms[0].hand  # the assist welds to the first arm's hand
        for name, asset in self.assets.items():
            wanted = self.grasp_assist is True or (not isinstance(self.grasp_assist, bool) and name in self.grasp_assist)
            if wanted and asset.graspable_sites and asset.category in GRASPABLE_CATEGORIES:
                eq = self.spec.add_equality(type=mujoco.mjtEq.mjEQ_WELD, name=f"grasp_{name}", name1=hand,
                                            name2=asset.body, objtype=mujoco.mjtObj.mjOBJ_BODY)
                eq.active = False
                eq.solref = [0.01, 1.0]
        return Sim(self.spec.compile(), dict(self.assets), self.substeps, profile)


def _has_eq(model: mujoco.MjModel, name: str) -> bool:
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_EQUALITY, name) >= 0


class _ArmIds:
    """One arm's ids and gripper mapping in a compiled model."""

    def __init__(self, m: mujoco.MjModel, prefix: str, arm: ArmSpec):
        self.spec = arm
        self.joint_ids = np.array([m.joint(prefix + j).id for j in arm.joints])
        self.qadr, self.vadr = m.jnt_qposadr[self.joint_ids], m.jnt_dofadr[self.joint_ids]
        self.act = np.array([m.actuator(prefix + a).id for a in arm.actuators])
        self.grip_act = np.array([m.actuator(prefix + a).id for a, _, _ in arm.gripper])
        self.grip_closed = np.array([c for _, c, _ in arm.gripper])
        self.grip_open = np.array([o for _, _, o in arm.gripper])
        self.finger_qadr = np.array([m.jnt_qposadr[m.joint(prefix + j).id] for j, _, _ in arm.fingers])
        self.finger_closed = np.array([c for _, c, _ in arm.fingers])
        self.finger_open = np.array([o for _, _, o in arm.fingers])
        self.tcp_site = m.site(prefix + arm.tcp).id
        self.hand_body = m.body(prefix + arm.hand).id
        self.fingers = tuple(m.body(prefix + b).id for b in arm.finger_bodies)


class Sim:
    """A compiled scene: stepping, robot state, named lookups and device latches (button -> on).

    The arm-specific attributes and methods (arm_qpos, tcp_pos, set_gripper, ...) are those of the
    first arm; `for_arm("left")` returns a view of the same sim on another arm, which skills and
    `ArmController` use unchanged.
    """

    def __init__(self, model: mujoco.MjModel, assets: dict[str, Asset], substeps: int, profile: RobotProfile | None = None):
        self.model, self.data, self.assets, self.substeps = model, mujoco.MjData(model), assets, substeps
        m = model
        self.profile = profile or FR3
        self.arms = {a.name: _ArmIds(m, self.profile.prefix, a) for a in self.profile.arms}
        self._select(self.profile.arms[0].name)
        self.robot_bodies = {b for b in range(m.nbody) if m.body(b).name.startswith(self.profile.prefix)}
        self._robot_ids = np.array(sorted(self.robot_bodies))
        self.device_on: dict[str, bool] = {}
        # Optional grasp assist (SceneBuilder(grasp_assist=...)): friction alone does not hold a
        # beaker rolled past ~60 deg about the grip axis. A weld engages only while the gripper is
        # commanded closed AND the fingers enclose the object (`encloses`): a touch on the rim or a
        # push with closed fingers never engages it, so the grasp is still made physically.
        self.grasp_eq = {n: m.equality(f"grasp_{n}").id for n in assets if _has_eq(m, f"grasp_{n}")}
        self.held: str | None = None
        self._buttons = {n: a for n, a in assets.items() if "button" in a.articulation}

    def _select(self, arm: str) -> None:
        a = self.arms[arm]
        self.arm_name, self._arm = arm, a
        self.arm_joint_ids, self.arm_qadr, self.arm_vadr, self.arm_act = a.joint_ids, a.qadr, a.vadr, a.act
        self.finger_qadr, self.hand_act, self.tcp_site, self.hand_body = a.finger_qadr, a.grip_act[0], a.tcp_site, a.hand_body
        self._fingers = a.fingers

    def for_arm(self, arm: str | None) -> Sim:
        """This sim seen through arm `arm` (None: the first arm): same model, data, devices; own TCP and gripper."""
        if arm is None or arm == self.arm_name:
            return self
        self.profile.arm(arm)  # a clear error for an unknown arm
        view = copy.copy(self)
        view._select(arm)
        view.held = None
        view.grasp_eq = {}  # the grasp-assist welds hold the first arm's hand
        return view

    # --- running -------------------------------------------------------------------------
    def reset(self, arm_qpos: np.ndarray, gripper: float = 1.0) -> None:
        """Robot at `arm_qpos` with the gripper `gripper` open (1 = fully open), devices off; other arms at home."""
        mujoco.mj_resetData(self.model, self.data)
        for name, other in self.arms.items():
            if name != self.arm_name:
                self.data.qpos[other.qadr] = other.spec.home
                self.data.ctrl[other.act] = other.spec.home
                self.data.qpos[other.finger_qadr] = other.finger_open
                self.data.ctrl[other.grip_act] = other.grip_open
        self.data.qpos[self.arm_qadr] = arm_qpos
        a = self._arm
        self.data.qpos[self.finger_qadr] = a.finger_closed + gripper * (a.finger_open - a.finger_closed)
        self.data.ctrl[self.arm_act] = arm_qpos
        self.set_gripper(gripper)
        for name in self._buttons:
            self._set_device(name, False)
        self.data.eq_active[:] = 0
        for eq in self.profile.equalities:
            self.data.eq_active[self.model.equality(self.profile.prefix + eq).id] = 1
        self.held = None
        mujoco.mj_forward(self.model, self.data)

    def set_gripper(self, opening: float) -> None:
        """Gripper command in [0, 1]: 0 closed (force-limited squeeze), 1 fully open."""
        a = self._arm
        self.data.ctrl[a.grip_act] = a.grip_closed + float(np.clip(opening, 0.0, 1.0)) * (a.grip_open - a.grip_closed)

    @property
    def gripper_command(self) -> float:
        """The commanded gripper opening in [0, 1] (what `set_gripper` last set)."""
        a = self._arm
        return float((self.data.ctrl[a.grip_act[0]] - a.grip_closed[0]) / (a.grip_open[0] - a.grip_closed[0]))

    def step(self, arm_qpos_target: np.ndarray) -> None:
        """Hold the arm servos at `arm_qpos_target` for one control period (`substeps` physics steps)."""
        self.command(arm_qpos_target)
        self.advance()

    def command(self, arm_qpos_target: np.ndarray) -> None:
        """Set this arm's servo targets (and engage/release its grasp assist) without stepping physics."""
        self.data.ctrl[self.arm_act] = arm_qpos_target
        self._update_grasp()

    def advance(self) -> None:
        """One control period of physics for every arm at its current commands (after `command` on each)."""
        for _ in range(self.substeps):
            mujoco.mj_step(self.model, self.data)
        self._update_devices()

    @property
    def control_dt(self) -> float:
        return self.model.opt.timestep * self.substeps

    def _update_grasp(self) -> None:
        closing = self.gripper_command < 0.5
        if self.held is not None and not closing:
            self.data.eq_active[self.grasp_eq[self.held]] = 0
            self.held = None
        elif self.held is None and closing:
            for name, eq in self.grasp_eq.items():
                if self.encloses(name):
                    self._weld_here(eq, self.assets[name].body)
                    self.held = name
                    break

    def _weld_here(self, eq: int, body: str) -> None:
        """Activate weld `eq` at the current relative pose of `body` in the hand frame."""
        h, o = self.data.body(self.hand_body), self.data.body(body)
        rel_pos = h.xmat.reshape(3, 3).T @ (o.xpos - h.xpos)
        inv, rel_quat = np.empty(4), np.empty(4)
        mujoco.mju_negQuat(inv, h.xquat)
        mujoco.mju_mulQuat(rel_quat, inv, o.xquat)
        self.model.eq_data[eq, 0:3] = 0.0
        self.model.eq_data[eq, 3:6] = rel_pos
        self.model.eq_data[eq, 6:10] = rel_quat
        self.model.eq_data[eq, 10] = 1.0
        self.data.eq_active[eq] = 1

    def _set_device(self, name: str, on: bool) -> None:
        self.device_on[name] = on
        indicator = self.assets[name].parts.get("indicator")
        if indicator:
            self.model.geom_rgba[self.model.geom(indicator).id] = INDICATOR_ON if on else INDICATOR_OFF

    def _update_devices(self) -> None:
        for name, asset in self._buttons.items():
            if not self.device_on[name] and self.button_fraction(name) >= BUTTON_LATCH_FRACTION:
                self._set_device(name, True)

    # --- reading -------------------------------------------------------------------------
    def button_fraction(self, asset: str) -> float:
        """How far the asset's button is pushed in, 0 (up) .. 1 (bottomed)."""
        a = self.assets[asset]
        q = self.data.qpos[self.model.jnt_qposadr[self.model.joint(a.articulation["button"]).id]]
        return float(-q / a.params["travel"])

    def joint_qpos(self, joint: str) -> float:
        return float(self.data.qpos[self.model.jnt_qposadr[self.model.joint(joint).id]])

    @property
    def arm_qpos(self) -> np.ndarray:
        return self.data.qpos[self.arm_qadr].copy()

    @property
    def gripper_width(self) -> float:
        a = self._arm
        return float(a.spec.width_at_closed + np.abs(self.data.qpos[self.finger_qadr] - a.finger_closed).sum())

    @property
    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.tcp_site].copy()

    @property
    def tcp_quat(self) -> np.ndarray:
        q = np.empty(4)
        mujoco.mju_mat2Quat(q, self.data.site_xmat[self.tcp_site])
        return q

    def body_pos(self, body: str) -> np.ndarray:
        return self.data.body(body).xpos.copy()

    def body_quat(self, body: str) -> np.ndarray:
        return self.data.body(body).xquat.copy()

    def site_pos(self, site: str) -> np.ndarray:
        return self.data.site(site).xpos.copy()

    def body_upright(self, body: str) -> float:
        """Cosine between the body's z axis and world up (1 = upright)."""
        return float(self.data.body(body).xmat[8])

    def encloses(self, asset: str) -> bool:
        """A real two-finger grasp of vessel `asset`: gripper commanded closed and squeezed onto it, both
        fingers in contact, the object's axis between the fingers and the fingertips below its rim."""
        a = self.assets[asset]
        radius, height = a.params.get("radius"), a.params.get("height")
        if radius is None or height is None or self.gripper_command >= 0.5:
            return False
        if not self.fingers_touch(a.body):
            return False
        o = self.data.body(a.body)
        rel = o.xmat.reshape(3, 3).T @ (self.tcp_pos - o.xpos)  # TCP in the object frame
        return bool(np.hypot(rel[0], rel[1]) < 0.5 * radius and 0.01 < rel[2] < height - 0.008
                    and self.gripper_width < 2 * radius + 0.01)

    def _bodies_touching(self, body: str) -> np.ndarray:
        """Ids of the bodies in contact with `body`'s tree (the object and all its parts), one per contact."""
        n = self.data.ncon
        m, c = self.model, self.data.contact
        b1, b2 = m.geom_bodyid[c.geom1[:n]], m.geom_bodyid[c.geom2[:n]]
        root = m.body_rootid[m.body(body).id]
        return np.concatenate([b1[m.body_rootid[b2] == root], b2[m.body_rootid[b1] == root]])

    def robot_touches(self, body: str) -> bool:
        """True when any robot geom is in contact with `body`'s tree (the object and all its parts)."""
        return bool(np.isin(self._bodies_touching(body), self._robot_ids).any())

    def fingers_touch(self, body: str) -> bool:
        """True when both fingers are in contact with `body` (or any body of its subtree)."""
        on_obj = self._bodies_touching(body)
        left, right = self._fingers
        return bool(np.any(on_obj == left) and np.any(on_obj == right))
