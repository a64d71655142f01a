"""The MuJoCo simulator core shared by LabUtopia (envs/) and the data engine (genesis/).

Nothing here imports from envs/, genesis/ or policy/. Importing a submodule imports MuJoCo.
"""

import os
import sys

# A headless Linux box has no X display: use EGL offscreen rendering unless the user chose a backend.
# Must happen before the first `import mujoco` in the process.
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ.get("MUJOCO_GL") == "egl":
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
