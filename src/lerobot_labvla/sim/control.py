"""Arm control: damped least-squares IK on `mj_jacSite`, end-effector delta targets, joint targets.

IK runs on a scratch `MjData` (the simulated one is never touched), ~0.02 ms per iteration.
"""

from __future__ import annotations

import mujoco
import numpy as np

from lerobot_labvla.sim.scene import Sim

# Target may lead the measured TCP by at most this much, so a blocked motion (pressing a button,
# a door at its stop) cannot wind up into a huge servo force.
MAX_LEAD_M = 0.04


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


def axis_angle_quat(rotvec: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) for a rotation vector (axis * angle, rad)."""
    q = np.empty(4)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.array([1.0, 0, 0, 0])
    mujoco.mju_axisAngle2Quat(q, rotvec / angle, angle)
    return q


def quat_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector that turns `current` into `target` (world frame)."""
    inv, err, vel = np.empty(4), np.empty(4), np.empty(3)
    mujoco.mju_negQuat(inv, current)
    mujoco.mju_mulQuat(err, target, inv)
    mujoco.mju_quat2Vel(vel, err, 1.0)
    return vel


class ArmController:
    """Turns end-effector pose targets (or joint targets) into arm servo set-points for a `Sim`."""

    def __init__(self, sim: Sim, iterations: int = 6, damping: float = 1e-2, nullspace_gain: float = 0.05):
        self.sim = sim
        self.scratch = mujoco.MjData(sim.model)
        self.iterations, self.damping, self.nullspace_gain = iterations, damping, nullspace_gain
        m = sim.model
        self.q_lo, self.q_hi = m.jnt_range[sim.arm_joint_ids, 0], m.jnt_range[sim.arm_joint_ids, 1]
        free = m.jnt_limited[sim.arm_joint_ids] == 0  # continuous joints (Kinova Gen3) have range (0, 0)
        self.q_lo, self.q_hi = np.where(free, -np.inf, self.q_lo), np.where(free, np.inf, self.q_hi)
        self._jp, self._jr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        self.rest_q = sim.arm_qpos
        self.reset()

    def reset(self) -> None:
        """Targets := the current measured pose (call after `Sim.reset`)."""
        self.q_cmd = self.sim.arm_qpos
        self.rest_q = self.q_cmd.copy()
        self.target_pos, self.target_quat = self.sim.tcp_pos, self.sim.tcp_quat

    def ik(self, pos: np.ndarray, quat: np.ndarray, q_init: np.ndarray) -> np.ndarray:
        """Joint positions that put the TCP at (`pos`, `quat`), starting the search from `q_init`."""
        m, d, s = self.sim.model, self.scratch, self.sim
        d.qpos[:] = self.sim.data.qpos
        d.qpos[s.arm_qadr] = q_init
        e = np.zeros(6)
        eye = np.eye(6) * self.damping**2
        for _ in range(self.iterations):
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            e[:3] = pos - d.site_xpos[s.tcp_site]
            q = np.empty(4)
            mujoco.mju_mat2Quat(q, d.site_xmat[s.tcp_site])
            e[3:] = quat_error(quat, q)
            mujoco.mj_jacSite(m, d, self._jp, self._jr, s.tcp_site)
            jac = np.vstack([self._jp, self._jr])[:, s.arm_vadr]
            jjt_inv = np.linalg.solve(jac @ jac.T + eye, np.eye(6))
            dq = jac.T @ jjt_inv @ e
            # Pull gently towards the rest posture in the null space (keeps the elbow from drifting).
            null = np.eye(len(s.arm_qadr)) - jac.T @ jjt_inv @ jac
            dq += null @ (self.nullspace_gain * (self.rest_q - d.qpos[s.arm_qadr]))
            d.qpos[s.arm_qadr] = np.clip(d.qpos[s.arm_qadr] + dq, self.q_lo, self.q_hi)
        return d.qpos[s.arm_qadr].copy()

    def set_pose_target(self, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """Absolute TCP target (clamped to MAX_LEAD_M ahead of the TCP); returns the servo set-point."""
        tcp = self.sim.tcp_pos
        lead = pos - tcp
        n = np.linalg.norm(lead)
        if n > MAX_LEAD_M:
            pos = tcp + lead * (MAX_LEAD_M / n)
        self.target_pos, self.target_quat = np.asarray(pos, float), np.asarray(quat, float) / np.linalg.norm(quat)
        self.q_cmd = self.ik(self.target_pos, self.target_quat, self.q_cmd)
        return self.q_cmd

    def apply_delta(self, dpos: np.ndarray, drot: np.ndarray) -> np.ndarray:
        """Move the TCP target by `dpos` (m, world) and rotate it by `drot` (rotation vector, world)."""
        return self.set_pose_target(self.target_pos + dpos, quat_mul(axis_angle_quat(drot), self.target_quat))

    def set_joint_target(self, q: np.ndarray) -> np.ndarray:
        """Joint-position control: clip to the joint limits and keep the EE target in sync."""
        self.q_cmd = np.clip(np.asarray(q, float), self.q_lo, self.q_hi)
        return self.q_cmd
