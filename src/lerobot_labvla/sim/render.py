"""Offscreen cameras (MUJOCO_GL=egl): RGB (+ optional depth), and intrinsics/extrinsics for annotations."""

from __future__ import annotations

import math

import mujoco
import numpy as np


class Cameras:
    """Renders named cameras of one model at a fixed size, without shadows or reflections."""

    def __init__(self, model: mujoco.MjModel, names: dict[str, str], height: int = 224, width: int = 224):
        self.model, self.names, self.height, self.width = model, dict(names), height, width
        self.renderer = mujoco.Renderer(model, height, width)
        self._opt = mujoco.MjvOption()
        self._opt.sitegroup[:] = 0  # hide helper sites in images

    def close(self) -> None:
        self.renderer.close()

    def rgb(self, data: mujoco.MjData, key: str) -> np.ndarray:
        """(H, W, 3) uint8 image of camera `key` (a key of `names`)."""
        r = self.renderer
        r.update_scene(data, camera=self.names[key], scene_option=self._opt)
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return r.render()

    def depth(self, data: mujoco.MjData, key: str) -> np.ndarray:
        """(H, W) float32 depth in metres."""
        r = self.renderer
        r.enable_depth_rendering()
        try:
            r.update_scene(data, camera=self.names[key], scene_option=self._opt)
            return r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()

    def intrinsics(self, key: str) -> np.ndarray:
        """(3, 3) pinhole matrix for this image size (MuJoCo cameras have square pixels, fovy vertical)."""
        fovy = math.radians(self.model.cam_fovy[self.model.camera(self.names[key]).id])
        f = 0.5 * self.height / math.tan(fovy / 2)
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1.0]])

    def extrinsics(self, data: mujoco.MjData, key: str) -> np.ndarray:
        """(4, 4) world-to-camera transform in the OpenCV convention (x right, y down, z forward)."""
        cid = self.model.camera(self.names[key]).id
        rot_c2w = data.cam_xmat[cid].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])  # MuJoCo looks down -z
        out = np.eye(4)
        out[:3, :3] = rot_c2w.T
        out[:3, 3] = -rot_c2w.T @ data.cam_xpos[cid]
        return out
